"""Domain events: the one place a service announces that something happened to a label.

A service calls ``publish(Event.X, payload)`` inside its transaction; listeners run after the commit,
so none ever sees a label that was rolled back. A listener (a webhook sender, an audit feed) is a
function added to ``LISTENERS`` below; there is none yet, so publishing only writes a debug line and
schedules nothing.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Callable
from typing import Any

from django.db import transaction

logger = logging.getLogger(__name__)


class Event(enum.StrEnum):
    ANNOTATION_CREATED = "annotation.created"  # {annotation_id, document_id, project_id, label, annotator_id}
    ANNOTATION_CHANGED = "annotation.changed"  # the same, plus previous_label


Listener = Callable[[Event, dict[str, Any]], None]


LISTENERS: list[Listener] = []


def publish(event: Event, payload: dict[str, Any]) -> None:
    """Deliver ``event`` to every listener once the surrounding transaction commits (at once outside one).

    ``robust``: a failing listener is logged and does not undo the committed label or stop the others.
    """
    logger.debug("event %s %s", event, payload)
    for listener in LISTENERS:
        transaction.on_commit(lambda listener=listener: listener(event, dict(payload)), robust=True)
