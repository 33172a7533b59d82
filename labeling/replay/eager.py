"""Run the service's Celery tasks in this process, in the order they are sent.

The replay must exercise the same code the workers run, without a broker. Services send tasks by
name (``labeling.services.dispatch``); here ``send_task`` appends the message to a FIFO and
``drain`` runs each through the registered task with ``Task.apply`` (Celery's in-process path),
including the messages tasks send in turn. Countdowns are ignored: a replay has no wall clock to
wait on, and a debounced check that runs early simply finds the work done.
"""

from __future__ import annotations

import importlib
from collections import Counter, deque
from typing import Any

from celery import Celery


class EagerTasks:
    def __init__(self, app: Celery) -> None:
        self.app = app
        self.pending: deque[tuple[str, tuple[Any, ...]]] = deque()
        self.ran: Counter[str] = Counter()
        for module in app.conf.include or ():
            importlib.import_module(module)  # registers every task on the app
        app.conf.task_eager_propagates = True  # a failing task fails the replay, loudly
        self._original = app.send_task

    def install(self) -> EagerTasks:
        def send_task(name: str, args: tuple[Any, ...] | None = None, **_: Any) -> None:
            self.pending.append((name, tuple(args or ())))

        self.app.send_task = send_task  # type: ignore[method-assign]
        self.app.set_current()  # dispatch sends through celery.current_app
        return self

    def uninstall(self) -> None:
        self.app.send_task = self._original  # type: ignore[method-assign]

    def drain(self, limit: int = 10_000) -> int:
        """Run queued tasks (and what they send) until none is left; returns how many ran."""
        done = 0
        while self.pending:
            if done >= limit:
                raise RuntimeError(f"more than {limit} tasks in one drain: a task keeps re-sending itself")
            name, args = self.pending.popleft()
            # Identical messages already waiting (25 "check retrain" after 25 labels) run once.
            while (name, args) in self.pending:
                self.pending.remove((name, args))
            self.app.tasks[name].apply(args=args, throw=True)
            self.ran[name] += 1
            done += 1
        return done
