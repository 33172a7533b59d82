"""Reads for webhooks: a project's subscriptions and a subscription's delivery log."""

from __future__ import annotations

from django.db.models import QuerySet

from labeling.models import DeliveryState, Project, WebhookDelivery, WebhookSubscription

#: The delivery log shows at most this many rows, newest first.
MAX_DELIVERIES = 200


def webhook_list(*, project: Project) -> QuerySet[WebhookSubscription]:
    return WebhookSubscription.objects.filter(project=project).order_by("id")


def delivery_list(
    *, webhook: WebhookSubscription, state: str | None = None, limit: int = MAX_DELIVERIES
) -> QuerySet[WebhookDelivery]:
    deliveries = WebhookDelivery.objects.filter(subscription=webhook)
    if state is not None:
        assert state in DeliveryState.values
        deliveries = deliveries.filter(state=state)
    return deliveries.order_by("-id")[: min(limit, MAX_DELIVERIES)]
