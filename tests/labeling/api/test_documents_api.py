"""Documents and projects over HTTP: ingestion, dedupe, all-or-nothing, listing, file imports."""

from __future__ import annotations

import json

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from labeling.models import Document, ImportJob, Project, RunStatus
from tests.factories import PredictionFactory

pytestmark = pytest.mark.django_db


def post_docs(client, project, payload):
    return client.post(f"/api/v1/projects/{project.pk}/documents/", payload, format="json")


def test_admin_creates_a_project_from_plain_label_names(admin_client):
    response = admin_client.post(
        "/api/v1/projects/",
        {"name": "news", "labels": ["sport", "politics"], "retrain_after": 20},
        format="json",
    )
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["labels"] == [
        {"name": "sport", "text": "sport", "key": "1"},
        {"name": "politics", "text": "politics", "key": "2"},
    ]
    assert body["retrain_after"] == 20
    assert Project.objects.get(name="news").retrain_after == 20


def test_project_labels_as_objects_and_policy_patch(admin_client, annotator_client):
    created = admin_client.post(
        "/api/v1/projects/",
        {"name": "q", "labels": [{"name": "yes", "text": "Yes!", "key": "y"}, {"name": "no", "key": "n"}]},
        format="json",
    ).json()
    assert created["labels"][1] == {"name": "no", "text": "no", "key": "n"}
    url = f"/api/v1/projects/{created['id']}/"
    member = {"username": "ann", "role": "annotator"}
    assert admin_client.post(f"{url}members/", member, format="json").status_code == 201
    patched = admin_client.patch(url, {"holdout_interleave": 0.25, "lease_minutes": 5}, format="json")
    assert patched.status_code == 200
    assert annotator_client.get(url).json()["holdout_interleave"] == 0.25
    assert [p["name"] for p in annotator_client.get("/api/v1/projects/").json()] == ["q"]
    assert annotator_client.get(url).json()["fine_tune"] == "frozen"
    assert admin_client.patch(url, {"fine_tune": "top2"}, format="json").json()["fine_tune"] == "top2"
    bad = admin_client.patch(url, {"fine_tune": "top0", "lease_minutes": 7}, format="json")
    assert bad.status_code == 400 and "fine_tune" in bad.json()["error"]["fields"]
    stored = Project.objects.get(pk=created["id"])
    assert (stored.fine_tune, stored.lease_minutes) == ("top2", 5)  # nothing of the bad request stored


def test_one_document_is_stored_exactly_as_sent(ingest_client, project):
    text = '  <script>alert("x")</script> & <b>bold</b> — ünïcödé 🙂\n'
    response = post_docs(ingest_client, project, {"text": text, "metadata": {"source": "web", "n": [1, 2]}})
    assert response.status_code == 201
    body = response.json()
    assert body["created"] == 1 and body["results"][0]["created"] is True
    doc = Document.objects.get(pk=body["results"][0]["id"])
    assert doc.text == text
    assert doc.metadata == {"source": "web", "n": [1, 2]}
    detail = ingest_client.get(f"/api/v1/projects/{project.pk}/documents/{doc.pk}").json()
    assert detail["text"] == text


def test_reposting_an_external_id_returns_the_existing_document(ingest_client, project):
    first = post_docs(
        ingest_client, project, [{"text": "a", "external_id": "x1"}, {"text": "b", "external_id": "x2"}]
    )
    assert first.status_code == 201
    again = ingest_client.post(
        f"/api/v1/projects/{project.pk}/documents/?on_conflict=skip",
        [
            {"text": "changed", "external_id": "x1"},
            {"text": "c", "external_id": "x3"},
            {"text": "c again", "external_id": "x3"},
        ],
        format="json",
    )
    assert again.status_code == 201
    results = again.json()["results"]
    assert [r["created"] for r in results] == [False, True, False]
    assert [r["text_differs"] for r in results] == [True, False, True]
    assert results[0]["id"] == first.json()["results"][0]["id"]
    assert results[1]["id"] == results[2]["id"]
    assert Document.objects.filter(project=project).count() == 3
    assert Document.objects.get(external_id="x1").text == "a"
    assert post_docs(ingest_client, project, {"text": "a", "external_id": "x1"}).status_code == 200


def test_a_known_external_id_with_another_text_is_a_409_naming_it_and_stores_nothing(ingest_client, project):
    stored = post_docs(ingest_client, project, {"text": "a", "external_id": "x1"}).json()["results"][0]["id"]

    response = post_docs(
        ingest_client, project, [{"text": "new one", "external_id": "n1"}, {"text": "changed", "external_id": "x1"}]
    )

    assert response.status_code == 409
    error = response.json()["error"]
    assert error["code"] == "external_id_conflict"
    assert "'x1'" in error["message"] and f"document {stored}" in error["message"]
    assert "items[1].text" in error["fields"]
    assert list(Document.objects.filter(project=project).values_list("external_id", "text")) == [("x1", "a")]
    # The same text again is the idempotent re-send it always was.
    same = post_docs(ingest_client, project, {"text": "a", "external_id": "x1"})
    assert same.status_code == 200 and same.json()["results"][0]["text_differs"] is False


def test_one_external_id_with_two_texts_in_one_request_is_a_409(ingest_client, project):
    response = post_docs(
        ingest_client, project, [{"text": "one", "external_id": "d"}, {"text": "two", "external_id": "d"}]
    )
    assert response.status_code == 409
    assert "items[1].text" in response.json()["error"]["fields"]
    assert not Document.objects.filter(project=project).exists()


def test_on_conflict_must_be_error_or_skip(ingest_client, project):
    response = ingest_client.post(
        f"/api/v1/projects/{project.pk}/documents/?on_conflict=update", {"text": "a"}, format="json"
    )
    assert response.status_code == 400
    assert "on_conflict" in response.json()["error"]["fields"]


def test_one_bad_item_rejects_the_whole_request(ingest_client, project):
    items = [{"text": "fine"}] * 5 + [{"text": "   "}] + [{"text": "also fine"}]
    response = post_docs(ingest_client, project, items)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "invalid"
    assert "items[5].text" in error["fields"]
    assert not Document.objects.exists()


def test_a_thousand_documents_in_one_request(ingest_client, project):
    items = [{"text": f"doc {i}", "external_id": f"e{i}"} for i in range(1000)]
    response = post_docs(ingest_client, project, items)
    assert response.status_code == 201
    assert response.json()["created"] == 1000
    assert Document.objects.filter(project=project).count() == 1000


def test_list_filters_and_cursor_pagination(ingest_client, project, docs, champion):
    Document.objects.filter(pk=docs[0].pk).update(is_labeled=True)
    docs[3].predictions.update(predicted_label="rotten")
    base = f"/api/v1/projects/{project.pk}/documents/"
    page = ingest_client.get(base + "?page_size=5").json()
    assert [d["id"] for d in page["results"]] == [d.pk for d in docs[:5]]
    rest = ingest_client.get(page["next"]).json()
    assert rest["results"][0]["id"] == docs[5].pk
    assert [d["id"] for d in ingest_client.get(base + "?labeled=true").json()["results"]] == [docs[0].pk]
    assert len(ingest_client.get(base + "?labeled=false").json()["results"]) == 11
    assert [d["id"] for d in ingest_client.get(base + "?predicted_label=rotten").json()["results"]] == [
        docs[3].pk
    ]
    ranged = ingest_client.get(base + "?uncertainty_min=0.05&uncertainty_max=0.07").json()["results"]
    assert [d["id"] for d in ranged] == [docs[5].pk, docs[6].pk, docs[7].pk]
    assert [d["id"] for d in ingest_client.get(base + "?q=number 11").json()["results"]] == [docs[11].pk]
    assert ingest_client.get(base + "?split=holdout").json()["results"] == []


def test_detail_shows_annotations_and_prediction_history(admin_client, project, docs, champion):
    # The ingest role reads no labels (tests/labeling/api/test_what_each_role_reads.py); staff read them all.
    from tests.factories import AnnotationFactory, ModelVersionFactory

    older = ModelVersionFactory(project=project, version=0, status="retired")
    PredictionFactory(document=docs[0], model_version=older, predicted_label="rotten")
    AnnotationFactory(document=docs[0], label="fresh")
    body = admin_client.get(f"/api/v1/projects/{project.pk}/documents/{docs[0].pk}").json()
    assert [p["model_version"] for p in body["predictions"]] == [1, 0]
    assert body["predictions"][1]["label"] == "rotten"
    assert [a["label"] for a in body["annotations"]] == ["fresh"]


def test_file_upload_creates_an_import_job_that_the_worker_runs(ingest_client, project, settings):
    rows = [{"id": f"f{i}", "body": f"imported text {i}"} for i in range(30)]
    data = "\n".join(json.dumps(r) for r in rows).encode()
    upload = SimpleUploadedFile("reviews.jsonl", data, content_type="application/x-ndjson")
    response = ingest_client.post(
        f"/api/v1/projects/{project.pk}/imports/",
        {"file": upload, "text_col": "body", "external_id_col": "id"},
        format="multipart",
    )
    assert response.status_code == 202, response.content
    job = ImportJob.objects.get(pk=response.json()["id"])
    assert job.file_format == "jsonl" and job.status == RunStatus.QUEUED
    assert open(job.file_path, "rb").read() == data
    assert str(settings.UPLOAD_DIR) in job.file_path

    from labeling.services.import_jobs import import_job_run  # what the IMPORT_FILE task runs

    import_job_run(job.pk)
    report = ingest_client.get(f"/api/v1/projects/{project.pk}/imports/{job.pk}").json()
    assert report["status"] == "succeeded"
    assert (report["rows_imported"], report["rows_duplicate"], report["rows_rejected"]) == (30, 0, 0)
    assert Document.objects.filter(project=project, external_id="f7").get().text == "imported text 7"


def test_upload_of_an_unknown_format_is_refused(ingest_client, project):
    upload = SimpleUploadedFile("notes.docx", b"hello", content_type="application/octet-stream")
    response = ingest_client.post(
        f"/api/v1/projects/{project.pk}/imports/", {"file": upload}, format="multipart"
    )
    assert response.status_code == 400
    assert "format" in response.json()["error"]["fields"]
    assert not ImportJob.objects.exists()


def test_import_of_an_unknown_job_is_a_json_404(ingest_client, project):
    response = ingest_client.get(f"/api/v1/projects/{project.pk}/imports/999999")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"
