"""Run by tests/e2e/test_demo.py inside the demo's environment (SQLite): the write paths that use SQL of
their own, each once, through the API where a client would. Prints one line, "ok", or raises."""

from __future__ import annotations

import django

django.setup()

from django.contrib.auth import get_user_model  # noqa: E402
from django.test import Client  # noqa: E402

from labeling.models import Annotation, ModelStatus, ModelVersion, Prediction, Project  # noqa: E402
from labeling.services.labelset import labelset_rename  # noqa: E402
from labeling.services.memberships import membership_ensure  # noqa: E402
from labeling.services.projects import project_create  # noqa: E402
from labeling.services.retention import predictions_prune  # noqa: E402
from labeling.services.tokens import token_create  # noqa: E402

annotator = get_user_model().objects.get(username="annotator1")
admin = get_user_model().objects.get(username="admin")
project = Project.objects.get(name="Demo: rt-snippets")

# A REST client with a token (the token's datetimes from a raw row), leasing and labeling (the label set
# read under its lock where the database has locks).
client = Client(HTTP_AUTHORIZATION=f"Token {token_create(user=annotator, client='sqlite-check')[1]}")
lease = client.post(f"/api/v1/projects/{project.pk}/queue/next")
assert lease.status_code == 200, lease.content[:300]
item = lease.json()
answer = client.post(f"/api/v1/assignments/{item['assignment']['id']}/annotation",
                     {"label": item["document"]["metadata"].get("gold") or "fresh"}, content_type="application/json")
assert answer.status_code in (200, 201), answer.content[:300]

# A multi-label project: a set labeled, then a label renamed (every stored set rewritten).
multi = project_create(name="SQLite multi-label", labels=["a", "b"], task_type="multi_label", holdout_fraction=0.0)
from labeling.services.documents import document_bulk_create  # noqa: E402

document_bulk_create(project=multi, items=[{"text": "one"}, {"text": "two"}])
membership_ensure(project=multi, user=annotator, role="annotator")
lease = client.post(f"/api/v1/projects/{multi.pk}/queue/next").json()
answer = client.post(f"/api/v1/assignments/{lease['assignment']['id']}/annotation", {"labels": ["a", "b"]},
                     content_type="application/json")
assert answer.status_code in (200, 201), answer.content[:300]
labelset_rename(project=multi, label="a", new_name="alpha", by=admin)
assert Annotation.objects.get(project=multi).label == "alpha,b"

# Retention: a superseded version's predictions pruned.
old = ModelVersion.objects.create(project=project, version=90, status=ModelStatus.RETIRED)
champion = ModelVersion.objects.create(project=project, version=91, status=ModelStatus.CHAMPION)
for version in (old, champion):
    Prediction.objects.create(document=project.documents.first(), model_version=version, probabilities=[0.5, 0.5],
                              predicted_label="fresh", confidence=0.5, entropy=0.69, expected_entropy=0.6,
                              mutual_info=0.09, margin=0.0, acquisition_score=0.09)
predictions_prune(project_id=project.pk, keep_previous=0)
assert list(Prediction.objects.filter(document__project=project).values_list("model_version", flat=True)) == [
    champion.pk
]
print("ok")
