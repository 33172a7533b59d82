"""Exports: one row per annotation, streamed as JSONL / CSV, built as Parquet, or packed for HF datasets.

Every individual label is a row; each row also carries its document's consensus, its final label,
who decided it (``annotators`` or ``reviewer:<name>``) and why it is in review now, if it is (a label
in review as ``noise`` does not train until it is decided), so a team's disagreements and adjudications
survive the export.

A multi-label project's answers (``label``, ``predicted_label``, ``consensus_label``, ``final_label``) are
sets: a list in JSONL, Parquet (``list<string>``) and the HF zip (whose ``label_id`` is then a
``Sequence(ClassLabel)``, declared in the dataset card), and the stored names joined by ``,`` in CSV (an
empty cell for the empty set there; ``[]`` elsewhere). An empty consensus or final label is the agreed
empty set; ``null`` means there is none.

The project's agreement summary (``selectors.agreement.project_agreement``) goes where the format has
room for it: ``agreement.json`` in the HF zip, the ``alabel.agreement`` key of the Parquet file's
metadata. JSONL and CSV are bare rows with nowhere to put it; the API links it from their response
(``Link: <.../agreement>; rel="describedby"``).
"""

from __future__ import annotations

import csv
import io
import json
import tempfile
import zipfile
from collections.abc import Iterator
from typing import IO, Any

from labeling.labelspace import LabelSpace
from labeling.models import Annotation, Project, ReviewItem, ReviewState
from labeling.selectors.agreement import project_agreement
from labeling.selectors.consensus import REVIEWER, FinalLabel, final_labels
from labeling.selectors.labelset import label_set_versions

FORMATS = ("jsonl", "csv", "parquet", "hf")
COLUMNS = (
    "annotation_id",
    "document_id",
    "external_id",
    "text",
    "split",
    "annotator",
    "label",
    "label_set_version",
    "labeled_at",
    "duration_ms",
    "source",
    "model_version",
    "predicted_label",
    "predicted_confidence",
    "labels_required",
    "consensus_label",
    "consensus_agreement",
    "final_label",
    "decided_by",
    "in_review",
    "label_current",
    "current_label_set_version",
)
#: The Parquet metadata key that holds the project's agreement summary (JSON).
PARQUET_AGREEMENT_KEY = b"alabel.agreement"
_CHUNK = 2000


def _decided_by(final: FinalLabel) -> str | None:
    if final.decided_by == REVIEWER:
        return f"reviewer:{final.reviewer}"
    return final.decided_by or None


def export_rows(project: Project) -> Iterator[dict[str, Any]]:
    """Every annotation of ``project`` in id order, read in chunks (constant memory)."""
    qs = (
        Annotation.objects.filter(project=project)
        .order_by("pk")
        .values_list(
            "pk",
            "document_id",
            "document__external_id",
            "document__text",
            "document__split",
            "annotator__username",
            "label",
            "label_set_version",
            "created_at",
            "duration_ms",
            "source",
            "model_version__version",
            "predicted_label",
            "predicted_confidence",
        )
    )
    finals = final_labels(project=project)
    in_review = dict(
        ReviewItem.objects.filter(project=project, state=ReviewState.OPEN).values_list("document_id", "reason")
    )
    space = project.label_space
    for values in qs.iterator(chunk_size=_CHUNK):
        row = dict(zip(COLUMNS, values, strict=False))
        row["labeled_at"] = row["labeled_at"].isoformat()
        row["predicted_label"] = row["predicted_label"] or None
        final = finals[row["document_id"]]
        row.update(
            labels_required=final.required,
            consensus_label=final.consensus.label,
            consensus_agreement=round(final.consensus.agreement, 6),
            final_label=final.label,
            decided_by=_decided_by(final),
            in_review=in_review.get(row["document_id"]),
            # A label renamed or merged since carries its new name; one retired or split is not current.
            label_current=space.is_current(row["label"]),
            current_label_set_version=project.label_set_version,
        )
        yield row


#: The columns that hold an answer: a set (list) in a multi-label project's JSONL, Parquet and HF exports.
ANSWER_COLUMNS = ("label", "predicted_label", "consensus_label", "final_label")


def answer_rows(project: Project) -> Iterator[dict[str, Any]]:
    """``export_rows`` with each answer as the label space shows it (a multi-label set as a list)."""
    space = project.label_space
    for row in export_rows(project):
        for column in ANSWER_COLUMNS:
            if row[column] is not None:
                row[column] = space.as_json(row[column])
        yield row


def jsonl_chunks(project: Project) -> Iterator[bytes]:
    buffer: list[str] = []
    for row in answer_rows(project):
        buffer.append(json.dumps(row, ensure_ascii=False))
        if len(buffer) >= 500:
            yield ("\n".join(buffer) + "\n").encode()
            buffer = []
    if buffer:
        yield ("\n".join(buffer) + "\n").encode()


# A spreadsheet evaluates a cell that starts with one of these as a formula (=HYPERLINK(...), =cmd|...);
# OWASP's advice for CSV meant to be opened in one: prefix a single quote, which shows as text.
FORMULA_TRIGGERS = ("=", "+", "-", "@", "\t", "\r")


def spreadsheet_safe(value: Any) -> Any:
    """``value`` with a leading ``'`` when it is a string a spreadsheet would run as a formula."""
    if isinstance(value, str) and value.startswith(FORMULA_TRIGGERS):
        return "'" + value
    return value


def csv_chunks(project: Project) -> Iterator[bytes]:
    """The CSV export: every text cell spreadsheet-safe (JSONL, Parquet and HF keep values as stored)."""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=COLUMNS)
    writer.writeheader()
    for i, row in enumerate(export_rows(project), start=1):
        writer.writerow({key: spreadsheet_safe(value) for key, value in row.items()})
        if i % 500 == 0:
            yield out.getvalue().encode()
            out.seek(0)
            out.truncate()
    yield out.getvalue().encode()


def write_parquet(project: Project, target: IO[bytes]) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    answer = pa.list_(pa.string()) if project.label_space.answer_field == "labels" else pa.string()
    schema = pa.schema(
        [
            ("annotation_id", pa.int64()),
            ("document_id", pa.int64()),
            ("external_id", pa.string()),
            ("text", pa.string()),
            ("split", pa.string()),
            ("annotator", pa.string()),
            ("label", answer),
            ("label_set_version", pa.int64()),
            ("labeled_at", pa.string()),
            ("duration_ms", pa.int64()),
            ("source", pa.string()),
            ("model_version", pa.int64()),
            ("predicted_label", answer),
            ("predicted_confidence", pa.float64()),
            ("labels_required", pa.int64()),
            ("consensus_label", answer),
            ("consensus_agreement", pa.float64()),
            ("final_label", answer),
            ("decided_by", pa.string()),
            ("in_review", pa.string()),
            ("label_current", pa.bool_()),
            ("current_label_set_version", pa.int64()),
        ]
    ).with_metadata({PARQUET_AGREEMENT_KEY: _agreement_json(project)})
    with pq.ParquetWriter(target, schema) as writer:
        batch: list[dict[str, Any]] = []
        for row in answer_rows(project):
            batch.append(row)
            if len(batch) >= _CHUNK:
                writer.write_table(pa.Table.from_pylist(batch, schema=schema))
                batch = []
        if batch:  # an empty export is still a valid file: the writer stores the schema on close
            writer.write_table(pa.Table.from_pylist(batch, schema=schema))


def _agreement_json(project: Project) -> str:
    return json.dumps(project_agreement(project=project), default=str, indent=1)


def _dataset_card(project: Project, rows: int) -> str:
    label_lines = "\n".join(f"- `{i}`: `{name}`" for i, name in enumerate(project.label_space.names))
    return f"""---
pretty_name: {json.dumps(project.name)}
task_categories:
- text-classification
{_features_yaml(project)}configs:
- config_name: default
  data_files:
  - split: train
    path: data/train.jsonl
---

# {project.name}

Human labels exported from alabel ({rows} rows, one per annotation).

Load it with:

```python
import datasets
ds = datasets.load_dataset("json", data_files={{"train": "data/train.jsonl"}})
```

## Labels

`label` is the label name; `label_id` is its position in this list:

{label_lines}

## Columns

`text`, `label`, `label_id`, `document_id`, `external_id`, `split` (pool or holdout), `annotator`,
`label_set_version` (the label-set version the label was given under;
`label_sets.json` lists every version, its labels and the operation that made it), `label_current`
(false for a label since retired or split; `label_id` is then -1), `current_label_set_version`,
`labeled_at`, and the model's prediction when the label was given: `model_version`, `predicted_label`,
`predicted_confidence`. One row per individual label; the document's `labels_required`, its annotators'
`consensus_label` and `consensus_agreement` (the top label's share), its `final_label` (what the model
trains on; empty while it waits for labels or review), `decided_by` (`annotators` or
`reviewer:<name>`) and `in_review` (why it is in review now: `disagreement`, `noise` or `audit`; a
`noise` label, flagged as likely wrong, does not train until a reviewer decides it) repeat on each of
its rows. `agreement.json` holds the inter-annotator agreement on
the overlapped items (Krippendorff's alpha, Fleiss' kappa, pairwise Cohen's kappa, per label and per
annotator, each with a 95% bootstrap interval).
"""


def _label_sets(project: Project) -> dict[str, Any]:
    """The current label-set version and every version's labels and operation, oldest first."""
    return {
        "current_version": project.label_set_version,
        "versions": [
            {"version": v.version, "operation": v.operation, "labels": v.labels, "data": v.data,
             "created_at": v.created_at}
            for v in label_set_versions(project=project)
        ],
    }


def _label_ids(space: LabelSpace, answer: Any) -> Any:
    """A label's position (-1: not in the set now), or a set's positions (labels since removed left out)."""
    if isinstance(answer, list):
        return [space.index(name) for name in answer if space.index(name) >= 0]
    return space.index(answer)


# Every other column's type in the HF card (a declared feature list must name every column).
_HF_DTYPES = {
    "annotation_id": "int64", "document_id": "int64", "external_id": "string", "split": "string",
    "annotator": "string", "label_set_version": "int64", "labeled_at": "string", "duration_ms": "int64",
    "source": "string", "model_version": "int64", "predicted_confidence": "float64", "labels_required": "int64",
    "consensus_agreement": "float64", "decided_by": "string", "in_review": "string", "label_current": "bool",
    "current_label_set_version": "int64",
}


def _features_yaml(project: Project) -> str:
    """The card's ``dataset_info`` for a multi-label project: ``label_id`` is a Sequence(ClassLabel)."""
    if project.label_space.answer_field != "labels":
        return ""
    names = "\n".join(f"          '{i}': {name}" for i, name in enumerate(project.label_space.names))
    kinds = {column: "sequence: string" if column in ANSWER_COLUMNS else f"dtype: {_HF_DTYPES.get(column)}"
             for column in COLUMNS if column not in ("text", "label")}
    others = "".join(f"  - name: {column}\n    {kind}\n" for column, kind in kinds.items())
    return f"""dataset_info:
  features:
  - name: text
    dtype: string
  - name: label
    sequence: string
  - name: label_id
    sequence:
      class_label:
        names:
{names}
{others}"""


def write_hf_zip(project: Project, target: IO[bytes]) -> None:
    """A zip with data/train.jsonl, label_names.json and a dataset card (README.md)."""
    space = project.label_space
    rows = 0
    with zipfile.ZipFile(target, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        with archive.open("data/train.jsonl", "w", force_zip64=True) as data:
            for row in answer_rows(project):
                record = {"text": row["text"], "label": row["label"], "label_id": _label_ids(space, row["label"])}
                record.update({k: v for k, v in row.items() if k not in record})
                data.write((json.dumps(record, ensure_ascii=False) + "\n").encode())
                rows += 1
        archive.writestr("label_names.json", json.dumps(list(space.names)))
        archive.writestr("label_sets.json", json.dumps(_label_sets(project), default=str, indent=1))
        archive.writestr("agreement.json", _agreement_json(project))
        archive.writestr("README.md", _dataset_card(project, rows))


def file_chunks(build: Any, project: Project, chunk_size: int = 1 << 16) -> Iterator[bytes]:
    """Build a binary export in a temporary file, then stream it and delete the file."""
    with tempfile.TemporaryFile() as tmp:
        build(project, tmp)
        tmp.seek(0)
        while chunk := tmp.read(chunk_size):
            yield chunk
