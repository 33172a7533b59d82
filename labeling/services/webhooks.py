"""Webhooks: subscriptions, and delivering the outbox rows ``services/events.py`` writes.

A delivery is a row (``WebhookDelivery``), not a message: the message only says "try this row now".
``delivery_attempt`` claims the row with one conditional UPDATE (state pending, due, not held by
another worker), POSTs the signed body once, and records the answer: 2xx -> delivered; anything
else -> pending again with an exponential backoff (``WEBHOOK_BACKOFF_BASE_S`` doubling up to
``WEBHOOK_BACKOFF_MAX_S``, plus jitter) and a message with that countdown, or failed after
``WEBHOOK_MAX_ATTEMPTS``. A redelivered or duplicated message finds the row claimed or done and does
nothing; a lost one leaves a due row that ``webhooks_reconcile`` (beat) sends again. A failure also
holds back the receiver's other pending deliveries until the next try (``_hold_back_siblings``), so a
receiver that is down costs one probe per backoff step, not a retry per pending event. So receivers
get each event at least once, every attempt carrying the same idempotency id (``X-Alabel-Delivery``).

Signature (docs/API.md has the receiver's recipe): ``X-Alabel-Signature: t=<unix seconds>,v1=<hex>``
where hex = HMAC-SHA256(secret, f"{t}.".encode() + body) over the exact body bytes.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import logging
import random
import secrets
import socket
import threading
import time
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

import requests
from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from labeling.models import DeliveryState, Project, WebhookDelivery, WebhookSubscription
from labeling.services.dispatch import TaskName, enqueue
from labeling.services.errors import ServiceConflict
from labeling.services.events import PING, Event, deliveries_create

logger = logging.getLogger(__name__)

MAX_URL_CHARS = 2000
MAX_DESCRIPTION_CHARS = 200
MAX_SUBSCRIPTIONS_PER_PROJECT = 20
#: How much of a receiver's answer the delivery log keeps.
MAX_ERROR_CHARS = 500
#: Beat hands on at most this many due deliveries per run; the next run takes the rest.
RECONCILE_BATCH = 5000
SUBSCRIBABLE = tuple(str(event) for event in Event)
_local = threading.local()  # a connection pool per worker thread: keep-alive to each receiver


class DeliveryInFlightError(ServiceConflict):
    """A worker is sending this delivery right now."""

    code = "delivery_in_flight"


# --- validation -------------------------------------------------------------------------------


def url_problem(url: object) -> str | None:
    """Why ``url`` may not receive webhooks, or None. Resolves the host unless WEBHOOK_ALLOW_PRIVATE."""
    if not isinstance(url, str) or not url.strip():
        return "must be an http or https URL"
    if len(url) > MAX_URL_CHARS:
        return f"must be at most {MAX_URL_CHARS} characters"
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        return f"is not a valid URL ({exc})"
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return "must be an http or https URL with a host"
    if parts.username or parts.password:
        return "must not carry a user name or password (send them in the path or use the signature)"
    if settings.WEBHOOK_ALLOW_PRIVATE:
        return None
    try:
        infos = socket.getaddrinfo(parts.hostname, port or (443 if parts.scheme == "https" else 80),
                                   type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError):
        return f"host {parts.hostname!r} does not resolve"
    for info in infos:
        address = ipaddress.ip_address(str(info[4][0]).split("%")[0])
        if not address.is_global:
            return (f"host {parts.hostname!r} resolves to {address}, a private or reserved address "
                    "(allowed only with WEBHOOK_ALLOW_PRIVATE=true)")
    return None


def events_validate(events: object) -> list[str]:
    if not isinstance(events, list) or not events or not all(isinstance(e, str) for e in events):
        raise ValidationError({"events": f"a non-empty list of event names: {', '.join(SUBSCRIBABLE)}"})
    unknown = sorted(set(events) - set(SUBSCRIBABLE))
    if unknown:
        raise ValidationError({"events": f"unknown event {unknown[0]!r}; one of {', '.join(SUBSCRIBABLE)}"})
    return sorted(set(events), key=SUBSCRIBABLE.index)


def _url_validate(url: object) -> str:
    problem = url_problem(url)
    if problem is not None:
        raise ValidationError({"url": problem})
    assert isinstance(url, str)
    return url


def _description_validate(description: object) -> str:
    if not isinstance(description, str) or len(description) > MAX_DESCRIPTION_CHARS:
        raise ValidationError({"description": f"text of at most {MAX_DESCRIPTION_CHARS} characters"})
    return description


# --- subscriptions -----------------------------------------------------------------------------


def _project_flag_refresh(project_id: int) -> None:
    """``Project.webhooks_active``: whether ``events.publish`` needs to look for subscriptions at all."""
    active = WebhookSubscription.objects.filter(project_id=project_id, active=True).exists()
    Project.objects.filter(pk=project_id).update(webhooks_active=active)


def webhook_create(
    *, project: Project, url: object, events: object, description: object = "", active: bool = True,
    by: AbstractBaseUser | None = None,
) -> WebhookSubscription:
    """A new subscription with a server-generated secret (shown to the project's managers)."""
    fields = {"url": _url_validate(url), "events": events_validate(events),
              "description": _description_validate(description)}
    with transaction.atomic():
        Project.objects.select_for_update().get(pk=project.pk)  # serialises the count below
        if WebhookSubscription.objects.filter(project=project).count() >= MAX_SUBSCRIPTIONS_PER_PROJECT:
            raise ValidationError({"url": f"a project has at most {MAX_SUBSCRIPTIONS_PER_PROJECT} webhooks"})
        webhook = WebhookSubscription.objects.create(
            project=project, secret=secrets.token_hex(32), active=bool(active), created_by=by, **fields
        )
        _project_flag_refresh(project.pk)
    return webhook


def webhook_update(*, webhook: WebhookSubscription, changes: dict[str, Any]) -> WebhookSubscription:
    """Change url, events, description or active; ``rotate_secret: true`` issues a new secret."""
    with transaction.atomic():
        locked = WebhookSubscription.objects.select_for_update().get(pk=webhook.pk)
        if "url" in changes:
            locked.url = _url_validate(changes["url"])
        if "events" in changes:
            locked.events = events_validate(changes["events"])
        if "description" in changes:
            locked.description = _description_validate(changes["description"])
        if "active" in changes:
            locked.active = bool(changes["active"])
        if changes.get("rotate_secret"):
            locked.secret = secrets.token_hex(32)
        locked.save()
        _project_flag_refresh(locked.project_id)
    return locked


def webhook_delete(*, webhook: WebhookSubscription) -> None:
    with transaction.atomic():
        project_id = webhook.project_id
        webhook.delete()  # its deliveries go with it; a message naming one finds nothing
        _project_flag_refresh(project_id)


def webhook_ping(*, webhook: WebhookSubscription) -> WebhookDelivery:
    """Send a ``ping`` event to this one receiver (through the queue, like every delivery)."""
    with transaction.atomic():
        (pk,) = deliveries_create(
            event=PING,
            payload={"project_id": webhook.project_id, "webhook_id": webhook.pk, "events": webhook.events},
            subscription_ids=[webhook.pk],
        )
    return WebhookDelivery.objects.get(pk=pk)


def delivery_redeliver(*, delivery: WebhookDelivery) -> WebhookDelivery:
    """Send a delivery again by hand, with the same event id (the receiver can tell it is a repeat)."""
    with transaction.atomic():
        locked = WebhookDelivery.objects.select_for_update().get(pk=delivery.pk)
        now = timezone.now()
        if locked.state == DeliveryState.PENDING and locked.claimed_until and locked.claimed_until > now:
            raise DeliveryInFlightError("this delivery is being sent right now; look again in a few seconds")
        locked.state, locked.attempts, locked.next_attempt_at, locked.claimed_until = (
            DeliveryState.PENDING, 0, now, None
        )
        locked.save(update_fields=["state", "attempts", "next_attempt_at", "claimed_until"])
        enqueue(TaskName.WEBHOOK_DELIVER, args=(locked.pk,))
    return locked


# --- delivery ----------------------------------------------------------------------------------


def delivery_body(delivery: WebhookDelivery) -> bytes:
    """The JSON the receiver gets; the same bytes on every attempt."""
    return json.dumps(
        {
            "id": str(delivery.event_id),
            "event": delivery.event,
            "created_at": delivery.created_at.isoformat(),
            "project_id": delivery.payload.get("project_id"),
            "data": delivery.payload,
        },
        separators=(",", ":"),
        sort_keys=True,
    ).encode()


def signature(secret: str, body: bytes, timestamp: int) -> str:
    """The ``X-Alabel-Signature`` header value for ``body`` sent at ``timestamp``."""
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def backoff_s(attempts: int) -> float:
    """Seconds before the next attempt after ``attempts`` failed ones: doubling, capped, jittered."""
    base = min(settings.WEBHOOK_BACKOFF_BASE_S * 2 ** max(attempts - 1, 0), settings.WEBHOOK_BACKOFF_MAX_S)
    return base * (1 + 0.1 * random.random())  # noqa: S311 - spreading retries, not a secret


def _claim(delivery_id: int, now: Any) -> bool:
    hold = timedelta(seconds=2 * settings.WEBHOOK_TIMEOUT_S + 30)
    # A message may arrive a moment before the row is due (clocks, countdown rounding): 1 s of grace.
    return bool(
        WebhookDelivery.objects.filter(
            Q(claimed_until__isnull=True) | Q(claimed_until__lt=now),
            pk=delivery_id, state=DeliveryState.PENDING, next_attempt_at__lte=now + timedelta(seconds=1),
        ).update(claimed_until=now + hold, attempts=F("attempts") + 1, last_attempt_at=now)
    )


def _post(subscription: WebhookSubscription, delivery: WebhookDelivery) -> tuple[int | None, str]:
    """(status code or None, error text) of one POST; never raises for the receiver's faults."""
    problem = url_problem(subscription.url)  # again now: the name may resolve elsewhere since it was saved
    if problem is not None:
        return None, f"url {problem}"
    body = delivery_body(delivery)
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "alabel-webhooks/1",
        "X-Alabel-Event": delivery.event,
        "X-Alabel-Delivery": str(delivery.event_id),
        "X-Alabel-Signature": signature(subscription.secret, body, int(time.time())),
    }
    timeout = settings.WEBHOOK_TIMEOUT_S
    if not hasattr(_local, "session"):
        _local.session = requests.Session()
    try:
        with _local.session.post(subscription.url, data=body, headers=headers, timeout=(timeout, timeout),
                           allow_redirects=False, stream=True) as response:
            if 200 <= response.status_code < 300:
                return response.status_code, ""
            text = response.raw.read(MAX_ERROR_CHARS, decode_content=True).decode(errors="replace")
            return response.status_code, f"HTTP {response.status_code}: {text}"[:MAX_ERROR_CHARS]
    except requests.RequestException as exc:
        return None, f"{type(exc).__name__}: {exc}"[:MAX_ERROR_CHARS]


def _hold_back_siblings(delivery: WebhookDelivery, *, until: Any, now: Any) -> None:
    """The receiver just failed: its other pending deliveries due sooner wait for this one's next try.

    An outage then costs one probe per receiver per backoff step (plus one attempt per new event),
    not one attempt per pending event per step; their attempt counts are not spent while they wait.
    Their messages arrive early and find them not due; beat sends them once they are due and the
    receiver answers again (``webhooks_reconcile``).
    """
    WebhookDelivery.objects.filter(
        Q(claimed_until__isnull=True) | Q(claimed_until__lt=now),
        subscription_id=delivery.subscription_id, state=DeliveryState.PENDING, next_attempt_at__lt=until,
    ).exclude(pk=delivery.pk).update(next_attempt_at=until)


def _receiver_recovered(subscription: WebhookSubscription, *, now: Any) -> None:
    """The receiver answered again: new events go out at once, and what waited for it is sent now."""
    WebhookSubscription.objects.filter(pk=subscription.pk).update(retry_at=None)
    waiting = list(
        WebhookDelivery.objects.filter(subscription_id=subscription.pk, state=DeliveryState.PENDING)
        .filter(Q(claimed_until__isnull=True) | Q(claimed_until__lt=now))
        .order_by("next_attempt_at")
        .values_list("pk", flat=True)[:RECONCILE_BATCH]
    )
    WebhookDelivery.objects.filter(pk__in=waiting).update(next_attempt_at=now)
    for pk in waiting:
        enqueue(TaskName.WEBHOOK_DELIVER, args=(pk,))


def delivery_attempt(*, delivery_id: int) -> str | None:
    """One attempt at a due delivery (the WEBHOOK_DELIVER task). Returns its new state, None: not due/held."""
    now = timezone.now()
    if not _claim(delivery_id, now):
        return None
    delivery = WebhookDelivery.objects.select_related("subscription").filter(pk=delivery_id).first()
    if delivery is None:
        return None  # its webhook was deleted a moment ago
    subscription = delivery.subscription
    started = time.monotonic()
    if subscription.active or delivery.event == PING:
        code, error = _post(subscription, delivery)
    else:
        code, error = None, "the webhook is inactive"
    duration_ms = int((time.monotonic() - started) * 1000)
    done = timezone.now()
    fields: dict[str, Any] = {"claimed_until": None, "last_status_code": code, "last_error": error,
                              "last_duration_ms": duration_ms}
    if code is not None and 200 <= code < 300:
        fields.update(state=DeliveryState.DELIVERED, delivered_at=done)
        if subscription.retry_at is not None:
            _receiver_recovered(subscription, now=done)
    elif delivery.attempts >= settings.WEBHOOK_MAX_ATTEMPTS or not subscription.active and delivery.event != PING:
        fields.update(state=DeliveryState.FAILED)
    else:
        wait = backoff_s(delivery.attempts)
        fields.update(next_attempt_at=done + timedelta(seconds=wait))
        _hold_back_siblings(delivery, until=fields["next_attempt_at"], now=done)
        # New events wait for this probe in the outbox (events._outbox_write) instead of trying on their own.
        WebhookSubscription.objects.filter(pk=subscription.pk).update(retry_at=fields["next_attempt_at"])
    WebhookDelivery.objects.filter(pk=delivery_id).update(**fields)
    if "state" not in fields:  # the next attempt's message, after the row says when it is due
        enqueue(TaskName.WEBHOOK_DELIVER, args=(delivery_id,), countdown=wait)
    if error:
        logger.info("webhook delivery %s (%s) attempt %s: %s", delivery_id, delivery.event, delivery.attempts, error)
    return str(fields.get("state", DeliveryState.PENDING))


def webhooks_reconcile() -> dict[str, int]:
    """Beat: re-send pending deliveries well past due and not held (their message was lost)."""
    now = timezone.now()
    overdue = now - timedelta(seconds=settings.WEBHOOK_RECONCILE_SECONDS)
    due = list(
        WebhookDelivery.objects.filter(state=DeliveryState.PENDING, next_attempt_at__lte=overdue)
        .filter(Q(claimed_until__isnull=True) | Q(claimed_until__lt=now))
        .order_by("next_attempt_at")
        .values_list("pk", flat=True)[:RECONCILE_BATCH]
    )
    for pk in due:
        enqueue(TaskName.WEBHOOK_DELIVER, args=(pk,))
    return {"webhook_deliveries_resent": len(due)}
