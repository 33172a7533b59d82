"""Retention: predictions of superseded model versions are pruned in batches; the champion, the
rollback target and versions in flight keep theirs. Real PostgreSQL (the beat in a real worker:
tests/workers/test_retention.py)."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from labeling.models import Document, ModelVersion, Prediction, Project, RunStatus
from labeling.selectors.models import champion_has_gaps
from labeling.services import retention
from labeling.services.scoring import scoring_reconcile
from labeling.services.training.promotion import model_version_rollback
from tests.factories import DocumentFactory, ModelVersionFactory, ProjectFactory, TrainingRunFactory

DOCS = 25


def predictions_for(version: ModelVersion, docs: list[Document]) -> None:
    Prediction.objects.bulk_create(
        Prediction(
            document=d, model_version=version, probabilities=[0.6, 0.4], predicted_label="fresh", confidence=0.6,
            entropy=0.67, expected_entropy=0.6, mutual_info=0.07, margin=0.2, acquisition_score=0.07,
        )
        for d in docs
    )


def history(project: Project | None = None) -> dict[str, ModelVersion]:
    """v1..v4 were champions in turn (v4 now); v5 was rejected by the gate; v6 is a candidate."""
    project = project or ProjectFactory()
    docs = [DocumentFactory(project=project) for _ in range(DOCS)]
    now = timezone.now()
    versions: dict[str, ModelVersion] = {}
    for n, status in enumerate(["retired", "retired", "retired", "champion", "rejected", "candidate"], start=1):
        promoted = now - timedelta(days=10 - n) if n <= 4 else None
        versions[f"v{n}"] = ModelVersionFactory(
            project=project, version=n, status=status, promoted_at=promoted, artifact_path=f"v{n}"
        )
        predictions_for(versions[f"v{n}"], docs)
    return versions


def counts(versions: dict[str, ModelVersion]) -> dict[str, int]:
    return {name: Prediction.objects.filter(model_version=v).count() for name, v in versions.items()}


@pytest.mark.django_db
def test_prunes_superseded_versions_in_batches_and_keeps_champion_rollback_target_and_candidate() -> None:
    versions = history()
    other = history()  # a second project, pruned by the same pass
    report = retention.predictions_prune(batch_size=7)
    # v1, v2 (retired earlier) and v5 (rejected) lose theirs, 25 rows each, 7 rows per batch.
    assert report.deleted == 2 * 3 * DOCS and report.batches == 2 * 11 and not report.remaining
    assert counts(versions) == {"v1": 0, "v2": 0, "v3": DOCS, "v4": DOCS, "v5": 0, "v6": DOCS}
    assert counts(other) == counts(versions)
    assert ModelVersion.objects.count() == 12  # the versions themselves (metrics, artifact) stay

    again = retention.predictions_prune(batch_size=7)  # idempotent: nothing left to delete
    assert again.deleted == 0 and again.batches == 0


@pytest.mark.django_db
def test_keep_previous_setting_and_open_runs_widen_what_is_kept(settings) -> None:
    versions = history()
    # A queued run naming v1 (an evaluation under way against it) keeps its rows.
    TrainingRunFactory(project=versions["v1"].project, model_version=versions["v1"], status=RunStatus.QUEUED)
    settings.PREDICTION_KEEP_PREVIOUS = 2
    retention.predictions_prune()
    assert counts(versions) == {"v1": DOCS, "v2": DOCS, "v3": DOCS, "v4": DOCS, "v5": 0, "v6": DOCS}

    retention.predictions_prune(keep_previous=0)  # 0: only the champion and what is in flight
    assert counts(versions) == {"v1": DOCS, "v2": 0, "v3": 0, "v4": DOCS, "v5": 0, "v6": DOCS}


@pytest.mark.django_db
def test_after_pruning_a_rollback_serves_at_once_and_the_next_target_is_kept() -> None:
    versions = history()
    project = versions["v4"].project
    retention.predictions_prune()
    restored = model_version_rollback(project=project)
    assert restored == versions["v3"]
    assert not champion_has_gaps(restored)  # its predictions were kept: nothing to re-score
    assert scoring_reconcile()["scoring_enqueued"] == []
    # v4 is now rejected, v3 champion; a later rollback would restore v2, whose rows are gone: the
    # reconciliation re-scores what a pruned version lacks, so nothing is lost, only recomputed.
    retention.predictions_prune()
    assert counts(versions) == {"v1": 0, "v2": 0, "v3": DOCS, "v4": 0, "v5": 0, "v6": DOCS}


@pytest.mark.django_db(transaction=True)
def test_concurrent_pruners_and_a_rescore_writing_the_champion_lose_nothing_they_should_keep() -> None:
    versions = history()
    project = versions["v4"].project
    new_docs = [DocumentFactory(project=project) for _ in range(40)]
    reports: list[retention.PruneReport] = []
    errors: list[BaseException] = []
    start = threading.Barrier(3)

    def prune() -> None:
        try:
            start.wait()
            reports.append(retention.predictions_prune(batch_size=3))
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)
        finally:
            connection.close()

    def rescore() -> None:  # the champion's rows for new documents, written meanwhile in small batches
        try:
            start.wait()
            for i in range(0, len(new_docs), 5):
                predictions_for(versions["v4"], new_docs[i : i + 5])
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=prune), threading.Thread(target=prune), threading.Thread(target=rescore)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    assert sum(r.deleted for r in reports) == 3 * DOCS  # each row deleted once, by one of the two
    assert counts(versions) == {"v1": 0, "v2": 0, "v3": DOCS, "v4": DOCS + 40, "v5": 0, "v6": DOCS}
