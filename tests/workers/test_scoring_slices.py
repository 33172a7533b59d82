"""Several worker processes re-score one project: every document scored once, none missed.

Real PostgreSQL (the test database), real Redis, two real ``celery worker`` subprocesses on the
scoring queue, the packaged encoder on real rt-snippets reviews. A PostgreSQL trigger logs every
write of a prediction row, so a document scored twice shows even though the upsert would hide it
in the table itself. Nothing asserts a speed.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

import pytest
from django.db import connection

from labeling.models import Document, Prediction, TrainingRun
from tests.support.celery_worker import wait_until
from tests.support.fixtures import labeled_project, train_now

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.e2e, pytest.mark.slow]

SLICES = {"SCORING_SLICES": "4", "SCORING_SLICE_MIN_DOCS": "10", "SCORING_BATCH_SIZE": "8"}


@pytest.fixture
def prediction_writes() -> Iterator[str]:
    """A table that receives (document, model version) for every INSERT or UPDATE of a prediction row."""
    table = connection.ops.quote_name(Prediction._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute("CREATE TABLE test_prediction_writes (document_id bigint, model_version_id bigint)")
        cursor.execute(
            "CREATE FUNCTION test_prediction_writes_log() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
            "INSERT INTO test_prediction_writes VALUES (NEW.document_id, NEW.model_version_id); RETURN NEW; END $$"
        )
        cursor.execute(
            f"CREATE TRIGGER test_prediction_writes AFTER INSERT OR UPDATE ON {table}"
            f" FOR EACH ROW EXECUTE FUNCTION test_prediction_writes_log()"
        )
    try:
        yield "test_prediction_writes"
    finally:
        with connection.cursor() as cursor:
            cursor.execute(f"DROP TRIGGER IF EXISTS test_prediction_writes ON {table}")
            cursor.execute("DROP FUNCTION IF EXISTS test_prediction_writes_log()")
            cursor.execute("DROP TABLE IF EXISTS test_prediction_writes")


@pytest.mark.usefixtures("shared_embedding_cache")
def test_two_workers_share_a_rescore_and_score_every_document_exactly_once(
    celery_worker_factory, prediction_writes
) -> None:
    workers = [celery_worker_factory(queues="scoring", env=SLICES) for _ in range(2)]
    project = labeled_project(pool=30, holdout=0, unlabeled=170)
    run = train_now(project)  # here; its RESCORE_POOL message goes to the workers, which split it
    assert run.promoted, run.decision_reason
    champion = run.model_version
    ids = set(Document.objects.filter(project=project).values_list("id", flat=True))
    wait_until(
        lambda: TrainingRun.objects.filter(pk=run.pk, stage="done", progress=1.0).exists(),
        timeout=300,
        what=lambda: (
            f"the split re-score to finish: {Prediction.objects.filter(model_version=champion).count()}"
            f" of {len(ids)} scored"
        ),
    )
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT document_id FROM {prediction_writes} WHERE model_version_id = %s", [champion.pk])
        writes = Counter(row[0] for row in cursor.fetchall())
    assert set(writes) == ids  # none missed
    assert max(writes.values()) == 1, [d for d, n in writes.items() if n > 1]  # none scored twice
    done = [w.logs().count("alabel.scoring.rescore_slice[") for w in workers]
    assert all(n > 0 for n in done), f"each worker should have taken slices: {done}"
