"""Imported training labels credited per row (``annotator_col``): to the member each row names, in
every import format; an unknown, non-member or non-labeling username stores nothing and names the row."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.core.management import CommandError, call_command
from django.urls import reverse

from labeling import roles
from labeling.models import Annotation, AuditAction, AuditEvent, Document, ImportJob, LabelsAs, RunStatus, Split
from labeling.services.import_jobs import import_job_run
from labeling.services.import_readers import ImportFileError
from labeling.services.import_rows import IMPORT_ANNOTATOR, ImportLabelError
from labeling.services.imports import import_file, import_records
from labeling.services.memberships import membership_ensure
from tests.factories import ProjectFactory, UserFactory
from tests.labeling.test_import_labels import ROWS, write

pytestmark = pytest.mark.django_db


@pytest.fixture
def team():
    """A project with an annotator (ana) and a reviewer (rev) who label, and an ingest client (feed)."""
    project = ProjectFactory(retrain_after=1000)
    for username, role in (("ana", roles.ANNOTATOR), ("rev", roles.REVIEWER), ("feed", roles.INGEST)):
        membership_ensure(project=project, user=UserFactory(username=username), role=role)
    return project


def _credited(i: int) -> str:
    return ("ana", "rev", "")[i % 3]  # every third row names nobody


ROWS_BY = [{**r, "by": _credited(i)} for i, r in enumerate(ROWS)]


@pytest.mark.parametrize("name", ["r.csv", "r.tsv", "r.jsonl", "r.parquet", "hf"])
def test_every_format_credits_each_label_to_the_member_its_row_names(team, tmp_path: Path, name: str) -> None:
    report = import_file(
        project=team,
        path=write(tmp_path / name, ROWS_BY),
        label_col="label",
        external_id_col="id",
        labels_as=LabelsAs.TRAINING,
        annotator_col="by",
    )

    by_id = {r["id"]: r for r in ROWS_BY}
    pool = Document.objects.filter(project=team, split=Split.POOL)
    assert report.imported == 40 and report.labeled == pool.count() > 0
    credited = set()
    for doc in pool:
        annotation = Annotation.objects.select_related("annotator").get(document=doc)
        expected = by_id[doc.external_id]["by"] or IMPORT_ANNOTATOR  # an empty cell: the service account
        assert (annotation.annotator.username, annotation.label) == (expected, by_id[doc.external_id]["label"])
        credited.add(expected)
    assert credited == {"ana", "rev", IMPORT_ANNOTATOR}
    # Holdout rows keep their label as gold, whoever gave it: the holdout is labeled blind.
    assert not Annotation.objects.filter(document__project=team, document__split=Split.HOLDOUT).exists()
    event = AuditEvent.objects.get(action=AuditAction.LABELS_IMPORTED, project_id=team.pk)
    assert event.data["annotator_col"] == "by"


def test_in_memory_records_credit_their_annotators_too(team) -> None:
    team.holdout_fraction = 0.0
    team.save(update_fields=["holdout_fraction"])
    report = import_records(
        project=team, records=ROWS_BY[:6], label_col="label", labels_as=LabelsAs.TRAINING, annotator_col="by"
    )
    assert report.labeled == 6
    names = sorted(Annotation.objects.values_list("annotator__username", flat=True))
    assert names == sorted(["ana", "ana", "rev", "rev", IMPORT_ANNOTATOR, IMPORT_ANNOTATOR])


@pytest.mark.parametrize(
    ("username", "problem"),
    [
        ("nobody", "'nobody', who is not a member of this project"),  # no such user
        ("outsider", "'outsider', who is not a member of this project"),  # a user of another project
        ("feed", "'feed', a member with role ingest, which does not label"),
        ("gone", "'gone', whose account is deactivated"),
    ],
)
@pytest.mark.parametrize("name", ["r.csv", "r.jsonl"])
def test_a_username_that_cannot_label_fails_the_import_naming_row_and_column(
    team, tmp_path: Path, name: str, username: str, problem: str
) -> None:
    UserFactory(username="outsider")
    membership_ensure(project=team, user=UserFactory(username="gone", is_active=False), role=roles.ANNOTATOR)
    rows = [*ROWS_BY[:6], {**ROWS_BY[6], "by": username}, *ROWS_BY[7:]]

    with pytest.raises(ImportLabelError) as caught:
        import_file(
            project=team,
            path=write(tmp_path / name, rows),
            label_col="label",
            labels_as=LabelsAs.TRAINING,
            annotator_col="by",
        )

    assert f"row 7: 'by' is {problem}" in str(caught.value)
    assert not Document.objects.filter(project=team).exists() and not Annotation.objects.exists()


def test_an_annotator_column_goes_only_with_training_labels_and_must_exist(team, tmp_path: Path) -> None:
    path = write(tmp_path / "r.csv", ROWS_BY[:3])
    with pytest.raises(ImportFileError, match="annotator_col only with labels_as=training"):
        import_file(project=team, path=path, label_col="label", annotator_col="by")
    with pytest.raises(ImportFileError, match="annotator column 'who_did_it' not found"):
        import_file(project=team, path=path, label_col="label", labels_as=LabelsAs.TRAINING, annotator_col="who_did_it")
    assert not Document.objects.exists()


def test_the_command_takes_an_annotator_column(team, tmp_path: Path) -> None:
    path = write(tmp_path / "r.csv", [{**r, "by": "ana"} for r in ROWS[:4]])
    call_command(
        "import_documents",
        str(team.pk),
        str(path),
        "--label-col",
        "label",
        "--labels-as",
        "training",
        "--annotator-col",
        "by",
    )
    assert set(Annotation.objects.values_list("annotator__username", flat=True)) <= {"ana"}
    bad = write(tmp_path / "bad.csv", [{**ROWS[5], "by": "nobody"}])
    with pytest.raises(CommandError, match="row 1: 'by' is 'nobody'"):
        call_command(
            "import_documents",
            str(team.pk),
            str(bad),
            "--label-col",
            "label",
            "--labels-as",
            "training",
            "--annotator-col",
            "by",
        )


# ---------------------------------------------------------------------------------------------
# The API


@pytest.fixture
def manager_client(client, settings, team, tmp_path: Path):
    settings.UPLOAD_DIR = str(tmp_path / "uploads")
    team.holdout_fraction = 0.0
    team.save(update_fields=["holdout_fraction"])
    user = UserFactory()
    membership_ensure(project=team, user=user, role=roles.MANAGER)
    client.force_login(user)
    return client, team


def _post(client, project, path: Path, **fields: str):
    with path.open("rb") as fh:
        return client.post(reverse("api-imports", args=[project.pk]), {"file": fh, **fields})


@pytest.mark.parametrize("name", ["r.csv", "r.tsv", "r.jsonl", "r.parquet"])
def test_api_an_unknown_annotator_is_a_400_naming_row_and_field_and_stores_nothing(manager_client, tmp_path, name):
    client, project = manager_client
    rows = [*ROWS_BY[:2], {**ROWS_BY[2], "by": "mallory"}]

    response = _post(
        client, project, write(tmp_path / name, rows), label_col="label", labels_as="training", annotator_col="by"
    )

    assert response.status_code == 400, response.content
    message = response.json()["error"]["fields"]["annotator_col"]
    assert "row 3" in message and "'mallory', who is not a member of this project" in message
    assert not ImportJob.objects.exists() and not Document.objects.exists()
    assert not any(Path(tmp_path / "uploads").rglob("*.*"))  # the upload is not kept


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"label_col": "label", "annotator_col": "by"}, "annotator_col"),  # gold labels have no annotator
        ({"label_col": "label", "labels_as": "training", "annotator_col": "who_did_it"}, "annotator_col"),
    ],
)
def test_api_bad_annotator_options_are_400_naming_the_field(manager_client, tmp_path, fields, field):
    client, project = manager_client
    response = _post(client, project, write(tmp_path / "r.csv", ROWS_BY[:3]), **fields)
    assert response.status_code == 400, response.content
    assert field in response.json()["error"]["fields"]
    assert not ImportJob.objects.exists()


def test_api_job_credits_each_row_to_its_annotator(manager_client, tmp_path):
    client, project = manager_client
    response = _post(
        client,
        project,
        write(tmp_path / "r.jsonl", ROWS_BY[:6]),
        label_col="label",
        labels_as="training",
        annotator_col="by",
    )
    assert response.status_code == 202, response.content
    assert response.json()["annotator_col"] == "by"

    job = import_job_run(response.json()["id"])

    assert job.status == RunStatus.SUCCEEDED and job.rows_labeled == 6
    names = sorted(Annotation.objects.filter(import_job=job).values_list("annotator__username", flat=True))
    assert names == sorted(["ana", "ana", "rev", "rev", IMPORT_ANNOTATOR, IMPORT_ANNOTATOR])
