"""The re-scorer's walk over a project: newest first, skipping what the model already scored."""

from __future__ import annotations

import json

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from labeling.models import Prediction
from labeling.selectors.models import champion_has_gaps, documents_unscored_page
from tests import factories as f

pytestmark = pytest.mark.django_db


def test_keyset_walk_visits_every_unscored_document_once_newest_first() -> None:
    project = f.ProjectFactory()
    docs = [f.DocumentFactory(project=project) for _ in range(11)]
    model = f.ModelVersionFactory(project=project)
    for doc in docs[::3]:  # already scored by this model
        f.PredictionFactory(document=doc, model_version=model)
    f.PredictionFactory(document=docs[1], model_version=f.ModelVersionFactory(project=project))  # another model

    seen: list[int] = []
    cursor = None
    while True:
        page, cursor = documents_unscored_page(model, below=cursor, size=4)
        if cursor is None:
            break
        assert all(text for _, text in page)
        seen.extend(doc_id for doc_id, _ in page)
    expected = [d.pk for d in reversed(docs) if d not in docs[::3]]
    assert seen == expected


def test_gap_check_counts_only_this_models_predictions() -> None:
    project = f.ProjectFactory()
    docs = [f.DocumentFactory(project=project) for _ in range(3)]
    model = f.ModelVersionFactory(project=project)
    f.DocumentFactory()  # another project's document does not count
    for doc in docs[:2]:
        f.PredictionFactory(document=doc, model_version=model)
    assert champion_has_gaps(model)
    f.PredictionFactory(document=docs[2], model_version=model)
    assert not champion_has_gaps(model)


def test_a_page_reads_only_its_own_documents_predictions_while_the_statistics_know_no_version_rows() -> None:
    """Right after a promotion the planner believes the new version has no rows; a page must still read
    only the predictions of its own documents, not every row the version has so far (quadratic)."""
    project = f.ProjectFactory()
    docs = [f.DocumentFactory(project=project) for _ in range(300)]
    old, new = f.ModelVersionFactory(project=project), f.ModelVersionFactory(project=project)
    fields = {"probabilities": [0.5, 0.5], "predicted_label": "a", "confidence": 0.5, "entropy": 0.1,
              "expected_entropy": 0.1, "mutual_info": 0.0, "margin": 0.0, "acquisition_score": 0.0}
    Prediction.objects.bulk_create([Prediction(document=d, model_version=old, **fields) for d in docs])
    with connection.cursor() as cursor:
        cursor.execute(f"ANALYZE {Prediction._meta.db_table}")  # statistics: no row of the new version
    Prediction.objects.bulk_create([Prediction(document=d, model_version=new, **fields) for d in docs[:290]])

    with CaptureQueriesContext(connection) as queries:
        page, _ = documents_unscored_page(new, below=None, size=20)
    assert [doc_id for doc_id, _ in page] == [d.pk for d in reversed(docs[290:])]
    (lookup,) = [q["sql"] for q in queries.captured_queries if Prediction._meta.db_table in q["sql"]]
    with connection.cursor() as cursor:
        # 590 rows are a sequential scan's size; at a project's size the planner picks an index, as here.
        cursor.execute("SET LOCAL enable_seqscan = off")
        cursor.execute(f"EXPLAIN (ANALYZE, FORMAT JSON) {lookup}")
        plan = cursor.fetchone()[0]
    plan = json.loads(plan) if isinstance(plan, str) else plan

    def rows_read(node: dict) -> int:
        table = node.get("Relation Name") == Prediction._meta.db_table
        read = node["Actual Rows"] + node.get("Rows Removed by Filter", 0)  # what the scan visited
        own = read * node["Actual Loops"] if table else 0
        return own + sum(rows_read(child) for child in node.get("Plans", []))

    assert rows_read(plan[0]["Plan"]) <= 20 * 2  # the page's documents under (at most) both versions
