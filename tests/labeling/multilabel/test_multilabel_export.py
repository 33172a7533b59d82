"""Multi-label exports: the set in every format (JSONL/Parquet/HF list, CSV joined), consensus and who decided."""

from __future__ import annotations

import csv
import io
import json
import zipfile

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from labeling.models import ReviewAction, ReviewDecision, ReviewItem, ReviewReason
from tests import factories as f

pytestmark = pytest.mark.django_db


@pytest.fixture
def team_labeled(ml_project, ml_docs):
    """Two annotators on 3 documents: an agreed set, an agreed empty set, a disagreement a reviewer decided."""
    docs = ml_docs[:3]
    given = {
        docs[0].pk: ("shelter,water", "water,shelter"),
        docs[1].pk: ("", ""),
        docs[2].pk: ("water,food", "food"),
    }
    for i, name in enumerate(("x1", "x2")):
        user = f.UserFactory(username=name)
        for doc in docs:
            doc.labels_required = 2
            doc.save()
            f.AnnotationFactory(
                document=doc,
                annotator=user,
                label=",".join(
                    sorted(given[doc.pk][i].split(","), key=["water", "food", "shelter", "medical_help", ""].index)
                ),
            )
    reviewer = f.UserFactory(username="rev")
    item = ReviewItem.objects.create(
        project=ml_project, document=docs[2], reason=ReviewReason.DISAGREEMENT, state="decided", reviewer=reviewer
    )
    ReviewDecision.objects.create(
        item=item,
        project=ml_project,
        document=docs[2],
        reviewer=reviewer,
        action=ReviewAction.ACCEPT,
        label="water,food",
    )
    return docs


def _body(response) -> bytes:
    assert response.status_code == 200
    return b"".join(response.streaming_content)


def test_jsonl_and_parquet_hold_lists(admin_client, ml_project, team_labeled) -> None:
    rows = [
        json.loads(line) for line in _body(admin_client.get(f"/api/v1/projects/{ml_project.pk}/export")).splitlines()
    ]
    assert len(rows) == 6
    by_doc = {r["document_id"]: r for r in rows if r["annotator"] == "x1"}
    first, empty, decided = (by_doc[d.pk] for d in team_labeled)
    assert first["label"] == ["water", "shelter"] and first["final_label"] == ["water", "shelter"]
    assert first["decided_by"] == "annotators" and first["label_current"] is True
    assert empty["label"] == [] and empty["consensus_label"] == [] and empty["final_label"] == []
    assert decided["consensus_label"] is None and decided["final_label"] == ["water", "food"]
    assert decided["decided_by"] == "reviewer:rev"
    table = pq.read_table(
        io.BytesIO(_body(admin_client.get(f"/api/v1/projects/{ml_project.pk}/export?format=parquet")))
    )
    assert pa.types.is_list(table.schema.field("label").type)
    assert sorted(map(tuple, table.column("final_label").to_pylist())) == sorted(
        [("water", "shelter")] * 2 + [()] * 2 + [("water", "food")] * 2
    )


def test_csv_joins_the_set_with_the_separator(admin_client, ml_project, team_labeled) -> None:
    text = _body(admin_client.get(f"/api/v1/projects/{ml_project.pk}/export?format=csv")).decode()
    rows = list(csv.DictReader(io.StringIO(text)))
    labels = {(r["document_id"], r["annotator"]): r["label"] for r in rows}
    assert labels[(str(team_labeled[0].pk), "x1")] == "water,shelter"
    assert labels[(str(team_labeled[1].pk), "x2")] == ""
    assert {r["final_label"] for r in rows if r["document_id"] == str(team_labeled[2].pk)} == {"water,food"}


def test_hf_export_declares_a_sequence_of_class_labels(admin_client, ml_project, team_labeled, tmp_path) -> None:
    import datasets

    archive = zipfile.ZipFile(io.BytesIO(_body(admin_client.get(f"/api/v1/projects/{ml_project.pk}/export?format=hf"))))
    archive.extractall(tmp_path)
    ds = datasets.load_dataset(str(tmp_path), cache_dir=str(tmp_path / "cache"))["train"]
    feature = ds.features["label_id"]
    assert isinstance(feature, datasets.List) and isinstance(feature.feature, datasets.ClassLabel)
    assert feature.feature.names == ["water", "food", "shelter", "medical_help"]
    row = next(r for r in ds if r["document_id"] == team_labeled[0].pk)
    assert row["label"] == ["water", "shelter"] and row["label_id"] == [0, 2]
    assert json.loads((tmp_path / "agreement.json").read_text())["task_type"] == "multi_label"
