"""Stats and exports over HTTP, including a Hugging Face datasets round trip."""

from __future__ import annotations

import csv
import io
import json
import zipfile

import pyarrow.parquet as pq
import pytest

from labeling import roles
from labeling.models import Document, ReviewReason
from labeling.selectors.exports import PARQUET_AGREEMENT_KEY
from labeling.services.memberships import membership_ensure
from labeling.services.review import review_decide, review_flag
from tests import factories as f

pytestmark = pytest.mark.django_db


@pytest.fixture
def labeled(annotator_client, other_client, project, docs, champion):
    """Three labels through the real queue: ann gives fresh, rotten; bob gives rotten."""
    for client, label in (
        (annotator_client, "fresh"),
        (annotator_client, "rotten"),
        (other_client, "rotten"),
    ):
        item = client.post(f"/api/v1/projects/{project.pk}/queue/next").json()
        response = client.post(
            f"/api/v1/assignments/{item['assignment']['id']}/annotation",
            {"label": label, "duration_ms": 1000},
            format="json",
        )
        assert response.status_code == 201


def test_stats_count_labels_queue_coverage_and_throughput(admin_client, project, labeled, champion):
    champion.metrics = {"accuracy": 0.8, "macro_f1": 0.75, "holdout_count": 40}
    champion.train_label_count = 3
    champion.save()
    stats = admin_client.get(f"/api/v1/projects/{project.pk}/stats").json()
    assert stats["labels"]["pool"] == {"fresh": 1, "rotten": 2}
    assert stats["documents"]["pool"] == {"total": 12, "labeled": 3}
    assert stats["queue_size"] == 9
    assert stats["coverage"] == {"pool_documents": 12, "scored_by_champion": 12, "share": 1.0}
    per_user = {a["username"]: a for a in stats["annotators"]}
    assert per_user["ann"]["labels"] == 2 and per_user["bob"]["labels"] == 1
    assert per_user["ann"]["median_duration_ms"] == 1000
    assert stats["learning_curve"] == [
        {
            "model_version": 1,
            "status": "champion",
            "labels": 3,
            "accuracy": 0.8,
            "macro_f1": 0.75,
            "holdout_count": 40,
            "accuracy_interval": pytest.approx([0.6524, 0.8950], abs=1e-3),  # Wilson 32/40
            "n": 40,
            "too_small": True,
        }
    ]
    assert stats["agreement_with_model"] == pytest.approx(1 / 3)
    agreement = stats["agreement_with_model_figures"]
    assert agreement["n"] == 3 and agreement["too_small"] is True
    assert agreement["interval"][0] < 1 / 3 < agreement["interval"][1]


def test_jsonl_and_csv_exports_have_one_row_per_annotation(admin_client, project, labeled):
    jsonl = admin_client.get(f"/api/v1/projects/{project.pk}/export?format=jsonl")
    assert jsonl.status_code == 200 and jsonl.streaming
    rows = [json.loads(line) for line in b"".join(jsonl.streaming_content).decode().splitlines()]
    assert [(r["annotator"], r["label"]) for r in rows] == [
        ("ann", "fresh"),
        ("ann", "rotten"),
        ("bob", "rotten"),
    ]
    assert rows[0]["predicted_label"] == "fresh" and rows[0]["model_version"] == 1
    assert rows[0]["text"].startswith("Review number") and rows[0]["external_id"].startswith("r")
    csv_response = admin_client.get(f"/api/v1/projects/{project.pk}/export?format=csv")
    assert csv_response["Content-Disposition"].endswith('labels.csv"')
    parsed = list(csv.DictReader(io.StringIO(b"".join(csv_response.streaming_content).decode())))
    assert [r["label"] for r in parsed] == ["fresh", "rotten", "rotten"]


def test_parquet_export_reads_back(admin_client, project, labeled):
    response = admin_client.get(f"/api/v1/projects/{project.pk}/export?format=parquet")
    table = pq.read_table(io.BytesIO(b"".join(response.streaming_content)))
    assert table.num_rows == 3
    assert table.column("label").to_pylist() == ["fresh", "rotten", "rotten"]


def test_hf_export_loads_with_datasets(admin_client, project, labeled, tmp_path):
    import datasets

    response = admin_client.get(f"/api/v1/projects/{project.pk}/export?format=hf")
    archive = zipfile.ZipFile(io.BytesIO(b"".join(response.streaming_content)))
    archive.extractall(tmp_path)
    card = (tmp_path / "README.md").read_text()
    assert "`0`: `fresh`" in card and "`1`: `rotten`" in card
    ds = datasets.load_dataset(
        "json",
        data_files={"train": str(tmp_path / "data" / "train.jsonl")},
        cache_dir=str(tmp_path / "cache"),
    )["train"]
    assert ds.num_rows == 3
    assert ds["label"] == ["fresh", "rotten", "rotten"]
    assert ds["label_id"] == [0, 1, 1]


def test_empty_exports_are_valid(admin_client, project):
    jsonl = admin_client.get(f"/api/v1/projects/{project.pk}/export")
    assert b"".join(jsonl.streaming_content) == b""
    parquet = admin_client.get(f"/api/v1/projects/{project.pk}/export?format=parquet")
    assert pq.read_table(io.BytesIO(b"".join(parquet.streaming_content))).num_rows == 0


def test_every_format_carries_the_labels_the_consensus_who_decided_and_the_agreement(admin_client, project, docs):
    """Two annotators on 3 documents: an agreement, a disagreement a reviewer decided, a label flagged as noise."""
    docs = docs[:3]
    given = {docs[0].pk: ("fresh", "fresh"), docs[1].pk: ("fresh", "rotten"), docs[2].pk: ("rotten", "rotten")}
    for i, name in enumerate(("x1", "x2")):
        user = f.UserFactory(username=name)
        for doc in docs:
            Document.objects.filter(pk=doc.pk).update(labels_required=2)
            f.AnnotationFactory(document=doc, annotator=user, label=given[doc.pk][i])
    reviewer = f.UserFactory(username="rev")
    membership_ensure(project=project, user=reviewer, role=roles.REVIEWER)
    review_flag(project=project, document_ids=[docs[1].pk], reason=ReviewReason.DISAGREEMENT)
    review_decide(item=project.review_items.get(document=docs[1]), reviewer=reviewer, label="rotten")
    review_flag(project=project, document_ids=[docs[2].pk], reason=ReviewReason.NOISE, scores=[0.8])
    expected = {
        (docs[0].pk, "x1"): ("fresh", "fresh", "fresh", "annotators", None),
        (docs[0].pk, "x2"): ("fresh", "fresh", "fresh", "annotators", None),
        (docs[1].pk, "x1"): ("fresh", None, "rotten", "reviewer:rev", None),
        (docs[1].pk, "x2"): ("rotten", None, "rotten", "reviewer:rev", None),
        (docs[2].pk, "x1"): ("rotten", "rotten", "rotten", "annotators", "noise"),
        (docs[2].pk, "x2"): ("rotten", "rotten", "rotten", "annotators", "noise"),
    }
    fields = ("label", "consensus_label", "final_label", "decided_by", "in_review")

    def got(rows):
        return {(int(r["document_id"]), r["annotator"]): tuple(r[k] or None for k in fields) for r in rows}

    url = f"/api/v1/projects/{project.pk}/export?format="
    responses = {fmt: admin_client.get(url + fmt) for fmt in ("jsonl", "csv", "parquet", "hf")}
    for fmt, response in responses.items():
        assert response.status_code == 200, fmt
        link = f'<http://testserver/api/v1/projects/{project.pk}/agreement>; rel="describedby"; type="application/json"'
        assert response["Link"] == link, fmt
    bodies = {fmt: b"".join(r.streaming_content) for fmt, r in responses.items()}
    assert got(json.loads(line) for line in bodies["jsonl"].decode().splitlines()) == expected
    assert got(csv.DictReader(io.StringIO(bodies["csv"].decode()))) == expected
    table = pq.read_table(io.BytesIO(bodies["parquet"]))
    assert got(table.to_pylist()) == expected
    summary = json.loads(table.schema.metadata[PARQUET_AGREEMENT_KEY])
    assert summary["n_items"] == 3 and summary["n_annotators"] == 2 and "alpha" in summary
    archive = zipfile.ZipFile(io.BytesIO(bodies["hf"]))
    assert got(json.loads(line) for line in archive.read("data/train.jsonl").decode().splitlines()) == expected
    assert json.loads(archive.read("agreement.json")) == summary
    assert admin_client.get(f"/api/v1/projects/{project.pk}/agreement").json()["n_items"] == 3
