"""enqueue: sent after commit; ``coalesce_s`` sends one message per (task, args) per window."""

from __future__ import annotations

import pytest
from celery import current_app
from django.core.cache import cache

from labeling.services.dispatch import QueueKind, TaskName, enqueue


@pytest.fixture
def sent(monkeypatch):
    cache.clear()
    messages: list[tuple[str, tuple]] = []
    monkeypatch.setattr(current_app, "send_task", lambda name, args=(), **kw: messages.append((name, args)))
    return messages


@pytest.mark.django_db
def test_coalesced_messages_are_sent_once_per_window_and_per_args(sent, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        for _ in range(3):
            enqueue(TaskName.CHECK_RETRAIN, args=(1,), kind=QueueKind.TRAINING, countdown=5, coalesce_s=4)
        enqueue(TaskName.CHECK_RETRAIN, args=(2,), kind=QueueKind.TRAINING, countdown=5, coalesce_s=4)
    assert sent == [(str(TaskName.CHECK_RETRAIN), (1,)), (str(TaskName.CHECK_RETRAIN), (2,))]
    cache.clear()  # the window has passed
    with django_capture_on_commit_callbacks(execute=True):
        enqueue(TaskName.CHECK_RETRAIN, args=(1,), kind=QueueKind.TRAINING, countdown=5, coalesce_s=4)
    assert len(sent) == 3


@pytest.mark.django_db
def test_a_rolled_back_transaction_sends_nothing_and_holds_no_window(sent, django_capture_on_commit_callbacks):
    from django.db import transaction

    with django_capture_on_commit_callbacks(execute=True):
        try:
            with transaction.atomic():
                enqueue(TaskName.CHECK_RETRAIN, args=(1,), kind=QueueKind.TRAINING, coalesce_s=4)
                raise RuntimeError("roll back")
        except RuntimeError:
            pass
        enqueue(TaskName.CHECK_RETRAIN, args=(1,), kind=QueueKind.TRAINING, coalesce_s=4)
    assert sent == [(str(TaskName.CHECK_RETRAIN), (1,))]


@pytest.mark.django_db
def test_without_coalescing_every_call_sends(sent, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        enqueue(TaskName.SCORE_PENDING, args=(1,))
        enqueue(TaskName.SCORE_PENDING, args=(1,))
    assert len(sent) == 2


@pytest.mark.django_db
def test_arguments_and_kind_are_checked_against_the_registry_when_sent(sent, django_capture_on_commit_callbacks):
    from labeling.services.dispatch import RescoreArgs

    with django_capture_on_commit_callbacks(execute=True):
        with pytest.raises(TypeError):
            enqueue(TaskName.RESCORE_POOL, args=(1,))  # one id short
        with pytest.raises(TypeError, match="run_id must be int"):
            enqueue(TaskName.TRAIN, args=("1",))
        with pytest.raises(ValueError, match="training"):
            enqueue(TaskName.TRAIN, args=(1,), kind=QueueKind.SCORING)
        enqueue(TaskName.RESCORE_POOL, args=RescoreArgs(run_id=3, model_version_id=4))
    assert sent == [(str(TaskName.RESCORE_POOL), (3, 4))]
