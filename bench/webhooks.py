"""Webhooks under a labeling team: event-to-delivery latency, and a receiver that goes away.

    BENCH_BROKER_URL=redis://127.0.0.1:6379/N .venv/bin/python bench/webhooks.py \
        [--clients 20] [--think-s 1] [--up-seconds 60] [--down-seconds 300]

Needs a Redis broker (BENCH_BROKER_URL; its database is flushed). Starts a real gunicorn (4 x 5
threads, as bench/queue_latency.py), a real Celery worker on the ``webhooks`` queue (threads pool,
8, with beat) and a real HTTP receiver in this process (tests/support/webhook_receiver.py), then
``--clients`` paced annotators (queue/next, ``--think-s`` per document, uniform 0.5x-1.5x, label),
timed client side. Phases, one run:

0. ``--base-seconds`` with no webhook on the project: the label path without the outbox;
1. ``--up-seconds`` subscribed to ``annotation.created`` with the receiver up: each delivery's
   arrival time minus the event's ``created_at`` (the outbox row's time, written in the label's
   transaction) gives event-to-delivery p50/p95;
2. ``--down-seconds`` with the receiver down (its port refuses connections): queue/next and label
   p95 against phase 1;
3. the receiver comes back and the annotators stop: the bench waits until every delivery is
   delivered and counts that each event id arrived (duplicates carry the same id).

The retry backoff cap is ``--backoff-max-s`` (the worker's WEBHOOK_BACKOFF_MAX_S; the service default
is 600 s): with it, every event reaches the returned receiver within about that long. The attempts
must outlast the outage: ``--max-attempts`` (WEBHOOK_MAX_ATTEMPTS, default here 30; the service's
12 attempts with a 30 s cap cover about 4.5 minutes, with its own 600 s cap about 48 minutes).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import threading
import time
from datetime import datetime

from _common import ROOT, free_port, machine, percentiles, setup_django, start_gunicorn

setup_django()

import redis
import requests
from django.conf import settings
from django.contrib.auth import get_user_model

from labeling.models import Assignment, AssignmentState, DeliveryState, Project, WebhookDelivery
from labeling.roles import ANNOTATOR, MANAGER
from labeling.services.documents import document_bulk_create
from labeling.services.memberships import membership_ensure
from labeling.services.projects import project_create
from labeling.services.tokens import token_create
from tests.support.webhook_receiver import Receiver

PROJECT = "bench webhooks"


def ensure_project(n_docs: int) -> Project:
    """A fresh project of ``n_docs`` short texts (the queue without a model serves them in order)."""
    Project.objects.filter(name=PROJECT).delete()
    project = project_create(name=PROJECT, labels=["pos", "neg"], holdout_fraction=0.0, holdout_interleave=0.0)
    for start in range(0, n_docs, 1000):
        document_bulk_create(project=project, items=[
            {"text": f"bench webhook document {i}"} for i in range(start, min(n_docs, start + 1000))])
    return project


def tokens(n: int, project: Project) -> tuple[str, list[str]]:
    users = get_user_model().objects
    manager, _ = users.get_or_create(username="bench-webhook-manager")
    membership_ensure(project=project, user=manager, role=MANAGER)
    keys = []
    for i in range(n):
        user, _ = users.get_or_create(username=f"bench-annotator-{i + 1}")
        membership_ensure(project=project, user=user, role=ANNOTATOR)
        keys.append(token_create(user=user, client="bench-webhooks")[1])
    return token_create(user=manager, client="bench-webhooks")[1], keys


def start_worker(env_extra: dict[str, str]) -> subprocess.Popen[bytes]:
    env = {**os.environ, **env_extra}
    cmd = [sys.executable, "-m", "celery", "-A", "workers.app", "worker", "--queues", "webhooks", "--pool", "threads",
           "--concurrency", "8", "--loglevel", "WARNING", "-n", f"bench-webhooks-{os.getpid()}@%h",
           "--without-gossip", "--without-mingle", "--without-heartbeat",
           "--beat", "--schedule", str(ROOT / "var" / "bench" / "webhooks-beat-schedule")]
    (ROOT / "var" / "bench").mkdir(parents=True, exist_ok=True)
    return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


class Team:
    """``n`` paced annotators labeling until ``stop``; queue/next and label times per phase."""

    def __init__(self, base: str, project_id: int, keys: list[str], think_s: float) -> None:
        self.base, self.project_id, self.keys, self.think_s = base, project_id, keys, think_s
        self.phase = "warm-up"
        self.times: dict[tuple[str, str], list[float]] = {}
        self.errors: list[str] = []
        self.labels = 0
        self._stop = threading.Event()
        self._sessions: dict[str, requests.Session] = {}
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._annotate, args=(key,), daemon=True) for key in keys]

    def start(self) -> None:
        for t in self._threads:
            t.start()

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(120)

    def _record(self, what: str, ms: float) -> None:
        with self._lock:
            self.times.setdefault((self.phase, what), []).append(ms)

    def _annotate(self, key: str) -> None:
        while not self._stop.is_set():
            try:
                self._one(key)
            except requests.RequestException as exc:  # a reset connection on a loaded host: note it, go on
                self.errors.append(f"{self.phase}: {type(exc).__name__}")
                time.sleep(0.5)

    def _one(self, key: str) -> None:
        s = self._sessions.setdefault(key, requests.Session())
        s.headers["Authorization"] = f"Token {key}"
        t0 = time.perf_counter()
        r = s.post(f"{self.base}/api/v1/projects/{self.project_id}/queue/next", timeout=60)
        self._record("queue_next", (time.perf_counter() - t0) * 1000)
        if r.status_code != 200:
            self.errors.append(f"{self.phase}: queue/next {r.status_code} {r.text[:200]}")
            time.sleep(1)
            return
        time.sleep(random.uniform(0.5, 1.5) * self.think_s)
        t0 = time.perf_counter()
        r = s.post(f"{self.base}/api/v1/assignments/{r.json()['assignment']['id']}/annotation",
                   json={"label": random.choice(["pos", "neg"])}, timeout=60)
        self._record("label", (time.perf_counter() - t0) * 1000)
        if r.status_code not in (200, 201):
            self.errors.append(f"{self.phase}: label {r.status_code} {r.text[:200]}")
        else:
            with self._lock:
                self.labels += 1

    def figures(self, phase: str) -> dict[str, dict[str, float]]:
        return {what: percentiles(self.times.get((phase, what), [0.0])) for what in ("queue_next", "label")}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--docs", type=int, default=20_000)
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--think-s", type=float, default=1.0)
    parser.add_argument("--base-seconds", type=float, default=30)
    parser.add_argument("--up-seconds", type=float, default=60)
    parser.add_argument("--down-seconds", type=float, default=300)
    parser.add_argument("--backoff-max-s", type=float, default=30)
    parser.add_argument("--max-attempts", type=int, default=30,
                        help="the worker's WEBHOOK_MAX_ATTEMPTS: enough retries to outlast --down-seconds")
    parser.add_argument("--warmup-seconds", type=float, default=10)
    args = parser.parse_args()
    if not str(settings.CELERY_BROKER_URL).startswith("redis://"):
        sys.exit("set BENCH_BROKER_URL=redis://...: the deliveries go through a real worker")
    print(json.dumps({"machine": machine(), "args": vars(args)}))
    redis.Redis.from_url(settings.CELERY_BROKER_URL).flushdb()
    project = ensure_project(args.docs)
    manager_key, keys = tokens(args.clients, project)
    receiver = Receiver().start()
    port = free_port()
    server = start_gunicorn(port, "-w", "4", "--threads", "5", "--worker-class", "gthread", "--keep-alive", "30",
                            env_extra={"CONN_MAX_AGE": "60", "WEBHOOK_ALLOW_PRIVATE": "1"})
    worker = start_worker({"WEBHOOK_ALLOW_PRIVATE": "1", "WEBHOOK_BACKOFF_MAX_S": str(args.backoff_max_s),
                           "WEBHOOK_MAX_ATTEMPTS": str(args.max_attempts), "WEBHOOK_RECONCILE_SECONDS": "10"})
    base = f"http://127.0.0.1:{port}"
    team = Team(base, project.pk, keys, args.think_s)
    try:
        team.start()
        time.sleep(args.warmup_seconds)
        team.phase = "0 no webhook"
        time.sleep(args.base_seconds)

        r = requests.post(f"{base}/api/v1/projects/{project.pk}/webhooks/", timeout=30,
                          headers={"Authorization": f"Token {manager_key}"},
                          json={"url": receiver.url, "events": ["annotation.created"]})
        assert r.status_code == 201, r.text
        # The worker is ready once a ping arrived (importing Django and torch takes a while on a busy host).
        requests.post(f"{base}/api/v1/projects/{project.pk}/webhooks/{r.json()['id']}/ping", timeout=30,
                      headers={"Authorization": f"Token {manager_key}"}).raise_for_status()
        deadline = time.time() + 300
        while not receiver.received("ping") and time.time() < deadline:
            time.sleep(0.2)
        time.sleep(2)  # and the labels given while it started are delivered before phase 1
        team.phase = "1 receiver up"
        up_from = time.time()
        time.sleep(args.up_seconds)
        up_until = time.time()

        receiver.stop()
        team.phase = "2 receiver down"
        time.sleep(args.down_seconds)
        receiver.start()
        team.phase = "3 receiver back"
        team.stop()
        back_at = time.time()

        deliveries = WebhookDelivery.objects.filter(subscription__project=project, event="annotation.created")
        deadline = time.time() + 3 * args.backoff_max_s + 300
        while deliveries.filter(state=DeliveryState.PENDING).exists() and time.time() < deadline:
            time.sleep(1)
        all_delivered_after_s = round(time.time() - back_at, 1)

        arrivals: dict[str, float] = {}
        latencies_ms: list[float] = []
        received = receiver.received("annotation.created")
        for got in received:
            body = json.loads(got.body)
            if got.headers["X-Alabel-Delivery"] in arrivals:
                continue  # a repeat: the first arrival counts
            arrivals[got.headers["X-Alabel-Delivery"]] = got.arrived
            created = datetime.fromisoformat(body["created_at"]).timestamp()
            if up_from <= created < up_until - 5:  # events of phase 1 (the last 5 s may meet the outage)
                latencies_ms.append((got.arrived - created) * 1000)
        events = {str(e) for e in deliveries.values_list("event_id", flat=True)}
        states = {s: deliveries.filter(state=s).count() for s in DeliveryState.values}
        up, down = team.figures("1 receiver up"), team.figures("2 receiver down")
        nothing = team.figures("0 no webhook")
        print(json.dumps({"row": "event to delivery, receiver up", **percentiles(latencies_ms or [0.0]),
                          "target_p95_ms": 2000}))
        for phase in ("0 no webhook", "1 receiver up", "2 receiver down"):
            print(json.dumps({"row": f"{args.clients} paced annotators, {phase}", **{
                f"{what}_{k}": v for what, fig in team.figures(phase).items() for k, v in fig.items()
                if k in ("n", "p50_ms", "p95_ms")}}))
        print(json.dumps({
            "row": "receiver down vs up (p95 ratio)",
            "queue_next": round(down["queue_next"]["p95_ms"] / up["queue_next"]["p95_ms"], 2),
            "label": round(down["label"]["p95_ms"] / up["label"]["p95_ms"], 2),
            "up_vs_no_webhook_label": round(up["label"]["p95_ms"] / nothing["label"]["p95_ms"], 2),
        }))
        print(json.dumps({
            "row": "after the receiver returned", "events": len(events), "states": states,
            "distinct_ids_received": len(set(arrivals) & events), "requests_received": len(received),
            "repeats_same_id": len(received) - len(arrivals), "unknown_ids": len(set(arrivals) - events),
            "max_attempts": max(deliveries.values_list("attempts", flat=True), default=0),
            "all_delivered_after_s": all_delivered_after_s, "labels": team.labels,
            "client_errors": len(team.errors), "first_errors": team.errors[:3],
        }))
    finally:
        team.stop()
        receiver.stop()
        worker.terminate()
        server.terminate()
        worker.wait(30)
        server.wait(10)
        Assignment.objects.filter(project=project, state=AssignmentState.ACTIVE).update(
            state=AssignmentState.RELEASED)
    print(json.dumps({"load_avg_after": [round(x, 2) for x in os.getloadavg()]}))


if __name__ == "__main__":
    main()
