"""Parallel ``queue/next`` calls by one annotator on real PostgreSQL hand out one lease, not one per call."""

from __future__ import annotations

import threading
import time

import pytest
from django.db import connection

from labeling.models import Assignment, AssignmentState
from labeling.selectors import queue as q
from tests.labeling.api.conftest import token_client

pytestmark = pytest.mark.django_db(transaction=True)
CALLS = 8


def test_parallel_queue_next_holds_one_lease(annotator, project, docs, monkeypatch):
    read_context = q.lease_context

    def slow_context(**kwargs):
        context = read_context(**kwargs)
        time.sleep(0.2)  # widen the race: every call reads "no active lease" before any inserts one
        return context

    monkeypatch.setattr(q, "lease_context", slow_context)
    client = token_client(annotator)
    barrier = threading.Barrier(CALLS)
    answers: list[int] = []

    def call() -> None:
        try:
            barrier.wait()
            res = client.post(f"/api/v1/projects/{project.pk}/queue/next")
            answers.append(res.json()["assignment"]["id"] if res.status_code == 200 else res.status_code)
        finally:
            connection.close()  # each thread has its own connection; the test database is dropped after

    threads = [threading.Thread(target=call) for _ in range(CALLS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    active = Assignment.objects.filter(annotator=annotator, state=AssignmentState.ACTIVE)
    assert active.count() == 1
    assert answers == [active.get().pk] * CALLS
