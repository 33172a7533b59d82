"""Label-set changes on a multi-label project: every stored set follows; no label is lost; bad input stores nothing."""

from __future__ import annotations

import pytest

from labeling.models import (
    Annotation,
    AnnotationRevision,
    Assignment,
    AssignmentState,
    AuditAction,
    AuditEvent,
    Document,
    LabelSetVersion,
    ModelStatus,
    Prediction,
    Project,
    ReviewAction,
    ReviewDecision,
    ReviewItem,
    ReviewReason,
    ReviewState,
    RunTrigger,
    TrainingRun,
)
from labeling.selectors.consensus import final_labels
from labeling.selectors.labelset import label_set_usage
from tests import factories as f

pytestmark = pytest.mark.django_db

#: (client, set) in the order the six fixture documents are answered: one answer per document.
ANSWERS = (
    ("ann", ["water", "food"]),
    ("ann", ["food"]),
    ("ann", []),
    ("bob", ["shelter", "medical_help"]),
    ("bob", ["food", "shelter"]),
    ("bob", ["water"]),
)


def _url(project: Project, op: str) -> str:
    return f"/api/v1/projects/{project.pk}/labelset/{op}"


def _answer(client, project: Project, labels: list[str]) -> tuple[int, int]:
    item = client.post(f"/api/v1/projects/{project.pk}/queue/next")
    assert item.status_code == 200, item.content
    got = client.post(
        f"/api/v1/assignments/{item.json()['assignment']['id']}/annotation", {"labels": labels}, format="json"
    )
    assert got.status_code in (200, 201), got.json()
    return item.json()["document"]["id"], got.status_code


@pytest.fixture
def champion(ml_project, ml_docs):
    """A champion that predicted a set for every document (its predictions must stay as it wrote them)."""
    version = f.ModelVersionFactory(
        project=ml_project, version=1, status=ModelStatus.CHAMPION, label_map=ml_project.label_names
    )
    for doc in ml_docs:
        f.PredictionFactory(document=doc, model_version=version, predicted_label="water,food", confidence=0.4)
    return version


@pytest.fixture
def answered(ml_project, ml_docs, champion, annotator_client, other_client) -> dict[int, str]:
    """{document id: stored set}: every fixture document answered once (ANSWERS), plus a gold set and a
    suggestion on each answered document and one reviewer's decision, all naming labels a change touches."""
    clients = {"ann": annotator_client, "bob": other_client}
    stored: dict[int, str] = {}
    for who, labels in ANSWERS:
        doc_id, _ = _answer(clients[who], ml_project, labels)
        stored[doc_id] = Annotation.objects.get(document_id=doc_id).label
    Document.objects.filter(pk__in=list(stored)).update(gold_label="food,shelter", suggested_label="food")
    doc_id = next(d for d, s in stored.items() if s == "water")
    item = ReviewItem.objects.create(project=ml_project, document_id=doc_id, reason=ReviewReason.AUDIT)
    ReviewDecision.objects.create(
        item=item,
        project=ml_project,
        document_id=doc_id,
        reviewer=f.UserFactory(username="rev"),
        action=ReviewAction.OVERRIDE,
        label="water,food",
        replaced_label="water",
    )
    return stored


def _labels(project: Project) -> list[str]:
    return sorted(Annotation.objects.filter(document__project=project).values_list("label", flat=True))


def _snapshot(project: Project) -> tuple[int, int]:
    annotations = Annotation.objects.filter(document__project=project).count()
    revisions = AnnotationRevision.objects.filter(annotation__document__project=project).count()
    return annotations, revisions


def _every_given_label(project: Project) -> set[tuple[int, str]]:
    """(annotation, label name) for each label an annotation holds now or held in a revision."""
    out = set()
    for pk, label in Annotation.objects.filter(document__project=project).values_list("pk", "label"):
        out |= {(pk, name) for name in label.split(",") if name}
    for pk, label in AnnotationRevision.objects.filter(annotation__document__project=project).values_list(
        "annotation_id", "previous_label"
    ):
        out |= {(pk, name) for name in label.split(",") if name}
    return out


def _model_followed(project: Project, champion) -> None:
    champion.refresh_from_db()
    assert champion.status == ModelStatus.RETIRED
    assert TrainingRun.objects.filter(project=project, trigger=RunTrigger.LABEL_SET).exists()
    # The old champion's predictions stay as it wrote them (read through its own label map; it ranks nothing).
    assert set(Prediction.objects.filter(model_version=champion).values_list("predicted_label", flat=True)) == {
        "water,food"
    }
    assert AuditEvent.objects.filter(action=AuditAction.LABEL_SET_CHANGED, project_id=project.pk).count() == 1


def test_rename_rewrites_every_set_naming_the_label_in_place(admin_client, ml_project, answered, champion):
    before = _snapshot(ml_project)
    given = _every_given_label(ml_project)
    got = admin_client.post(_url(ml_project, "rename"), {"label": "food", "new_name": "rations"}, format="json")
    assert got.status_code == 200, got.json()
    assert got.json()["migrated"] == 3
    assert _labels(ml_project) == sorted(
        ["water,rations", "rations", "", "shelter,medical_help", "rations,shelter", "water"]
    )
    annotations, revisions = _snapshot(ml_project)
    assert annotations == before[0] and revisions == before[1] + 3  # a revision per rewritten set
    assert set(AnnotationRevision.objects.values_list("previous_label", "new_label")) == {
        ("water,food", "water,rations"),
        ("food", "rations"),
        ("food,shelter", "rations,shelter"),
    }
    # No label lost: every (annotation, label) given before is still there, now or in a revision.
    assert given <= _every_given_label(ml_project)
    docs = Document.objects.filter(pk__in=list(answered))
    assert set(docs.values_list("gold_label", "suggested_label")) == {("rations,shelter", "rations")}
    decision = ReviewDecision.objects.get()
    assert (decision.label, decision.replaced_label) == ("water,rations", "water")
    ml_project.refresh_from_db()
    assert ml_project.label_names == ["water", "rations", "shelter", "medical_help"]
    assert label_set_usage(project=ml_project) == {"water": 2, "rations": 3, "shelter": 2, "medical_help": 1}
    _model_followed(ml_project, champion)
    event = AuditEvent.objects.get(action=AuditAction.LABEL_SET_CHANGED, project_id=ml_project.pk)
    assert event.actor_name == "admin" or event.actor_id is not None
    assert {k: event.data[k] for k in ("operation", "label", "new_name", "migrated", "retired_champion")} == {
        "operation": "rename",
        "label": "food",
        "new_name": "rations",
        "migrated": 3,
        "retired_champion": 1,
    }
    assert set(AnnotationRevision.objects.values_list("changed_by__is_staff", flat=True)) == {True}


def test_a_rename_touches_exact_names_only(admin_client, ml_project, ml_docs, annotator_client):
    """`help` is also the tail of `medical_help`; `_` is a LIKE wildcard: neither may match by accident."""
    admin_client.post(_url(ml_project, "add"), {"name": "help"}, format="json")
    admin_client.post(_url(ml_project, "add"), {"name": "medicalXhelp"}, format="json")
    _answer(annotator_client, ml_project, ["medical_help"])
    _answer(annotator_client, ml_project, ["medicalXhelp", "help"])
    got = admin_client.post(_url(ml_project, "rename"), {"label": "medical_help", "new_name": "doctor"}, format="json")
    assert got.status_code == 200 and got.json()["migrated"] == 1
    got = admin_client.post(_url(ml_project, "rename"), {"label": "help", "new_name": "aid"}, format="json")
    assert got.status_code == 200 and got.json()["migrated"] == 1
    assert _labels(ml_project) == ["aid,medicalXhelp", "doctor"]  # label-set order: help came before medicalXhelp


def test_merge_puts_the_target_in_each_set_once_in_label_set_order(admin_client, ml_project, answered, champion):
    before = _snapshot(ml_project)
    given = _every_given_label(ml_project)
    got = admin_client.post(_url(ml_project, "merge"), {"labels": ["water"], "into": "shelter"}, format="json")
    assert got.status_code == 200, got.json()
    assert got.json()["migrated"] == 2
    # water,food -> food,shelter (order of the set: shelter after food); water -> shelter.
    assert _labels(ml_project) == sorted(
        ["food,shelter", "food", "", "shelter,medical_help", "food,shelter", "shelter"]
    )
    annotations, revisions = _snapshot(ml_project)
    assert annotations == before[0] and revisions == before[1] + 2
    merged = {(pk, "shelter" if name == "water" else name) for pk, name in given}
    assert merged <= _every_given_label(ml_project) and given <= _every_given_label(ml_project)
    decision = ReviewDecision.objects.get()
    assert (decision.label, decision.replaced_label) == ("food,shelter", "shelter")
    # A set that held both keeps the target once.
    got = admin_client.post(_url(ml_project, "merge"), {"labels": ["food"], "into": "shelter"}, format="json")
    assert got.status_code == 200 and got.json()["migrated"] == 3
    assert _labels(ml_project) == sorted(["shelter", "shelter", "", "shelter,medical_help", "shelter", "shelter"])
    assert set(Document.objects.filter(pk__in=list(answered)).values_list("gold_label", flat=True)) == {"shelter"}
    version = LabelSetVersion.objects.get(project=ml_project, version=2)
    assert version.data == {"labels": ["water"], "into": "shelter", "migrated": 2}


def test_retire_drops_the_label_from_every_set_and_sends_back_answers_it_would_empty(
    admin_client, ml_project, answered, champion, annotator_client
):
    before = _snapshot(ml_project)
    given = _every_given_label(ml_project)
    only_food = next(d for d, s in answered.items() if s == "food")
    got = admin_client.post(_url(ml_project, "retire"), {"label": "food"}, format="json")
    assert got.status_code == 200, got.json()
    body = got.json()
    assert (body["migrated"], body["reopened"]) == (2, 1)
    # {food} is kept as given (the annotator chose food, not "none applies"); "" was "none applies" and stays.
    assert _labels(ml_project) == sorted(["water", "food", "", "shelter,medical_help", "shelter", "water"])
    assert _snapshot(ml_project) == (before[0], before[1] + 2)
    assert given <= _every_given_label(ml_project)
    # Gold loses the name; a suggestion that held only it is no suggestion any more.
    docs = Document.objects.filter(pk__in=list(answered))
    assert set(docs.values_list("gold_label", "suggested_label")) == {("shelter", "")}
    assert ReviewDecision.objects.get().label == "water"
    # The emptied answer no longer counts: its document is open again and its lease released.
    ml_project.refresh_from_db()
    assert not Document.objects.get(pk=only_food).is_labeled
    assert final_labels(project=ml_project)[only_food].label is None
    assert not Assignment.objects.filter(document_id=only_food, state=AssignmentState.DONE).exists()
    # Its annotator is served it again; the new answer replaces the old one, which stays in a revision.
    doc_id, status = _answer(annotator_client, ml_project, ["water"])
    assert (doc_id, status) == (only_food, 200)
    revision = AnnotationRevision.objects.filter(annotation__document_id=only_food).get()
    assert (revision.previous_label, revision.new_label) == ("food", "water")
    assert Document.objects.get(pk=only_food).is_labeled
    assert final_labels(project=ml_project)[only_food].label == "water"
    version = LabelSetVersion.objects.get(project=ml_project, version=2)
    assert version.data == {"label": "food", "migrated": 2, "reopened": 1, "annotations_kept": 1}
    _model_followed(ml_project, champion)


def test_split_sends_every_set_naming_the_label_back_whole(
    admin_client, ml_project, answered, champion, annotator_client, other_client
):
    before = _snapshot(ml_project)
    given = _every_given_label(ml_project)
    with_shelter = {d for d, s in answered.items() if "shelter" in s.split(",")}
    assert len(with_shelter) == 2
    got = admin_client.post(
        _url(ml_project, "split"), {"label": "shelter", "new_labels": ["tents", "housing"]}, format="json"
    )
    assert got.status_code == 200, got.json()
    assert got.json()["reopened"] == 2
    assert _snapshot(ml_project) == before and given <= _every_given_label(ml_project)  # kept as given
    ml_project.refresh_from_db()
    assert ml_project.label_names == ["water", "food", "tents", "housing", "medical_help"]
    finals = final_labels(project=ml_project)
    assert all(finals[d].label is None for d in with_shelter)  # a set naming shelter no longer counts
    assert set(Document.objects.filter(is_labeled=False).values_list("pk", flat=True)) == with_shelter
    # Served again (bob gave both): the whole set is asked again and replaces the old answer.
    served = set()
    for client in (other_client, annotator_client):
        while (item := client.post(f"/api/v1/projects/{ml_project.pk}/queue/next")).status_code == 200:
            answer = client.post(
                f"/api/v1/assignments/{item.json()['assignment']['id']}/annotation",
                {"labels": ["food", "housing"]},
                format="json",
            )
            assert answer.status_code in (200, 201), answer.json()
            served.add(item.json()["document"]["id"])
    assert served == with_shelter
    assert _snapshot(ml_project) == (before[0], before[1] + 2)  # bob's two answers replaced, a revision each
    assert set(
        AnnotationRevision.objects.filter(annotation__document_id__in=with_shelter).values_list(
            "previous_label", flat=True
        )
    ) <= {"shelter,medical_help", "food,shelter"}
    assert given <= _every_given_label(ml_project)
    assert all(final_labels(project=ml_project)[d].label == "food,housing" for d in with_shelter)
    _model_followed(ml_project, champion)


@pytest.mark.parametrize(
    ("op", "body", "pairs"),
    [
        ("merge", {"labels": ["food"], "into": "water"}, [["water"], ["food"]]),  # both now {water}
        ("retire", {"label": "food"}, [["water", "food"], ["water"]]),  # both now {water}
    ],
)
def test_a_change_that_makes_two_sets_agree_closes_their_review_item(
    admin_client, ml_project, ml_docs, op, body, pairs
):
    doc = ml_docs[0]
    Document.objects.filter(pk=doc.pk).update(labels_required=2, is_labeled=True)
    for i, labels in enumerate(pairs):
        f.AnnotationFactory(document=doc, annotator=f.UserFactory(username=f"p{i}"), label=",".join(labels))
    item = ReviewItem.objects.create(project=ml_project, document=doc, reason=ReviewReason.DISAGREEMENT)
    assert final_labels(project=ml_project)[doc.pk].label is None
    got = admin_client.post(_url(ml_project, op), body, format="json")
    assert got.status_code == 200 and got.json()["review_closed"] == 1, got.json()
    item.refresh_from_db()
    assert item.state == ReviewState.CLOSED and "'water'" in item.closed_reason
    assert final_labels(project=ml_project)[doc.pk].label == "water"
    assert AuditEvent.objects.filter(action=AuditAction.REVIEW_CLOSED, project_id=ml_project.pk).count() == 1


def test_a_rename_keeps_a_disagreement_open_showing_the_new_name(admin_client, ml_project, ml_docs):
    doc = ml_docs[0]
    Document.objects.filter(pk=doc.pk).update(labels_required=2, is_labeled=True)
    for i, label in enumerate(("water,food", "water")):
        f.AnnotationFactory(document=doc, annotator=f.UserFactory(username=f"p{i}"), label=label)
    item = ReviewItem.objects.create(project=ml_project, document=doc, reason=ReviewReason.DISAGREEMENT)
    got = admin_client.post(_url(ml_project, "rename"), {"label": "food", "new_name": "rations"}, format="json")
    assert got.status_code == 200 and got.json()["review_closed"] == 0
    item.refresh_from_db()
    assert item.state == ReviewState.OPEN
    assert sorted(Annotation.objects.filter(document=doc).values_list("label", flat=True)) == ["water", "water,rations"]


@pytest.mark.parametrize(
    ("op", "body", "field"),
    [
        ("merge", {"labels": ["food"], "into": "gone"}, "into"),  # merge into a retired label
        ("merge", {"labels": ["gone"], "into": "food"}, "labels"),  # merge a retired label
        ("merge", {"labels": ["water", "food", "shelter"], "into": "medical_help"}, "labels"),  # fewer than 2 left
        ("rename", {"label": "food", "new_name": "water"}, "new_name"),  # an existing name
        ("rename", {"label": "food", "new_name": "gone"}, "new_name"),  # a retired name
        ("rename", {"label": "food", "new_name": "a,b"}, "new_name"),  # the set separator
        ("split", {"label": "shelter", "new_labels": ["water", "tents"]}, "new_labels"),
        ("split", {"label": "shelter", "new_labels": ["tents"]}, "new_labels"),
        ("retire", {"label": "gone"}, "label"),  # already retired
        ("retire", {"label": "lava"}, "label"),  # unknown
    ],
)
def test_bad_input_names_the_field_and_stores_nothing(admin_client, ml_project, answered, op, body, field):
    from labeling.services.labelset import labelset_add, labelset_retire

    labelset_add(project=ml_project, name="gone", by=None)
    labelset_retire(project=ml_project, label="gone", by=None)
    ml_project.refresh_from_db()

    def state():
        ml_project.refresh_from_db()
        return (
            ml_project.labels,
            ml_project.label_set_version,
            LabelSetVersion.objects.count(),
            _snapshot(ml_project),
            _labels(ml_project),
            AuditEvent.objects.count(),
            TrainingRun.objects.count(),
            sorted(Document.objects.values_list("pk", "gold_label", "suggested_label", "is_labeled")),
            sorted(ReviewDecision.objects.values_list("label", "replaced_label")),
        )

    before = state()
    got = admin_client.post(_url(ml_project, op), body, format="json")
    assert got.status_code == 400, got.content
    assert field in got.json()["error"]["fields"], got.json()
    assert state() == before
