"""Scoring: every document gets exactly one calibrated prediction per champion, newest first, resumable.

Real PostgreSQL and the real packaged encoder on rt-snippets; the tasks' service calls run here.
"""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import psycopg
import pytest
from django.utils import timezone

from labeling.models import AssignmentState, Document, ModelStatus, Prediction, RunStatus, Split, TrainingRun
from labeling.selectors.models import champion_get, documents_id_slices
from labeling.services import modeling, prediction_writes, scoring
from labeling.services.pgcopy import copy_binary
from tests.factories import (
    AssignmentFactory,
    DocumentFactory,
    ModelVersionFactory,
    PredictionFactory,
    ProjectFactory,
    UserFactory,
)
from tests.support.celery_worker import database_url
from tests.support.data import label
from tests.support.fixtures import labeled_project, shared_embedding_cache, train_now, unlabeled  # noqa: F401

pytestmark = [pytest.mark.django_db]


#: The columns a scoring batch stores (``scored_at`` and ``attributions`` beside them).
SCORE_FIELDS = ["document_id", "in_queue", "probabilities", "predicted_label", "confidence", "entropy",
                "expected_entropy", "mutual_info", "margin", "acquisition_score", "map_x", "map_y"]


def batch_columns(document_ids: list[int], shift: float = 0.0, scored_at=None) -> prediction_writes.PredictionColumns:
    """A scoring batch's columns for these documents, each value distinct per row."""
    n = len(document_ids)
    i = np.arange(n, dtype=float)
    return prediction_writes.PredictionColumns(
        document_id=np.array(document_ids),
        probabilities=np.stack([0.1 * i + shift, 1 - 0.1 * i - shift], axis=1),
        answers=["rotten", "fresh"], answer_index=(np.arange(n) % 2),
        confidence=0.9 - 0.01 * i, entropy=0.3 + i / 7, expected_entropy=0.2 + i / 9, mutual_info=1 / 3 + i,
        margin=0.123456789 * i, acquisition_score=-1e-9 * i, map_x=1.5 * i, map_y=np.full(n, -2.25),
        scored_at=scored_at or timezone.now(),
    )


def predictions_per_document(model_version_id: int, project_id: int) -> list[int]:
    docs = Document.objects.filter(project_id=project_id).order_by("id")
    return [Prediction.objects.filter(document=d, model_version_id=model_version_id).count() for d in docs]


def test_without_a_champion_nothing_is_scored() -> None:
    doc = DocumentFactory()
    report = scoring.project_score_pending(project_id=doc.project_id)
    assert report.scored == 0 and not Prediction.objects.exists()


@pytest.mark.slow
@pytest.mark.usefixtures("shared_embedding_cache")
def test_every_document_gets_one_prediction_newest_first_and_resumes(
    settings, django_capture_on_commit_callbacks
) -> None:
    settings.SCORING_BATCH_SIZE = 16
    project = labeled_project(pool=30, holdout=10, unlabeled=30)
    champion = train_now(project).model_version
    total = project.documents.count()

    # A budget of zero seconds: one batch, then the task hands over to its continuation.
    with django_capture_on_commit_callbacks() as sent:
        first = scoring.project_score_pending(project_id=project.pk, time_budget_s=0)
    assert first.scored == 16 and first.remaining and len(sent) == 1
    newest = list(project.documents.order_by("-id").values_list("id", flat=True)[:16])
    assert set(
        Prediction.objects.filter(model_version=champion).values_list("document_id", flat=True)
    ) == set(newest)

    rest = scoring.project_score_pending(project_id=project.pk)  # the continuation picks up the rest
    assert rest.scored == total - 16 and not rest.remaining
    assert predictions_per_document(champion.pk, project.pk) == [1] * total  # pool and holdout
    assert scoring.project_score_pending(project_id=project.pk).scored == 0  # nothing left: a no-op

    p = Prediction.objects.filter(model_version=champion).first()
    assert abs(sum(p.probabilities) - 1) < 1e-6 and p.predicted_label in ("fresh", "rotten")
    assert p.confidence == pytest.approx(max(p.probabilities))
    assert p.mutual_info == pytest.approx(p.entropy - p.expected_entropy, abs=1e-6)
    assert p.acquisition_score == pytest.approx(p.mutual_info)  # "diverse" stores BALD
    assert p.map_x is not None and p.map_y is not None
    # Only unlabeled pool documents sit in the queue's partial index.
    flags = dict(Prediction.objects.filter(model_version=champion).values_list("document_id", "in_queue"))
    for doc in project.documents.all():
        assert flags[doc.pk] == (doc.split == Split.POOL and not doc.is_labeled), doc
    assert any(flags.values()) and not all(flags.values())

    # Scoring the same documents again rewrites the rows, never adds a second one.
    Prediction.objects.filter(pk=p.pk).update(confidence=0.0)
    batch = list(project.documents.order_by("id").values_list("id", "text")[:5])
    result = modeling.classifier_score(
        modeling.classifier_for(champion), [t for _, t in batch], return_samples=True
    )
    scoring.prediction_bulk_upsert(
        model_version=champion, project=project, document_ids=[i for i, _ in batch], result=result
    )
    assert predictions_per_document(champion.pk, project.pk) == [1] * total


@pytest.mark.slow
@pytest.mark.usefixtures("shared_embedding_cache")
def test_a_promotion_rescores_from_the_embedding_cache_with_progress_on_the_run(
    settings, django_capture_on_commit_callbacks
) -> None:
    settings.SCORING_BATCH_SIZE = 20
    # tolerance 1: the gate always passes, so this test is about the re-scoring, not the decision
    project = labeled_project(pool=30, holdout=0, unlabeled=40, retrain_after=5, promotion_tolerance=1.0)
    first = train_now(project).model_version
    scoring.project_score_pending(project_id=project.pk)
    label(unlabeled(project)[:10], UserFactory())
    run = train_now(project)  # holdout empty: judged on the calibration split
    assert run.promoted, run.decision_reason
    assert run.stage == "rescore" and run.status == RunStatus.SUCCEEDED
    assert "holdout too small" in run.decision_reason

    encoder = modeling.encoder_for()
    windows_before = encoder.windows_encoded
    with django_capture_on_commit_callbacks():
        partial = scoring.project_score_pending(
            project_id=project.pk, model_version_id=run.model_version_id, run_id=run.pk, time_budget_s=0
        )
    run.refresh_from_db()
    assert partial.scored == 20 and run.stage == "rescore" and 0 < run.progress < 1
    report = scoring.model_version_rescore(run_id=run.pk, model_version_id=run.model_version_id)
    run.refresh_from_db()
    assert run.stage == "done" and run.progress == 1.0
    assert partial.scored + report.scored == project.documents.count()
    assert encoder.windows_encoded == windows_before  # every vector came from the cache

    # The old champion's predictions stay (history); a message naming it is now a no-op.
    assert Prediction.objects.filter(model_version=first).count() == project.documents.count()
    stale = scoring.model_version_rescore(run_id=run.pk, model_version_id=first.pk)
    assert stale.stale and stale.scored == 0


def test_a_second_scorer_of_the_same_project_stands_aside() -> None:
    champion = ModelVersionFactory(status=ModelStatus.CHAMPION)
    DocumentFactory(project=champion.project)
    other = psycopg.connect(database_url().replace("postgres://", "postgresql://"), autocommit=True)
    try:
        other.execute("SELECT pg_advisory_lock(%s, %s)", [modeling.LOCK_SCORING, champion.project_id])
        assert scoring.project_score_pending(project_id=champion.project_id).busy
        with pytest.raises(scoring.ScoringBusyError):  # RESCORE_POOL retries this one later
            scoring.model_version_rescore(run_id=0, model_version_id=champion.pk)
    finally:
        other.close()


def test_reconcile_enqueues_projects_with_unscored_documents_and_expires_leases(
    django_capture_on_commit_callbacks,
) -> None:
    champion = ModelVersionFactory(status=ModelStatus.CHAMPION)
    scored_doc = DocumentFactory(project=champion.project)
    PredictionFactory(document=scored_doc, model_version=champion)
    done = ModelVersionFactory(status=ModelStatus.CHAMPION)  # a fully scored project
    PredictionFactory(document=DocumentFactory(project=done.project), model_version=done)
    ProjectFactory()  # no champion: cold start, the queue serves it randomly
    lapsed = AssignmentFactory(document=scored_doc, leased_until=timezone.now() - timedelta(minutes=1))
    assert scoring.scoring_reconcile()["scoring_enqueued"] == []
    DocumentFactory(project=champion.project, split=Split.HOLDOUT)  # arrived, its message lost
    with django_capture_on_commit_callbacks() as sent:
        report = scoring.scoring_reconcile()
    assert report["scoring_enqueued"] == [champion.project_id] and len(sent) == 1
    lapsed.refresh_from_db()
    assert lapsed.state == AssignmentState.EXPIRED


@pytest.mark.slow
@pytest.mark.usefixtures("shared_embedding_cache")
def test_predict_texts_recommends_by_the_project_thresholds() -> None:
    project = labeled_project(pool=30, holdout=0, unlabeled=0)
    with pytest.raises(modeling.NoChampionError):
        modeling.predict_texts(project=project, texts=["great fun"])
    train_now(project)
    project.auto_accept_threshold, project.review_threshold = 0.99, 0.0
    out = modeling.predict_texts(project=project, texts=["A warm, funny, moving film.", "Dull and lifeless."])
    assert [o["recommendation"] for o in out] in (["review", "review"],)
    assert set(out[0]["probabilities"]) == {"fresh", "rotten"}
    assert sum(out[0]["probabilities"].values()) == pytest.approx(1.0)
    assert out[0]["confidence"] == pytest.approx(max(out[0]["probabilities"].values()))
    project.review_threshold = 1.0
    assert modeling.predict_texts(project=project, texts=["ok"])[0]["recommendation"] == "escalate"
    project.auto_accept_threshold = 0.0
    assert modeling.predict_texts(project=project, texts=["ok"])[0]["recommendation"] == "auto_accept"
    assert champion_get(project_id=project.pk).version == out[0]["model_version"]


def test_map_projection_is_fitted_once_per_model_version() -> None:
    mv = ModelVersionFactory(calibration={})
    rng = np.random.default_rng(0)
    first = scoring.map_projection_for(mv, rng.normal(size=(50, 8)))
    again = scoring.map_projection_for(mv, rng.normal(size=(50, 8)) + 5)  # a later chunk: same projection
    assert again == first
    mv.refresh_from_db()
    assert mv.calibration["map"] == first
    points = scoring.map_project(first, rng.normal(size=(3, 8)))
    assert points.shape == (3, 2)


def test_stale_message_for_a_deleted_model_version_is_a_noop() -> None:
    report = scoring.model_version_rescore(run_id=0, model_version_id=987654)
    assert report.stale and report.scored == 0
    assert not TrainingRun.objects.exists()


def test_the_copy_write_stores_exactly_what_the_orm_upsert_stores() -> None:
    """PostgreSQL's binary COPY + INSERT ... SELECT path and the ORM's bulk upsert give identical rows."""
    project = ProjectFactory()
    docs = [DocumentFactory(project=project, is_labeled=i == 2, split=Split.HOLDOUT if i == 4 else Split.POOL)
            for i in range(6)]
    by_copy, by_orm = (ModelVersionFactory(project=project, status=ModelStatus.CHAMPION if i else "retired")
                       for i in range(2))
    now = timezone.now()

    def columns(shift: float, n: int = 6) -> prediction_writes.PredictionColumns:
        return batch_columns([d.pk for d in docs[:n]], shift, now)

    def stored(version) -> list[tuple]:
        fields = [*SCORE_FIELDS, "scored_at", "attributions"]
        return list(Prediction.objects.filter(model_version=version).order_by("document_id").values_list(*fields))

    prediction_writes.predictions_write(model_version_id=by_copy.pk, columns=columns(0.0), use_copy=True)
    prediction_writes.predictions_write(model_version_id=by_orm.pk, columns=columns(0.0), use_copy=False)
    assert stored(by_copy) == stored(by_orm) and len(stored(by_copy)) == 6
    first = stored(by_copy)[1]
    assert first[2] == [0.1, 0.9] and first[3] == "fresh" and first[4] == 0.89 and first[8] == 0.123456789
    # in_queue is read from the document: only unlabeled pool documents
    assert [row[1] for row in stored(by_copy)] == [True, True, False, True, False, True]
    # A second write of the same documents overwrites the scores in place and keeps the attributions.
    Prediction.objects.filter(model_version__in=[by_copy, by_orm]).update(attributions=[["good", 0.5]])
    ids = set(Prediction.objects.filter(model_version=by_copy).values_list("id", flat=True))
    prediction_writes.predictions_write(model_version_id=by_copy.pk, columns=columns(0.05, 4), use_copy=True)
    prediction_writes.predictions_write(model_version_id=by_orm.pk, columns=columns(0.05, 4), use_copy=False)
    assert stored(by_copy) == stored(by_orm)
    assert stored(by_copy)[0][2] == [0.05, 0.95] and stored(by_copy)[0][-1] == [["good", 0.5]]
    assert set(Prediction.objects.filter(model_version=by_copy).values_list("id", flat=True)) == ids


def test_the_binary_copy_refuses_a_column_it_has_no_form_for() -> None:
    with pytest.raises(ValueError, match="column 1: no binary COPY form for float32"):
        copy_binary([np.arange(3), np.zeros(3, dtype=np.float32)])
    with pytest.raises(ValueError, match="column 1 has 2 rows, column 0 has 3"):
        copy_binary([np.arange(3), np.zeros(2)])


@pytest.mark.slow
@pytest.mark.usefixtures("shared_embedding_cache")
def test_a_split_rescore_covers_every_document_once_in_disjoint_slices(
    settings, django_capture_on_commit_callbacks
) -> None:
    settings.SCORING_BATCH_SIZE = 8
    settings.SCORING_SLICES, settings.SCORING_SLICE_MIN_DOCS = 3, 10
    project = labeled_project(pool=30, holdout=0, unlabeled=40)
    run = train_now(project)
    assert run.promoted and run.stage == "rescore"
    champion = run.model_version
    with django_capture_on_commit_callbacks() as sent:
        split = scoring.model_version_rescore(run_id=run.pk, model_version_id=champion.pk)
    assert split.slices == 3 and split.scored == 0
    assert len(sent) == 3
    slices = documents_id_slices(project_id=project.pk, slices=3)
    ids = sorted(project.documents.values_list("id", flat=True))
    covered = [i for lo, hi in slices for i in ids if lo <= i <= hi]
    assert covered == ids  # disjoint, ascending, nothing left out

    scored = 0
    for index, (lo, hi) in enumerate(slices):
        report = scoring.model_version_rescore_slice(
            run_id=run.pk, model_version_id=champion.pk, id_slice=scoring.IdSlice(index, lo, hi)
        )
        in_slice = Prediction.objects.filter(model_version=champion, document_id__gte=lo, document_id__lte=hi)
        assert report.scored == in_slice.count() == sum(lo <= i <= hi for i in ids)
        scored += report.scored
        run.refresh_from_db()
        assert run.stage == ("done" if index == 2 else "rescore")  # the last slice closes the run
    assert scored == len(ids)
    assert predictions_per_document(champion.pk, project.pk) == [1] * len(ids)
    again = scoring.model_version_rescore_slice(  # a redelivered slice message finds nothing to do
        run_id=run.pk, model_version_id=champion.pk, id_slice=scoring.IdSlice(0, *slices[0])
    )
    assert again.scored == 0


def test_slices_share_the_project_but_not_a_slice_and_a_whole_project_scorer_waits() -> None:
    champion = ModelVersionFactory(status=ModelStatus.CHAMPION)
    DocumentFactory(project=champion.project)
    other = psycopg.connect(database_url().replace("postgres://", "postgresql://"), autocommit=True)
    id_slice = scoring.IdSlice(1, 0, 0)  # no document: the lock is what this test is about
    try:
        # Another worker scoring slice 0: this one may score slice 1, a whole-project scorer stands aside.
        other.execute("SELECT pg_advisory_lock_shared(%s, %s)", [modeling.LOCK_SCORING, champion.project_id])
        other.execute("SELECT pg_advisory_lock(%s, %s)", [-champion.pk, 0])
        assert scoring.project_score_pending(project_id=champion.project_id).busy
        assert not scoring.model_version_rescore_slice(run_id=0, model_version_id=champion.pk, id_slice=id_slice).busy
        # The same slice held elsewhere (a redelivered message): retried later, never scored twice at once.
        other.execute("SELECT pg_advisory_lock(%s, %s)", [-champion.pk, 1])
        with pytest.raises(scoring.ScoringBusyError):
            scoring.model_version_rescore_slice(run_id=0, model_version_id=champion.pk, id_slice=id_slice)
        other.execute("SELECT pg_advisory_unlock_all()")
        # A whole-project scorer at work: the slices wait for it.
        other.execute("SELECT pg_advisory_lock(%s, %s)", [modeling.LOCK_SCORING, champion.project_id])
        with pytest.raises(scoring.ScoringBusyError):
            scoring.model_version_rescore_slice(run_id=0, model_version_id=champion.pk, id_slice=id_slice)
    finally:
        other.close()


def test_a_small_pool_or_one_slice_is_not_split(settings, django_capture_on_commit_callbacks) -> None:
    champion = ModelVersionFactory(status=ModelStatus.CHAMPION)
    for _ in range(5):
        DocumentFactory(project=champion.project)
    settings.SCORING_SLICES, settings.SCORING_SLICE_MIN_DOCS = 4, 2  # 5 documents: 2 slices at most
    assert scoring.rescore_split(model_version=champion, run_id=0).slices == 2
    settings.SCORING_SLICE_MIN_DOCS = 10
    assert scoring.rescore_split(model_version=champion, run_id=0) is None
    settings.SCORING_SLICES, settings.SCORING_SLICE_MIN_DOCS = 1, 1
    assert scoring.rescore_split(model_version=champion, run_id=0) is None


def test_pages_grow_while_they_score_fast_and_shrink_when_slow(settings) -> None:
    settings.SCORING_BATCH_SIZE = 100
    assert scoring.next_page_size(100, 100, 0.1) == 200
    assert scoring.next_page_size(800, 800, 0.1) == 800  # at most MAX_PAGE_BATCHES x the batch setting
    assert scoring.next_page_size(800, 800, scoring.FAST_BATCH_S) == 400  # the encoder ran: smaller
    assert scoring.next_page_size(100, 100, 30.0) == 100  # never below the setting
    assert scoring.next_page_size(400, 30, 0.1) == 400  # a page mostly scored before says nothing


@pytest.mark.django_db(transaction=True)
def test_the_pipelined_writer_stores_on_its_own_connection_and_raises_a_failed_write_at_flush() -> None:
    """Outside a transaction on PostgreSQL a scoring loop's rows go through a ``PredictionWriter``: written on
    a second connection while the caller goes on, stored once flushed, a failure raised in the caller."""
    from django.db import IntegrityError, connection, transaction

    project = ProjectFactory()
    docs = [DocumentFactory(project=project) for _ in range(3)]
    version = ModelVersionFactory(project=project)

    with prediction_writes.prediction_writer() as (write, flush):
        assert write != prediction_writes.predictions_write  # the pipelined path
        write(model_version_id=version.pk, columns=batch_columns([docs[0].pk, docs[1].pk]))
        write(model_version_id=version.pk, columns=batch_columns([docs[2].pk]))  # waits for the first batch
        flush()
        assert Prediction.objects.filter(model_version=version).count() == 3
        write(model_version_id=version.pk + 10**6, columns=batch_columns([docs[0].pk]))  # no such model version
        with pytest.raises(IntegrityError, match="foreign key"):
            flush()
    assert Prediction.objects.filter(model_version=version).count() == 3
    # Inside a transaction a second connection would not see the caller's rows: written in place instead.
    with transaction.atomic(), prediction_writes.prediction_writer() as (write, _):
        assert write is prediction_writes.predictions_write and connection.in_atomic_block


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("shared_embedding_cache")
def test_a_pipelined_rescore_writes_what_an_in_place_one_writes(settings, django_capture_on_commit_callbacks) -> None:
    settings.SCORING_BATCH_SIZE = 16
    project = labeled_project(pool=30, holdout=10, unlabeled=30)
    champion = train_now(project).model_version
    total = project.documents.count()
    with django_capture_on_commit_callbacks():
        first = scoring.project_score_pending(project_id=project.pk, time_budget_s=0)
    # stopped on its budget: the page it handed to the writer is stored before it returns
    assert first.remaining and first.scored == 16
    assert Prediction.objects.filter(model_version=champion).count() == 16
    rest = scoring.project_score_pending(project_id=project.pk)
    assert first.scored + rest.scored == total and not rest.remaining
    assert predictions_per_document(champion.pk, project.pk) == [1] * total
    pipelined = list(
        Prediction.objects.filter(model_version=champion).order_by("document_id").values_list(*SCORE_FIELDS)
    )

    from django.db import transaction

    Prediction.objects.filter(model_version=champion).delete()
    with transaction.atomic():  # the same loop, every page written in place
        assert scoring.project_score_pending(project_id=project.pk).scored == total
    in_place = list(
        Prediction.objects.filter(model_version=champion).order_by("document_id").values_list(*SCORE_FIELDS)
    )
    assert pipelined == in_place
