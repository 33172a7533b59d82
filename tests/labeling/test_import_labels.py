"""Importing existing labels as training labels (``labels_as=training``): every format, the source
recorded, holdout documents kept blind, a bad label stores nothing, a first run queued at once."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command
from django.urls import reverse

from labeling import roles
from labeling.api.queue import queue_item
from labeling.models import (
    Annotation,
    AnnotationSource,
    Assignment,
    AuditAction,
    AuditEvent,
    Document,
    ImportJob,
    LabelsAs,
    RunStatus,
    Split,
    TrainingRun,
)
from labeling.services.annotations import annotation_submit
from labeling.services.assignments import assignment_next
from labeling.services.import_jobs import import_job_run
from labeling.services.import_rows import IMPORT_ANNOTATOR, ImportLabelError
from labeling.services.imports import import_file, import_records
from labeling.services.memberships import membership_ensure
from tests.factories import ProjectFactory, UserFactory
from tests.support.data import rt_snippets

pytestmark = pytest.mark.django_db

ROWS = [
    {"id": f"r{i}", "text": text, "label": gold, "who": "vendor-a" if i % 2 else "vendor-b"}
    for i, (text, gold) in enumerate(rt_snippets(40, seed=3))
]


def write(path: Path, rows: list[dict[str, str]]) -> Path:
    """``rows`` in the format its suffix names (csv, tsv, jsonl, parquet, or a save_to_disk folder)."""
    if path.suffix in (".csv", ".tsv"):
        with path.open("w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=list(rows[0]), delimiter="\t" if path.suffix == ".tsv" else ",")
            writer.writeheader()
            writer.writerows(rows)
    elif path.suffix == ".jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    elif path.suffix == ".parquet":
        import pandas as pd

        pd.DataFrame(rows).to_parquet(path)
    else:
        import datasets

        datasets.Dataset.from_list(rows).save_to_disk(str(path))
    return path


@pytest.mark.parametrize("name", ["r.csv", "r.tsv", "r.jsonl", "r.parquet", "hf"])
def test_every_format_imports_labels_as_training_with_their_source(tmp_path: Path, name: str) -> None:
    project = ProjectFactory(retrain_after=1000)  # no run here: this test is about the rows
    report = import_file(project=project, path=write(tmp_path / name, ROWS), label_col="label",
                         external_id_col="id", labels_as=LabelsAs.TRAINING, source_col="who")

    docs = {d.external_id: d for d in Document.objects.filter(project=project)}
    pool = [d for d in docs.values() if d.split == Split.POOL]
    holdout = [d for d in docs.values() if d.split == Split.HOLDOUT]
    assert report.imported == 40 and pool and holdout
    assert report.labeled == len(pool)
    truth = {r["id"]: r for r in ROWS}
    for doc in pool:
        annotation = Annotation.objects.get(document=doc)
        assert annotation.label == truth[doc.external_id]["label"]
        assert annotation.source == AnnotationSource.IMPORT
        assert annotation.import_source == truth[doc.external_id]["who"]
        assert annotation.annotator.username == IMPORT_ANNOTATOR
        assert doc.is_labeled and not doc.gold_label
    # Holdout documents stay blind: the label is kept as gold, the document waits for an annotator.
    for doc in holdout:
        assert doc.gold_label == truth[doc.external_id]["label"]
        assert not doc.is_labeled and not doc.annotations.exists()


def test_imported_labels_close_their_documents_in_the_queue(tmp_path: Path) -> None:
    project = ProjectFactory(retrain_after=1000, holdout_fraction=0.0)
    rows = ROWS[:10] + [{**r, "label": ""} for r in ROWS[10:13]]  # three rows without a label
    import_file(project=project, path=write(tmp_path / "r.csv", rows), label_col="label", external_id_col="id",
                labels_as=LabelsAs.TRAINING)
    annotator = UserFactory()
    membership_ensure(project=project, user=annotator, role=roles.ANNOTATOR)

    served = set()
    while (lease := assignment_next(project=project, annotator=annotator)) is not None:
        served.add(lease.document.external_id)
        annotation_submit(assignment=lease, user=annotator, label="fresh")
    assert served == {"r10", "r11", "r12"}  # only the unlabeled rows are served


def test_an_unknown_label_fails_the_import_naming_row_and_column_and_stores_nothing(tmp_path: Path) -> None:
    project = ProjectFactory()
    rows = [*ROWS[:5], {**ROWS[5], "label": "mouldy"}, *ROWS[6:]]

    with pytest.raises(ImportLabelError) as caught:
        import_file(project=project, path=write(tmp_path / "r.jsonl", rows), label_col="label",
                    labels_as=LabelsAs.TRAINING)

    assert "row 6" in str(caught.value) and "'label'" in str(caught.value) and "'mouldy'" in str(caught.value)
    assert not Document.objects.filter(project=project).exists()
    assert not Annotation.objects.exists()
    with pytest.raises(ImportLabelError):
        import_records(project=project, records=rows, label_col="label", labels_as=LabelsAs.TRAINING)
    assert not Document.objects.filter(project=project).exists()


def test_gold_stays_the_default_and_never_makes_annotations(tmp_path: Path) -> None:
    project = ProjectFactory(holdout_fraction=0.0)
    import_file(project=project, path=write(tmp_path / "r.csv", ROWS), label_col="label")
    assert not Annotation.objects.exists()
    assert not Document.objects.filter(project=project, gold_label__isnull=True).exists()
    assert not TrainingRun.objects.exists()


def test_a_labeled_file_in_an_empty_project_queues_its_first_run_and_is_audited(
    tmp_path: Path, django_capture_on_commit_callbacks
) -> None:
    project = ProjectFactory(retrain_after=10)
    with django_capture_on_commit_callbacks(execute=False):
        report = import_file(project=project, path=write(tmp_path / "r.csv", ROWS), label_col="label",
                             labels_as=LabelsAs.TRAINING)
    run = TrainingRun.objects.get(project=project)
    assert run.status == RunStatus.QUEUED and report.labeled >= 20
    event = AuditEvent.objects.get(action=AuditAction.LABELS_IMPORTED, project_id=project.pk)
    assert event.data["labels"] == report.labeled


def test_the_command_imports_training_labels(tmp_path: Path) -> None:
    project = ProjectFactory(retrain_after=1000, holdout_fraction=0.0)
    path = write(tmp_path / "r.csv", ROWS[:4])
    call_command("import_documents", str(project.pk), str(path), "--label-col", "label", "--labels-as", "training")
    assert Annotation.objects.filter(document__project=project, source=AnnotationSource.IMPORT).count() == 4
    bad = write(tmp_path / "bad.csv", [{**ROWS[4], "label": "nope"}])
    with pytest.raises(CommandError, match="row 1"):
        call_command("import_documents", str(project.pk), str(bad), "--label-col", "label",
                     "--labels-as", "training")


# ---------------------------------------------------------------------------------------------
# The API


@pytest.fixture
def manager_client(client, settings, tmp_path: Path):
    settings.UPLOAD_DIR = str(tmp_path / "uploads")
    project = ProjectFactory(retrain_after=1000, holdout_fraction=0.0)
    user = UserFactory()
    membership_ensure(project=project, user=user, role=roles.MANAGER)
    client.force_login(user)
    return client, project


def _post(client, project, path: Path, **fields: str):
    with path.open("rb") as fh:
        return client.post(reverse("api-imports", args=[project.pk]), {"file": fh, **fields})


def test_api_unknown_label_is_a_400_naming_row_and_field_and_stores_nothing(manager_client, tmp_path):
    client, project = manager_client
    path = write(tmp_path / "r.csv", [*ROWS[:3], {**ROWS[3], "label": "mouldy"}])

    response = _post(client, project, path, label_col="label", labels_as="training")

    assert response.status_code == 400, response.content
    message = response.json()["error"]["fields"]["label_col"]
    assert "row 4" in message and "mouldy" in message
    assert not ImportJob.objects.exists() and not Document.objects.exists()
    assert not any(Path(tmp_path / "uploads").rglob("*.csv"))  # the upload is not kept


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"labels_as": "training"}, "label_col"),  # training labels need a column
        ({"labels_as": "training", "label_col": "stars"}, "label_col"),  # not in the file
        ({"labels_as": "training", "label_col": "label", "source_col": "vendor"}, "source_col"),
        ({"labels_as": "truth"}, "labels_as"),
        ({"label_col": "label", "source_col": "who"}, "source_col"),  # a source only goes with training
    ],
)
def test_api_bad_import_options_are_400_naming_the_field(manager_client, tmp_path, fields, field):
    client, project = manager_client
    response = _post(client, project, write(tmp_path / "r.csv", ROWS[:3]), **fields)
    assert response.status_code == 400, response.content
    assert field in response.json()["error"]["fields"]
    assert not ImportJob.objects.exists()


def test_api_training_import_runs_as_a_job_and_reports_the_labels(manager_client, tmp_path):
    client, project = manager_client
    response = _post(client, project, write(tmp_path / "r.csv", ROWS[:6]), label_col="label",
                     labels_as="training", source_col="who")
    assert response.status_code == 202, response.content
    assert response.json()["labels_as"] == "training"

    job = import_job_run(response.json()["id"])

    assert job.status == RunStatus.SUCCEEDED and job.rows_labeled == 6
    assert Annotation.objects.filter(import_job=job).count() == 6
    body = client.get(reverse("api-import", args=[project.pk, job.pk])).json()
    assert body["rows_labeled"] == 6 and body["source_col"] == "who"
    event = AuditEvent.objects.get(action=AuditAction.LABELS_IMPORTED)
    assert (event.actor_id, event.target_type, event.target_id) == (job.created_by_id, "import_job", str(job.pk))
    assert event.data["labels"] == 6
    # Run again (a redelivered message after the job finished): nothing changes, nothing is recorded twice.
    import_job_run(job.pk)
    assert Annotation.objects.filter(import_job=job).count() == 6
    assert AuditEvent.objects.filter(action=AuditAction.LABELS_IMPORTED).count() == 1


# ---------------------------------------------------------------------------------------------
# Pre-annotations: an external model's predictions, shown as suggestions, never trained on


@pytest.mark.parametrize("name", ["r.csv", "r.jsonl", "r.parquet", "hf"])
def test_predictions_are_stored_as_suggestions_and_never_as_labels(tmp_path: Path, name: str) -> None:
    project = ProjectFactory()
    rows = [{**r, "pred": "rotten", "p": 0.75} for r in ROWS[:6]]
    report = import_file(project=project, path=write(tmp_path / name, rows), external_id_col="id",
                         prediction_col="pred", prediction_score_col="p")

    assert report.imported == 6 and report.labeled == 0
    assert not Annotation.objects.exists() and not TrainingRun.objects.exists()
    for doc in Document.objects.filter(project=project):
        assert (doc.suggested_label, doc.suggested_score, doc.is_labeled) == ("rotten", 0.75, False)


@pytest.mark.parametrize(
    ("change", "column"),
    [({"pred": "mouldy"}, "'pred'"), ({"p": 1.5}, "'p'"), ({"p": "high"}, "'p'")],
)
def test_a_bad_prediction_fails_the_import_naming_row_and_column(tmp_path: Path, change, column) -> None:
    project = ProjectFactory()
    rows = [{**r, "pred": "fresh", "p": 0.5} for r in ROWS[:5]]
    rows[3] = {**rows[3], **change}
    with pytest.raises(ImportLabelError, match=f"row 4: {column}"):
        import_file(project=project, path=write(tmp_path / "r.jsonl", rows), prediction_col="pred",
                    prediction_score_col="p")
    assert not Document.objects.exists()


def test_api_queue_offers_the_suggestion_on_pool_items_only(manager_client, tmp_path):
    client, project = manager_client
    rows = [{**r, "pred": r["label"], "p": "0.9"} for r in ROWS[:4]]
    response = _post(client, project, write(tmp_path / "r.csv", rows), prediction_col="pred",
                     prediction_score_col="p")
    assert response.status_code == 202, response.content
    assert import_job_run(response.json()["id"]).status == RunStatus.SUCCEEDED

    item = client.post(reverse("api-queue-next", args=[project.pk]), content_type="application/json").json()
    doc = Document.objects.get(pk=item["document"]["id"])
    assert item["suggestion"] == {"label": doc.suggested_label, "score": 0.9}
    Document.objects.filter(pk=doc.pk).update(split=Split.HOLDOUT)  # a blind item never shows one
    lease = Assignment.objects.get(document=doc)
    lease.reason = {**lease.reason, "holdout": True}
    lease.save(update_fields=["reason"])
    assert queue_item(lease)["suggestion"] is None


def test_api_a_bad_predicted_label_is_a_400_naming_the_prediction_column(manager_client, tmp_path):
    client, project = manager_client
    rows = [{**r, "pred": "fresh"} for r in ROWS[:3]]
    rows[1]["pred"] = "mouldy"
    response = _post(client, project, write(tmp_path / "r.csv", rows), prediction_col="pred")
    assert response.status_code == 400, response.content
    assert "row 2" in response.json()["error"]["fields"]["prediction_col"]
    assert not ImportJob.objects.exists() and not Document.objects.exists()
