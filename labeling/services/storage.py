"""Where model artifacts live: a local folder (a volume shared by web and workers) or object storage.

With ``ARTIFACT_URL`` empty, an artifact's location is its folder under ``ARTIFACT_DIR``. With
``ARTIFACT_URL=s3://bucket/prefix`` (any fsspec URL), a finished artifact folder is uploaded there
and every process keeps a local copy under ``ARTIFACT_DIR/cache`` that it fetches on first use.
Artifacts are immutable once published (a new model is a new folder), so a cached copy never goes stale.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import fsspec
from django.conf import settings


def artifact_root() -> Path:
    root = Path(settings.ARTIFACT_DIR)
    root.mkdir(parents=True, exist_ok=True)
    return root


def artifact_workdir(name: str) -> Path:
    """A local folder path (not yet created) for a new artifact called ``name``."""
    return artifact_root() / "models" / name


def artifact_publish(*, local_dir: Path, name: str) -> str:
    """Make a finished artifact folder available to every process; returns its location."""
    if not settings.ARTIFACT_URL:
        return str(local_dir)
    url = f"{settings.ARTIFACT_URL.rstrip('/')}/models/{name}"
    fs, path = fsspec.core.url_to_fs(url)
    fs.put(str(local_dir), path, recursive=True)
    return url


def artifact_local(location: str) -> Path:
    """A local folder holding the artifact at ``location`` (downloading it once when remote)."""
    if "://" not in location:
        return Path(location)
    name = location.rstrip("/").rsplit("/", 1)[-1]
    target = artifact_root() / "cache" / name
    if not target.exists():
        tmp = target.with_name(target.name + ".partial")
        shutil.rmtree(tmp, ignore_errors=True)
        fs, path = fsspec.core.url_to_fs(location)
        fs.get(path, str(tmp), recursive=True)
        tmp.rename(target)  # atomic: a half-downloaded copy is never used
    return target


def embedding_cache_path(encoder_id: str) -> Path:
    """The per-encoder embedding cache file (local to each host; rebuilt on demand)."""
    safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in encoder_id)[:120]
    folder = Path(settings.EMBEDDING_CACHE_DIR)
    folder.mkdir(parents=True, exist_ok=True)
    return folder / f"{safe}.sqlite3"
