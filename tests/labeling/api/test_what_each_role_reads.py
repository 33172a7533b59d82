"""API answers carry what the caller's role may read: no labels or annotator names for the ingest role,
no prediction for an unlabeled holdout item (labeled blind), in the detail and in the list."""

from __future__ import annotations

import pytest

from labeling import models as m
from tests.factories import AnnotationFactory

pytestmark = pytest.mark.django_db


def _url(project, doc=None):
    base = f"/api/v1/projects/{project.pk}/documents/"
    return f"{base}{doc.pk}" if doc else base


def test_ingest_role_reads_no_labels_or_annotator_names(ingest_client, annotator, project, docs):
    AnnotationFactory(document=docs[0], annotator=annotator, label="fresh")
    body = ingest_client.get(_url(project, docs[0])).json()
    assert body["annotations"] == []
    assert "'ann'" not in str(body)


def test_manager_reads_every_label(manager_client, annotator, other_annotator, project, docs):
    AnnotationFactory(document=docs[0], annotator=annotator, label="fresh")
    AnnotationFactory(document=docs[0], annotator=other_annotator, label="rotten")
    body = manager_client.get(_url(project, docs[0])).json()
    assert sorted(a["annotator"] for a in body["annotations"]) == ["ann", "bob"]


def test_blind_holdout_item_has_no_prediction_in_detail_or_list(manager_client, project, docs, champion):
    blind = docs[3]
    m.Document.objects.filter(pk=blind.pk).update(split=m.Split.HOLDOUT, is_labeled=False)
    detail = manager_client.get(_url(project, blind)).json()
    assert detail["predictions"] == []
    rows = {r["id"]: r for r in manager_client.get(_url(project)).json()["results"]}
    assert rows[blind.pk]["champion_label"] is None and rows[blind.pk]["champion_score"] is None
    assert rows[docs[4].pk]["champion_label"] == "fresh"
    filtered = manager_client.get(_url(project), {"predicted_label": "fresh"}).json()["results"]
    assert blind.pk not in {r["id"] for r in filtered}  # a filter must not reveal it either


def test_labeled_holdout_item_shows_its_predictions(manager_client, project, docs, champion):
    m.Document.objects.filter(pk=docs[3].pk).update(split=m.Split.HOLDOUT, is_labeled=True)
    assert len(manager_client.get(_url(project, docs[3])).json()["predictions"]) == 1
