"""File imports: formats, duplicates, rejected rows, gold labels kept apart, background jobs."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from labeling.models import Annotation, Document, ImportJob, RunStatus
from labeling.services.import_jobs import import_job_run
from labeling.services.import_readers import ImportFileError
from labeling.services.imports import import_file
from tests.factories import ImportJobFactory, ProjectFactory

pytestmark = pytest.mark.django_db

ROWS = [
    {"id": "a1", "text": "A warm, funny and wise film.", "label": "fresh"},
    {"id": "a2", "text": "Two hours I will never get back.", "label": "rotten"},
    {"id": "a3", "text": "The cast shines in a thin script.", "label": "fresh"},
]


def write_csv(path: Path, rows: list[dict[str, str]]) -> Path:
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def test_csv_import_stores_texts_and_gold_labels_without_annotations(tmp_path: Path) -> None:
    project = ProjectFactory()
    report = import_file(project=project, path=write_csv(tmp_path / "r.csv", ROWS), text_col="text",
                         label_col="label", external_id_col="id")

    assert (report.rows_total, report.imported, report.duplicates, report.rejected) == (3, 3, 0, 0)
    docs = {d.external_id: d for d in Document.objects.filter(project=project)}
    assert docs["a2"].text == "Two hours I will never get back."
    assert docs["a2"].gold_label == "rotten"
    assert not docs["a2"].is_labeled
    assert Annotation.objects.count() == 0  # gold labels are never annotations


def test_reimport_counts_duplicates_by_external_id_and_keeps_the_stored_document(tmp_path: Path) -> None:
    project = ProjectFactory()
    path = write_csv(tmp_path / "r.csv", ROWS)
    import_file(project=project, path=path, text_col="text", label_col="label", external_id_col="id")
    changed = [dict(ROWS[0], text="An edited text."), *ROWS[1:]]

    report = import_file(project=project, path=write_csv(tmp_path / "r2.csv", changed), text_col="text",
                         label_col="label", external_id_col="id")

    # The changed text is not dropped silently: its row is rejected with the reason.
    assert (report.imported, report.duplicates, report.rejected) == (0, 2, 1)
    assert report.rejected_rows == [
        {"row": 1, "reason": "external id 'a1' is stored in the project with a different text"}
    ]
    assert Document.objects.filter(project=project).count() == 3
    assert Document.objects.get(project=project, external_id="a1").text == ROWS[0]["text"]


def test_one_external_id_with_two_texts_in_one_file_keeps_the_first_and_rejects_the_second(
    tmp_path: Path,
) -> None:
    project = ProjectFactory()
    rows = [{"id": "x", "text": "first text"}, {"id": "x", "text": "second text"}, {"id": "x", "text": "first text"}]
    report = import_file(project=project, path=write_csv(tmp_path / "r.csv", rows), text_col="text",
                         external_id_col="id")

    assert (report.imported, report.duplicates, report.rejected) == (1, 1, 1)
    assert report.rejected_rows[0]["row"] == 2
    assert "earlier in the file" in report.rejected_rows[0]["reason"]


def test_rows_without_external_id_are_deduplicated_by_exact_text(tmp_path: Path) -> None:
    project = ProjectFactory()
    rows = [{"text": "same words"}, {"text": "same words"}, {"text": "other words"}]
    first = import_file(project=project, path=write_csv(tmp_path / "a.csv", rows), text_col="text")
    second = import_file(project=project, path=write_csv(tmp_path / "b.csv", rows[:1]), text_col="text")

    assert (first.imported, first.duplicates) == (2, 1)
    assert (second.imported, second.duplicates) == (0, 1)
    # The same text in another project is not a duplicate there.
    other = import_file(project=ProjectFactory(), path=tmp_path / "b.csv", text_col="text")
    assert other.imported == 1


def test_bad_rows_are_rejected_with_row_numbers_and_reasons(tmp_path: Path) -> None:
    project = ProjectFactory()
    rows = [
        {"text": "fine", "label": "fresh"},
        {"text": "   ", "label": "fresh"},
        {"text": "nul \x00 inside", "label": "fresh"},
        {"text": "x" * 100_001, "label": "rotten"},
        {"text": "unknown label", "label": "meh"},
        {"text": "no gold label is fine", "label": ""},
    ]
    path = tmp_path / "bad.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n{not json\n")

    report = import_file(project=project, path=path, text_col="text", label_col="label")

    assert (report.rows_total, report.imported, report.rejected) == (7, 2, 5)
    reasons = {r["row"]: r["reason"] for r in report.rejected_rows}
    assert "empty" in reasons[2]
    assert "NUL" in reasons[3]
    assert "100,000" in reasons[4]
    assert "'meh'" in reasons[5]
    assert "invalid JSON" in reasons[7]
    assert Document.objects.get(project=project, text="no gold label is fine").gold_label is None


def test_a_deeply_nested_jsonl_line_is_that_lines_error_and_the_other_rows_import(tmp_path: Path) -> None:
    project = ProjectFactory()
    path = tmp_path / "deep.jsonl"
    lines = [
        json.dumps({"text": "first"}),
        "[" * 100_000,
        json.dumps({"text": "x", "m": [[[[1]]]]}),
        '{"text": ' + "[" * 70 + '"y"' + "]" * 70 + "}",
    ]
    path.write_text("\n".join(lines) + "\n")

    report = import_file(project=project, path=path, text_col="text")

    assert (report.rows_total, report.imported, report.rejected) == (4, 2, 2)
    reasons = {r["row"]: r["reason"] for r in report.rejected_rows}
    assert "nested more than 64 levels" in reasons[2]
    assert "nested more than 64 levels" in reasons[4]
    assert sorted(Document.objects.filter(project=project).values_list("text", flat=True)) == ["first", "x"]


def test_a_jsonl_file_that_starts_with_a_deep_line_still_imports_its_other_rows(tmp_path: Path) -> None:
    project = ProjectFactory()
    job = ImportJobFactory(project=project, file_path=str(tmp_path / "d.jsonl"), file_format="jsonl")
    Path(job.file_path).write_text("[" * 100_000 + "\n" + json.dumps({"text": "kept"}) + "\n")

    job = import_job_run(job.pk)

    assert job.status == RunStatus.SUCCEEDED
    assert (job.rows_imported, job.rows_rejected) == (1, 1)
    assert job.rejected[0]["row"] == 1


def test_padded_text_counts_its_whitespace_against_the_limit(tmp_path: Path) -> None:
    project = ProjectFactory()
    path = write_csv(tmp_path / "pad.csv", [{"text": "short"}, {"text": "a" + " " * 100_000}])

    report = import_file(project=project, path=path, text_col="text")

    assert (report.imported, report.rejected) == (1, 1)
    assert report.rejected_rows[0]["row"] == 2
    assert "100,000" in report.rejected_rows[0]["reason"]


def test_an_oversized_csv_field_is_its_rows_error_and_nothing_after_it_is_guessed(tmp_path: Path) -> None:
    from labeling.services.import_readers import CSV_FIELD_LIMIT

    project = ProjectFactory()
    big = "word " * (CSV_FIELD_LIMIT // 5 + 10) + "\nsecond line of the same field,with a comma"
    path = write_csv(tmp_path / "big.csv", [{"text": "before"}, {"text": big}, {"text": "after"}])

    report = import_file(project=project, path=path, text_col="text")

    assert (report.rows_total, report.imported, report.rejected) == (2, 1, 1)
    assert report.rejected_rows[0]["row"] == 2
    assert "field larger than field limit" in report.rejected_rows[0]["reason"]
    assert "not read" in report.rejected_rows[0]["reason"]
    assert list(Document.objects.filter(project=project).values_list("text", flat=True)) == ["before"]


def test_a_missing_column_fails_before_anything_is_written(tmp_path: Path) -> None:
    project = ProjectFactory()
    path = write_csv(tmp_path / "r.csv", ROWS)
    with pytest.raises(ImportFileError, match="'review'.*columns: id, text, label"):
        import_file(project=project, path=path, text_col="review")
    with pytest.raises(ImportFileError, match="label column 'gold'"):
        import_file(project=project, path=path, text_col="text", label_col="gold")
    assert not Document.objects.filter(project=project).exists()


def test_parquet_and_saved_dataset_folders_import_with_class_label_names(tmp_path: Path) -> None:
    import datasets
    import pandas as pd

    project = ProjectFactory()
    pd.DataFrame(ROWS).to_parquet(tmp_path / "r.parquet")
    report = import_file(project=project, path=tmp_path / "r.parquet", text_col="text", label_col="label")
    assert report.imported == 3

    features = datasets.Features({"sentence": datasets.Value("string"),
                                  "label": datasets.ClassLabel(names=["fresh", "rotten"])})
    data = {"sentence": ["Loved it.", "Hated it."], "label": [0, 1]}
    ds = datasets.Dataset.from_dict(data, features=features)
    ds.save_to_disk(str(tmp_path / "hf"))
    other = ProjectFactory()
    report = import_file(project=other, path=tmp_path / "hf", text_col="sentence", label_col="label")
    assert report.imported == 2
    assert Document.objects.get(project=other, text="Hated it.").gold_label == "rotten"


def test_large_files_stream_in_chunks_of_1000(tmp_path: Path) -> None:
    project = ProjectFactory()
    rows = [{"text": f"document number {i}"} for i in range(2_500)]
    seen: list[int] = []
    report = import_file(project=project, path=write_csv(tmp_path / "big.csv", rows), text_col="text",
                         progress=lambda n, total: seen.append(n))
    assert report.imported == 2_500
    assert seen == [1_000, 2_000, 2_500]


def test_import_job_records_progress_counts_and_rejections(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "r.csv", [*ROWS, {"id": "a4", "text": "", "label": "fresh"}])
    job = ImportJobFactory(file_path=str(path), file_format="csv", text_col="text", label_col="label",
                           external_id_col="id")

    job = import_job_run(job.id)

    assert job.status == RunStatus.SUCCEEDED
    assert (job.rows_total, job.rows_imported, job.rows_duplicate, job.rows_rejected) == (4, 3, 0, 1)
    assert job.progress == 1.0
    assert job.rejected == [{"row": 4, "reason": "text must not be empty or whitespace only"}]
    assert job.finished_at is not None
    # A redelivered message for a finished job changes nothing.
    assert import_job_run(job.id).rows_imported == 3
    assert Document.objects.filter(project=job.project).count() == 3


def test_import_job_with_a_bad_column_fails_with_the_reason(tmp_path: Path) -> None:
    job = ImportJobFactory(file_path=str(write_csv(tmp_path / "r.csv", ROWS)), file_format="csv",
                           text_col="body")
    job = import_job_run(job.id)
    assert job.status == RunStatus.FAILED
    assert "'body'" in job.error
    assert ImportJob.objects.get(pk=job.pk).finished_at is not None


def test_import_documents_command_prints_the_report(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    project = ProjectFactory(name="reviews")
    path = write_csv(tmp_path / "r.csv", [*ROWS, {"id": "a9", "text": " ", "label": "fresh"}])
    call_command("import_documents", "reviews", str(path), "--text-col", "text", "--label-col", "label",
                 "--external-id-col", "id")
    out = capsys.readouterr().out
    assert "4 rows: 3 imported, 0 duplicates, 1 rejected" in out
    assert "row 4: text must not be empty" in out
    assert Document.objects.filter(project=project).count() == 3
    with pytest.raises(CommandError, match="no project named 'nope'"):
        call_command("import_documents", "nope", str(path))
