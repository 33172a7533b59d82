"""Shared fixtures. Tests run on the real PostgreSQL named by DATABASE_URL (``make test`` sets it)."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def pytest_configure(config: pytest.Config) -> None:
    from django.conf import settings

    engine = settings.DATABASES["default"]["ENGINE"]
    if "postgresql" not in engine and os.environ.get("ALLOW_SQLITE_TESTS") != "1":
        raise pytest.UsageError(
            "tests run on PostgreSQL: set DATABASE_URL=postgres://... (make test does) "
            "or ALLOW_SQLITE_TESTS=1 for a quick local run"
        )


@pytest.fixture(autouse=True)
def _artifact_dir(settings, tmp_path_factory: pytest.TempPathFactory) -> None:
    """Every test writes model artifacts and uploads into its own temporary folders."""
    settings.ARTIFACT_DIR = tmp_path_factory.mktemp("artifacts")
    settings.UPLOAD_DIR = tmp_path_factory.mktemp("uploads")
