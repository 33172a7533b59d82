"""The pages' JSON and HTML give each role what the API gives it: blind holdout items stay blind in the
data (not only in the script), annotators read their own labels and throughput, not their colleagues'."""

from __future__ import annotations

import json

import pytest
from django.urls import reverse

from labeling import models as m
from labeling.roles import ANNOTATOR, REVIEWER
from labeling.services.memberships import membership_ensure
from tests import factories as f

pytestmark = pytest.mark.django_db
SECRET_LABEL = "rotten-secret"


@pytest.fixture
def ann():
    return f.UserFactory(username="ann")


@pytest.fixture
def bob():
    return f.UserFactory(username="bob")


@pytest.fixture
def project(ann, bob):
    project = f.ProjectFactory(name="Reviews")
    membership_ensure(project=project, user=ann, role=ANNOTATOR)
    membership_ensure(project=project, user=bob, role=ANNOTATOR)
    return project


@pytest.fixture
def blind_doc(project):
    champion = f.ModelVersionFactory(project=project, version=1, status=m.ModelStatus.CHAMPION)
    doc = f.DocumentFactory(project=project, split=m.Split.HOLDOUT, is_labeled=False)
    f.PredictionFactory(document=doc, model_version=champion, predicted_label=SECRET_LABEL,
                        mutual_info=0.4321, map_x=1.0, map_y=2.0)
    return doc


def test_dashboard_json_carries_no_prediction_for_blind_holdout_items(client, ann, project, blind_doc):
    client.force_login(ann)
    data = client.get(reverse("ui:dashboard-json", args=[project.pk])).json()
    point = next(p for p in data["map"] if p["doc"] == blind_doc.pk)
    assert point["label"] is None and point["uncertainty"] is None
    assert SECRET_LABEL not in json.dumps(data)  # nor in the class balance


def test_a_labeled_holdout_item_shows_its_prediction(client, ann, project, blind_doc):
    m.Document.objects.filter(pk=blind_doc.pk).update(is_labeled=True)
    client.force_login(ann)
    data = client.get(reverse("ui:dashboard-json", args=[project.pk])).json()
    assert next(p for p in data["map"] if p["doc"] == blind_doc.pk)["label"] == SECRET_LABEL


def test_document_page_of_a_blind_item_hides_the_prediction(client, ann, project, blind_doc):
    client.force_login(ann)
    page = client.get(reverse("ui:document", args=[project.pk, blind_doc.pk])).content.decode()
    assert SECRET_LABEL not in page


def test_annotator_reads_only_their_own_labels_and_throughput(client, ann, bob, project):
    doc = f.DocumentFactory(project=project, is_labeled=True)
    f.AnnotationFactory(document=doc, annotator=ann, label="fresh")
    f.AnnotationFactory(document=doc, annotator=bob, label="bobs-label")
    client.force_login(ann)
    page = client.get(reverse("ui:document", args=[project.pk, doc.pk])).content.decode()
    assert "bobs-label" not in page and "fresh" in page
    people = client.get(reverse("ui:dashboard-json", args=[project.pk])).json()["annotators"]
    assert [p["annotator"] for p in people["people"]] == ["ann"]
    assert sum(h["count"] for h in people["hourly"]) == 1


def test_reviewer_reads_everyones_labels(client, ann, bob, project):
    reviewer = f.UserFactory(username="rev")
    membership_ensure(project=project, user=reviewer, role=REVIEWER)
    doc = f.DocumentFactory(project=project, is_labeled=True)
    f.AnnotationFactory(document=doc, annotator=bob, label="bobs-label")
    f.AnnotationFactory(document=doc, annotator=ann, label="fresh")
    client.force_login(reviewer)
    assert "bobs-label" in client.get(reverse("ui:document", args=[project.pk, doc.pk])).content.decode()
    people = client.get(reverse("ui:dashboard-json", args=[project.pk])).json()["annotators"]["people"]
    assert {p["annotator"] for p in people} == {"ann", "bob"}
