"""Uploads over MAX_UPLOAD_BYTES are refused with 413 while they stream; nothing is kept."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.core.exceptions import RequestDataTooBig
from django.core.files.uploadedfile import SimpleUploadedFile

from labeling.api.base import LimitedUploadHandler
from labeling.models import ImportJob

pytestmark = pytest.mark.django_db


@pytest.fixture
def small_limit(settings, tmp_path: Path) -> Path:
    settings.MAX_UPLOAD_BYTES = 2_000
    settings.UPLOAD_DIR = str(tmp_path / "uploads")
    return tmp_path / "uploads"


def test_a_declared_length_over_the_limit_is_refused_before_reading(small_limit):
    with pytest.raises(RequestDataTooBig):
        LimitedUploadHandler().handle_raw_input(None, {}, 10**12, b"boundary")


def test_a_body_is_cut_off_at_the_limit_as_it_streams(small_limit):
    handler = LimitedUploadHandler()
    handler.receive_data_chunk(b"x" * 1_500, 0)
    with pytest.raises(RequestDataTooBig):
        handler.receive_data_chunk(b"x" * 1_500, 1_500)


def test_an_oversized_upload_answers_413_and_keeps_nothing(ingest_client, project, small_limit):
    big = SimpleUploadedFile("big.csv", b"text\n" + b"a long row of text\n" * 500, content_type="text/csv")
    res = ingest_client.post(f"/api/v1/projects/{project.pk}/imports/", {"file": big}, format="multipart")
    assert res.status_code == 413
    assert res.json()["error"]["code"] == "payload_too_large"
    assert not ImportJob.objects.exists()
    assert not small_limit.exists() or not any(small_limit.rglob("*.csv"))


def test_an_upload_within_the_limit_is_accepted(ingest_client, project, small_limit):
    small = SimpleUploadedFile("small.csv", b"text\nfine\n", content_type="text/csv")
    res = ingest_client.post(f"/api/v1/projects/{project.pk}/imports/", {"file": small}, format="multipart")
    assert res.status_code == 202
