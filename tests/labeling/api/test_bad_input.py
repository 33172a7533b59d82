"""Malformed and abusive requests: each gets a 4xx in the one error shape, naming what is wrong,
and stores nothing."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from django.utils import timezone

from labeling.models import Annotation, AnnotationRevision, Document, ImportJob, Project, TrainingRun
from tests.factories import AnnotationFactory, AssignmentFactory

pytestmark = pytest.mark.django_db

LONG = "a" * 100_001
RAW = object()  # marks a body sent as-is (not JSON-encoded by the client)


@pytest.fixture
def world(project, docs, champion, annotator, other_annotator):
    return {
        "project": project.pk,
        "lease": AssignmentFactory(document=docs[0], annotator=annotator).pk,
        "other_lease": AssignmentFactory(document=docs[1], annotator=other_annotator).pk,
        "expired": AssignmentFactory(
            document=docs[2], annotator=annotator, leased_until=timezone.now() - timedelta(minutes=1)
        ).pk,
        "annotation": AnnotationFactory(document=docs[3], annotator=annotator, label="fresh").pk,
    }


def snapshot() -> tuple:
    return (
        Project.objects.count(),
        sorted(Document.objects.values_list("pk", "text", "external_id", "is_labeled")),
        sorted(Annotation.objects.values_list("pk", "label")),
        AnnotationRevision.objects.count(),
        ImportJob.objects.count(),
        TrainingRun.objects.count(),
        sorted(Project.objects.values_list("pk", "holdout_interleave", "lease_minutes")),
    )


D = "/api/v1/projects/{project}/documents/"
PRJ = "/api/v1/projects/"
ANN = "/api/v1/assignments/{lease}/annotation"
PRED = "/api/v1/projects/{project}/predict"

# (id, role, method, url, body, expected status, expected error code, a field named in "fields" or None)
CASES = [
    ("doc-invalid-json", "ingest", "post", D, (RAW, '{"text": '), 400, "invalid_json", None),
    ("doc-trailing-garbage", "ingest", "post", D, (RAW, '{"text": "a"} x'), 400, "invalid_json", None),
    ("doc-list-of-numbers", "ingest", "post", D, [1, 2], 400, "invalid", "items[0].item"),
    ("doc-bare-string", "ingest", "post", D, "hello", 400, "invalid", "items[0].item"),
    ("doc-missing-text", "ingest", "post", D, {}, 400, "invalid", "items[0].text"),
    ("doc-empty-text", "ingest", "post", D, {"text": ""}, 400, "invalid", "items[0].text"),
    ("doc-whitespace-text", "ingest", "post", D, {"text": " \n\t "}, 400, "invalid", "items[0].text"),
    ("doc-text-number", "ingest", "post", D, {"text": 123}, 400, "invalid", "items[0].text"),
    ("doc-text-null", "ingest", "post", D, {"text": None}, 400, "invalid", "items[0].text"),
    ("doc-text-list", "ingest", "post", D, {"text": ["a"]}, 400, "invalid", "items[0].text"),
    ("doc-text-too-long", "ingest", "post", D, {"text": LONG}, 400, "invalid", "items[0].text"),
    ("doc-text-nul", "ingest", "post", D, {"text": "a\x00b"}, 400, "invalid", "items[0].text"),
    (
        "doc-text-lone-surrogate",
        "ingest",
        "post",
        D,
        (RAW, '{"text": "bad \\ud800 half"}'),
        400,
        "invalid",
        "items[0].text",
    ),
    ("doc-empty-list", "ingest", "post", D, [], 400, "invalid", "items"),
    ("doc-too-many", "ingest", "post", D, [{"text": "x"}] * 1001, 400, "invalid", "items"),
    (
        "doc-bad-item-late",
        "ingest",
        "post",
        D,
        [{"text": "ok"}] * 7 + [{"text": ""}],
        400,
        "invalid",
        "items[7].text",
    ),
    (
        "doc-external-id-int",
        "ingest",
        "post",
        D,
        {"text": "a", "external_id": 123},
        400,
        "invalid",
        "items[0].external_id",
    ),
    (
        "doc-external-id-empty",
        "ingest",
        "post",
        D,
        {"text": "a", "external_id": ""},
        400,
        "invalid",
        "items[0].external_id",
    ),
    (
        "doc-external-id-long",
        "ingest",
        "post",
        D,
        {"text": "a", "external_id": "x" * 256},
        400,
        "invalid",
        "items[0].external_id",
    ),
    (
        "doc-external-id-nul",
        "ingest",
        "post",
        D,
        {"text": "a", "external_id": "x\x00"},
        400,
        "invalid",
        "items[0].external_id",
    ),
    (
        "doc-metadata-string",
        "ingest",
        "post",
        D,
        {"text": "a", "metadata": "m"},
        400,
        "invalid",
        "items[0].metadata",
    ),
    (
        "doc-metadata-list",
        "ingest",
        "post",
        D,
        {"text": "a", "metadata": [1]},
        400,
        "invalid",
        "items[0].metadata",
    ),
    (
        "doc-metadata-nul",
        "ingest",
        "post",
        D,
        {"text": "a", "metadata": {"k": "v\x00"}},
        400,
        "invalid",
        "items[0].metadata",
    ),
    (
        "doc-metadata-surrogate-key",
        "ingest",
        "post",
        D,
        (RAW, '{"text": "a", "metadata": {"\\udc00": 1}}'),
        400,
        "invalid",
        "items[0].metadata",
    ),
    (
        "doc-unknown-field",
        "ingest",
        "post",
        D,
        {"text": "a", "colour": "red"},
        400,
        "invalid",
        "items[0].item",
    ),
    (
        "doc-unknown-project",
        "ingest",
        "post",
        "/api/v1/projects/999999/documents/",
        {"text": "a"},
        404,
        "not_found",
        None,
    ),
    (
        "doc-non-numeric-project",
        "ingest",
        "post",
        "/api/v1/projects/abc/documents/",
        {"text": "a"},
        404,
        "not_found",
        None,
    ),
    ("doc-text-padded", "ingest", "post", D, {"text": "a" + " " * 100_000}, 400, "invalid", "items[0].text"),
    ("doc-text-padded-2mb", "ingest", "post", D, {"text": "\n" * 2_000_000 + "a"}, 400, "invalid", "items[0].text"),
    ("doc-nested-100k", "ingest", "post", D, (RAW, "[" * 100_000), 400, "invalid_json", None),
    ("doc-nested-closed", "ingest", "post", D, (RAW, "[" * 5_000 + "]" * 5_000), 400, "invalid_json", None),
    ("doc-nested-metadata", "ingest", "post", D,
     (RAW, '{"text": "a", "metadata": ' + '{"k": ' * 100 + "1" + "}" * 101), 400, "invalid_json", None),
    ("doc-huge-integer", "ingest", "post", D, (RAW, '{"text": "a", "external_id": ' + "9" * 5000 + "}"),
     400, "invalid_json", None),
    ("project-nested", "admin", "post", PRJ, (RAW, '{"name": ' + "[" * 100_000), 400, "invalid_json", None),
    ("annotation-nested", "annotator", "post", ANN, (RAW, "{" + '"a": {' * 100_000), 400, "invalid_json", None),
    ("predict-nested", "admin", "post", PRED, (RAW, '{"texts": ' + "[" * 100_000), 400, "invalid_json", None),
    ("doc-form-encoded", "ingest", "form", D, {"text": "a"}, 415, "unsupported_media_type", None),
    ("doc-list-bad-filter", "ingest", "get", D + "?labeled=maybe", None, 400, "invalid", "labeled"),
    ("doc-list-bad-split", "ingest", "get", D + "?split=train", None, 400, "invalid", "split"),
    (
        "doc-list-bad-range",
        "ingest",
        "get",
        D + "?uncertainty_min=abc",
        None,
        400,
        "invalid",
        "uncertainty_min",
    ),
    ("doc-detail-unknown", "ingest", "get", D + "999999", None, 404, "not_found", None),
    ("project-no-labels", "admin", "post", PRJ, {"name": "p"}, 400, "invalid", "labels"),
    ("project-one-label", "admin", "post", PRJ, {"name": "p", "labels": ["a"]}, 400, "invalid", "labels"),
    (
        "project-repeated-label",
        "admin",
        "post",
        PRJ,
        {"name": "p", "labels": ["a", "a"]},
        400,
        "invalid",
        "labels",
    ),
    (
        "project-bad-label-name",
        "admin",
        "post",
        PRJ,
        {"name": "p", "labels": ["a b", "c"]},
        400,
        "invalid",
        "labels",
    ),
    ("project-labels-string", "admin", "post", PRJ, {"name": "p", "labels": "ab"}, 400, "invalid", "labels"),
    ("project-label-text-nul", "admin", "post", PRJ,
     {"name": "p", "labels": [{"name": "a", "text": "x\x00"}, {"name": "b"}]}, 400, "invalid", "labels"),
    ("project-label-text-surrogate", "admin", "post", PRJ,
     (RAW, '{"name": "p", "labels": [{"name": "a", "text": "\\ud800"}, "b"]}'), 400, "invalid", "labels"),
    ("project-name-surrogate", "admin", "post", PRJ, (RAW, '{"name": "p\\udfff", "labels": ["a", "b"]}'), 400,
     "invalid", "name"),
    (
        "project-label-reserved-key",
        "admin",
        "post",
        PRJ,
        {"name": "p", "labels": [{"name": "a", "key": "s"}, {"name": "b"}]},
        400,
        "invalid",
        "labels",
    ),
    (
        "project-duplicate-name",
        "admin",
        "post",
        PRJ,
        {"name": "reviews", "labels": ["a", "b"]},
        400,
        "invalid",
        "name",
    ),
    ("project-empty-name", "admin", "post", PRJ, {"name": "", "labels": ["a", "b"]}, 400, "invalid", "name"),
    (
        "project-holdout-too-big",
        "admin",
        "post",
        PRJ,
        {"name": "p", "labels": ["a", "b"], "holdout_fraction": 0.9},
        400,
        "invalid",
        "holdout_fraction",
    ),
    (
        "project-thresholds-crossed",
        "admin",
        "post",
        PRJ,
        {"name": "p", "labels": ["a", "b"], "review_threshold": 0.9, "auto_accept_threshold": 0.5},
        400,
        "invalid",
        "review_threshold",
    ),
    (
        "project-bad-strategy",
        "admin",
        "post",
        PRJ,
        {"name": "p", "labels": ["a", "b"], "acquisition_strategy": "magic"},
        400,
        "invalid",
        "acquisition_strategy",
    ),
    (
        "project-bad-model-features",
        "admin",
        "post",
        PRJ,
        {"name": "p", "labels": ["a", "b"], "model_features": "tfidf"},
        400,
        "invalid",
        "model_features",
    ),
    (
        "project-zero-lease",
        "admin",
        "post",
        PRJ,
        {"name": "p", "labels": ["a", "b"], "lease_minutes": 0},
        400,
        "invalid",
        "lease_minutes",
    ),
    (
        "project-unknown-field",
        "admin",
        "post",
        PRJ,
        {"name": "p", "labels": ["a", "b"], "owner": "me"},
        400,
        "invalid",
        "owner",
    ),
    (
        "policy-wrong-type",
        "admin",
        "patch",
        "/api/v1/projects/{project}/",
        {"holdout_interleave": "lots"},
        400,
        "invalid",
        "holdout_interleave",
    ),
    (
        "policy-overlap-too-high",
        "admin",
        "patch",
        "/api/v1/projects/{project}/",
        {"overlap": 6},
        400,
        "invalid",
        "overlap",
    ),
    (
        "policy-overlap-scope-unknown",
        "admin",
        "patch",
        "/api/v1/projects/{project}/",
        {"overlap": 2, "overlap_scope": "some"},
        400,
        "invalid",
        "overlap_scope",
    ),
    (
        "policy-min-agreement-over-one",
        "admin",
        "patch",
        "/api/v1/projects/{project}/",
        {"min_agreement": 1.2},
        400,
        "invalid",
        "min_agreement",
    ),
    (
        "policy-noise-review-share-over-half",
        "admin",
        "patch",
        "/api/v1/projects/{project}/",
        {"noise_review_share": 0.6},
        400,
        "invalid",
        "noise_review_share",
    ),
    (
        "policy-noise-review-share-negative",
        "admin",
        "patch",
        "/api/v1/projects/{project}/",
        {"noise_review_share": -0.1},
        400,
        "invalid",
        "noise_review_share",
    ),
    (
        "policy-noise-hold-flagged-not-a-boolean",
        "admin",
        "patch",
        "/api/v1/projects/{project}/",
        {"noise_hold_flagged": "yes"},
        400,
        "invalid",
        "noise_hold_flagged",
    ),
    (
        "policy-random-share-above-half",
        "admin",
        "patch",
        "/api/v1/projects/{project}/",
        {"random_share": 0.75},
        400,
        "invalid",
        "random_share",
    ),
    (
        "policy-rename",
        "admin",
        "patch",
        "/api/v1/projects/{project}/",
        {"name": "renamed"},
        400,
        "invalid",
        "name",
    ),
    (
        "policy-unknown-project",
        "admin",
        "patch",
        "/api/v1/projects/999999/",
        {"lease_minutes": 3},
        404,
        "not_found",
        None,
    ),
    ("label-not-in-set", "annotator", "post", ANN, {"label": "meh"}, 400, "invalid", "label"),
    ("label-missing", "annotator", "post", ANN, {}, 400, "invalid", "label"),
    ("label-number", "annotator", "post", ANN, {"label": 5}, 400, "invalid", "label"),
    (
        "label-negative-duration",
        "annotator",
        "post",
        ANN,
        {"label": "fresh", "duration_ms": -1},
        400,
        "invalid",
        "duration_ms",
    ),
    (
        "label-text-duration",
        "annotator",
        "post",
        ANN,
        {"label": "fresh", "duration_ms": "soon"},
        400,
        "invalid",
        "duration_ms",
    ),
    ("label-invalid-json", "annotator", "post", ANN, (RAW, "{label: fresh}"), 400, "invalid_json", None),
    (
        "label-unknown-assignment",
        "annotator",
        "post",
        "/api/v1/assignments/999999/annotation",
        {"label": "fresh"},
        404,
        "not_found",
        None,
    ),
    (
        "label-others-assignment",
        "annotator",
        "post",
        "/api/v1/assignments/{other_lease}/annotation",
        {"label": "fresh"},
        403,
        "permission_denied",
        None,
    ),
    (
        "label-expired-lease",
        "annotator",
        "post",
        "/api/v1/assignments/{expired}/annotation",
        {"label": "fresh"},
        409,
        "lease_expired",
        None,
    ),
    (
        "edit-unknown-annotation",
        "annotator",
        "patch",
        "/api/v1/annotations/999999",
        {"label": "rotten"},
        404,
        "not_found",
        None,
    ),
    (
        "edit-label-not-in-set",
        "annotator",
        "patch",
        "/api/v1/annotations/{annotation}",
        {"label": "meh"},
        400,
        "invalid",
        "label",
    ),
    (
        "edit-others-label",
        "other",
        "patch",
        "/api/v1/annotations/{annotation}",
        {"label": "rotten"},
        403,
        "permission_denied",
        None,
    ),
    ("renew-unknown", "annotator", "post", "/api/v1/assignments/999999/renew", None, 404, "not_found", None),
    (
        "renew-expired",
        "annotator",
        "post",
        "/api/v1/assignments/{expired}/renew",
        None,
        409,
        "lease_expired",
        None,
    ),
    (
        "skip-others",
        "annotator",
        "post",
        "/api/v1/assignments/{other_lease}/skip",
        None,
        403,
        "permission_denied",
        None,
    ),
    (
        "release-expired",
        "annotator",
        "post",
        "/api/v1/assignments/{expired}/release",
        None,
        409,
        "lease_expired",
        None,
    ),
    (
        "queue-unknown-project",
        "annotator",
        "post",
        "/api/v1/projects/999999/queue/next",
        None,
        404,
        "not_found",
        None,
    ),
    (
        "queue-get-not-allowed",
        "annotator",
        "get",
        "/api/v1/projects/{project}/queue/next",
        None,
        405,
        "method_not_allowed",
        None,
    ),
    ("predict-empty", "ingest", "post", PRED, {"texts": []}, 400, "invalid", "texts"),
    ("predict-too-many", "ingest", "post", PRED, {"texts": ["x"] * 65}, 400, "invalid", "texts"),
    ("predict-missing", "ingest", "post", PRED, {}, 400, "invalid", "texts"),
    ("predict-blank", "ingest", "post", PRED, {"texts": ["  "]}, 400, "invalid", "texts"),
    ("predict-not-a-list", "ingest", "post", PRED, {"texts": "abc"}, 400, "invalid", "texts"),
    ("predict-nul", "ingest", "post", PRED, {"texts": ["a\x00"]}, 400, "invalid", "texts"),
    ("predict-too-long", "ingest", "post", PRED, {"texts": [LONG]}, 400, "invalid", "texts"),
    ("predict-surrogate", "ingest", "post", PRED, (RAW, '{"texts": ["\\ud83d"]}'), 400, "invalid", "texts"),
    (
        "predict-unknown-project",
        "ingest",
        "post",
        "/api/v1/projects/999999/predict",
        {"texts": ["a"]},
        404,
        "not_found",
        None,
    ),
    (
        "export-bad-format",
        "admin",
        "get",
        "/api/v1/projects/{project}/export?format=xml",
        None,
        400,
        "invalid",
        "format",
    ),
    (
        "annotations-bad-limit",
        "annotator",
        "get",
        "/api/v1/projects/{project}/annotations?limit=0",
        None,
        400,
        "invalid",
        "limit",
    ),
    ("unknown-api-path", "admin", "get", "/api/v1/nothing-here", None, 404, "not_found", None),
    (
        "promote-unknown-model",
        "admin",
        "post",
        "/api/v1/projects/{project}/models/999999/promote",
        None,
        404,
        "not_found",
        None,
    ),
    (
        "import-no-file",
        "ingest",
        "multipart",
        "/api/v1/projects/{project}/imports/",
        {"text_col": "t"},
        400,
        "invalid",
        "file",
    ),
    (
        "import-json-body",
        "ingest",
        "post",
        "/api/v1/projects/{project}/imports/",
        {"file": "x"},
        415,
        "unsupported_media_type",
        None,
    ),
]


@pytest.mark.parametrize(
    "role,method,url,body,status,code,field", [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_bad_request_is_a_named_4xx_and_stores_nothing(
    world,
    role,
    method,
    url,
    body,
    status,
    code,
    field,
    admin_client,
    annotator_client,
    other_client,
    ingest_client,
):
    client = {
        "admin": admin_client,
        "annotator": annotator_client,
        "other": other_client,
        "ingest": ingest_client,
    }[role]
    url = url.format(**world)
    before = snapshot()
    if isinstance(body, tuple) and body[0] is RAW:
        response = client.generic(
            method.upper(), url, body[1].encode("utf-8", "surrogatepass"), content_type="application/json"
        )
    elif method == "form":
        response = client.post(url, "text=a", content_type="application/x-www-form-urlencoded")
    elif method == "multipart":
        response = client.post(url, body, format="multipart")
    elif method == "get":
        response = client.get(url)
    else:
        response = getattr(client, method)(url, body, format="json")
    assert response.status_code == status, response.content[:500]
    error = response.json()["error"]
    assert set(error) == {"code", "message", "fields"}
    assert error["code"] == code
    assert error["message"]
    if field is not None:
        assert field in error["fields"], error
    assert snapshot() == before


def test_there_are_at_least_fifty_cases() -> None:
    assert len(CASES) >= 50


def test_a_body_over_the_size_limit_is_413(ingest_client, project, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    response = ingest_client.post(
        f"/api/v1/projects/{project.pk}/documents/", {"text": "x" * 2000}, format="json"
    )
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "payload_too_large"
    assert not Document.objects.exists()


def test_the_anonymous_rate_limit_answers_429(client, settings):
    settings.REST_FRAMEWORK = {
        **settings.REST_FRAMEWORK,
        "DEFAULT_THROTTLE_RATES": {"anon": "3/min", "user": "1000/min"},
    }
    codes = [client.get("/api/v1/projects/").status_code for _ in range(5)]
    assert codes == [401, 401, 401, 429, 429]
    body = client.get("/api/v1/projects/").json()
    assert body["error"]["code"] == "throttled"


def test_unauthenticated_requests_are_401_json(client, project):
    response = client.post(
        f"/api/v1/projects/{project.pk}/documents/",
        json.dumps({"text": "a"}),
        content_type="application/json",
    )
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "not_authenticated"
