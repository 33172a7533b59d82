"""The retention beat in a real Celery worker with beat, against the test database."""

from __future__ import annotations

import pytest

from labeling.models import ModelStatus, Prediction
from tests.labeling.services.test_retention import DOCS, counts, history
from tests.support.celery_worker import wait_until
from workers import tasks
from workers.app import app

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


def test_the_beat_prunes_superseded_predictions(celery_worker_factory) -> None:
    schedule = app.conf.beat_schedule["prune-predictions"]
    assert schedule["task"] == "alabel.scoring.prune_predictions"
    versions = history()
    celery_worker_factory(env={"PREDICTION_PRUNE_SECONDS": "1"}, beat=True)
    wait_until(
        lambda: counts(versions)["v1"] == 0
        and not Prediction.objects.filter(model_version__status=ModelStatus.REJECTED).exists(),
        timeout=120, what=lambda: f"the beat to prune: {counts(versions)}",
    )
    assert counts(versions) == {"v1": 0, "v2": 0, "v3": DOCS, "v4": DOCS, "v5": 0, "v6": DOCS}
    assert tasks.prune_predictions() == {"deleted": 0, "batches": 0, "projects": [], "remaining": False}
