"""Celery's task consumer, made to survive the broker going away while a message is unacknowledged.

Celery 5.7 / kombu 5.7 with the Redis transport: on a lost connection the consumer first collects the
connection (which detaches its transport) and then closes it. When the first close inside the
collect is cut short by the dead socket (a BRPOP in flight), the default channel is still open with
delivered, unacknowledged messages (an acked-late task running); the second close tries to restore
them through a client built from the detached transport and raises ``AttributeError`` (``conninfo``
is None). That is not a connection error, so it escapes celery's ``ignore_errors`` and the worker's
main process exits: a broker restart would take the worker down with it (docs/WORKERS.md).

Nothing is lost by ignoring it: the unacknowledged messages stay in the broker's unacked index and are
delivered again after the visibility timeout (or, if the broker came back empty, the reconciliation
job finds their documents); the running task is cancelled by celery as usual
(``worker_cancel_long_running_tasks_on_connection_loss``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from celery.worker.consumer import Consumer as CeleryConsumer
from kombu import Connection

logger = logging.getLogger(__name__)


def tolerate_detached_close(connection: Connection) -> None:
    """Make ``connection.close()`` (and ``release()``) log instead of raise kombu's detached-transport error."""
    close: Callable[[], None] = connection.close

    def close_tolerating_detached_transport() -> None:
        try:
            close()
        except AttributeError as exc:
            logger.warning(
                "closing the lost broker connection failed (%r; kombu cannot restore unacknowledged "
                "messages through a detached transport): they stay unacknowledged in the broker and "
                "are delivered again after the visibility timeout",
                exc,
            )

    connection.close = connection.release = close_tolerating_detached_transport  # type: ignore[method-assign]


class Consumer(CeleryConsumer):
    """``worker_consumer``: celery's consumer, reconnecting instead of exiting on the error above."""

    def on_connection_error_after_connected(self, exc: Exception) -> None:
        if self.connection is not None:
            tolerate_detached_close(self.connection)
        super().on_connection_error_after_connected(exc)
