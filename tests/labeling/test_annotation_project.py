"""``Annotation.project`` is always its document's project (#23).

The write paths set it themselves (checked with PostgreSQL's filling trigger switched off, so a path that
forgot it would fail on NOT NULL); the trigger fills it for a bulk insert or a script that names none and
refuses one naming another project; a document cannot move to another project. Migration 0033 backfills
the labels that exist at the upgrade.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from django.db import IntegrityError, connection, transaction
from django.db.migrations.executor import MigrationExecutor
from django.db.models import F

from labeling import roles
from labeling.models import Annotation, Document, LabelsAs
from labeling.services.annotations import annotation_submit
from labeling.services.assignments import assignment_next
from labeling.services.imports import import_records
from labeling.services.memberships import membership_ensure
from tests import factories as f

BEFORE = [("labeling", "0032_deeptier_tiers")]
AFTER = [("labeling", "0033_annproject")]


def _mismatched() -> int:
    return Annotation.objects.exclude(project_id=F("document__project_id")).count()


@pytest.mark.django_db
def test_the_label_and_import_paths_store_the_project_without_the_trigger() -> None:
    with connection.cursor() as cursor:  # rolled back with the test's transaction
        cursor.execute("ALTER TABLE labeling_annotation DISABLE TRIGGER labeling_annotation_project")
    f.ProjectFactory()  # another project, so a wrong id could not pass by being the only one
    project = f.ProjectFactory(retrain_after=1000, holdout_fraction=0.0)
    for name in ("u0", "u1"):
        membership_ensure(project=project, user=f.UserFactory(username=name), role=roles.ANNOTATOR)
    rows = [{"text": f"snippet {i}", "label": "fresh" if i % 2 else "rotten", "who": f"u{i % 2}"} for i in range(6)]
    import_records(project=project, records=rows[:3], label_col="label", labels_as=LabelsAs.TRAINING)
    import_records(
        project=project, records=rows[3:], label_col="label", labels_as=LabelsAs.TRAINING, annotator_col="who"
    )
    f.DocumentFactory(project=project)
    annotator = f.UserFactory()
    membership_ensure(project=project, user=annotator, role=roles.ANNOTATOR)
    lease = assignment_next(project=project, annotator=annotator)
    assert lease is not None
    annotation_submit(assignment=lease, user=annotator, label="fresh")
    f.AnnotationFactory(document=f.DocumentFactory(project=project))

    assert Annotation.objects.filter(project=project).count() == 8
    assert _mismatched() == 0


@pytest.mark.django_db
def test_a_bulk_insert_without_a_project_gets_the_documents() -> None:
    document = f.DocumentFactory()
    Annotation.objects.bulk_create([Annotation(document=document, annotator=f.UserFactory(), label="fresh")])
    assert Annotation.objects.get().project_id == document.project_id


@pytest.mark.django_db
def test_a_label_naming_another_project_is_refused() -> None:
    document, elsewhere = f.DocumentFactory(), f.ProjectFactory()
    with pytest.raises(IntegrityError, match="names project"), transaction.atomic():
        Annotation.objects.bulk_create(
            [Annotation(document=document, project=elsewhere, annotator=f.UserFactory(), label="fresh")]
        )
    annotation = f.AnnotationFactory(document=document)
    with pytest.raises(IntegrityError, match="names project"), transaction.atomic():
        Annotation.objects.filter(pk=annotation.pk).update(document=f.DocumentFactory(project=elsewhere))
    assert _mismatched() == 0


@pytest.mark.django_db
def test_a_document_never_moves_project() -> None:
    annotation = f.AnnotationFactory()
    with pytest.raises(IntegrityError, match="cannot move"), transaction.atomic():
        Document.objects.filter(pk=annotation.document_id).update(project=f.ProjectFactory())
    assert Document.objects.get(pk=annotation.document_id).project_id == annotation.project_id


def _migrate(targets: list[tuple[str, str]]) -> Any:
    executor = MigrationExecutor(connection)
    executor.migrate(targets)
    executor.loader.build_graph()
    return executor.loader.project_state(targets).apps


@pytest.fixture
def at_0032() -> Iterator[Any]:
    old_apps = _migrate(BEFORE)
    try:
        yield old_apps
    finally:
        executor = MigrationExecutor(connection)
        executor.migrate(executor.loader.graph.leaf_nodes())


@pytest.mark.django_db(transaction=True)
def test_the_upgrade_backfills_every_label_with_its_documents_project(at_0032: Any) -> None:
    apps = at_0032
    User = apps.get_model("auth", "User")
    Project, Doc, Ann = (apps.get_model("labeling", n) for n in ("Project", "Document", "Annotation"))
    labels = [{"name": "a", "text": "a", "key": "1"}, {"name": "b", "text": "b", "key": "2"}]
    projects = [Project.objects.create(name=f"p{i}", labels=labels) for i in range(3)]
    users = [User.objects.create(username=f"u{i}") for i in range(2)]
    expected = {}
    for i in range(12):
        doc = Doc.objects.create(project=projects[i % 3], text=f"t{i}", content_hash=f"h{i}")
        for user in users[: 1 + i % 2]:
            expected[Ann.objects.create(document=doc, annotator=user, label="a").pk] = doc.project_id

    _migrate(AFTER)

    assert dict(Annotation.objects.values_list("pk", "project_id")) == expected
    assert _mismatched() == 0
    # And back: 0032's schema again, the labels kept.
    old = _migrate(BEFORE)
    assert old.get_model("labeling", "Annotation").objects.count() == len(expected)
