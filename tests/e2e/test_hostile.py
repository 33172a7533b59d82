"""Hostile and malformed requests against a live server: every endpoint, every role, non-members.

Each endpoint of the URLconf (read from the resolver, as tests/labeling/api/test_roles.py does) gets
bad tokens, no credentials, a non-member's token, and each member role, with bodies and queries a
hostile client would send: nested 100,000 deep, not JSON, wrong types, unknown fields, numbers of
thousands of digits, over the size limit, ids past bigint, and a browser session without its CSRF
token. The server never answers 5xx, and a refused request leaves every table's row count as it was.
"""

from __future__ import annotations

import re
import uuid
from collections import Counter
from typing import Any

import pytest
import requests
from django.db import connection
from django.urls import reverse

from labeling import roles
from labeling.models import Annotation, ReviewItem, ReviewReason, WebhookDelivery, WebhookSubscription
from labeling.services.documents import document_bulk_create
from labeling.services.memberships import membership_ensure
from labeling.services.projects import project_create
from labeling.services.review import review_flag
from labeling.services.tokens import token_create
from tests import factories as f
from tests.labeling.api.test_roles import resolver_endpoints

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

BODY_LIMIT = 20_000  # DATA_UPLOAD_MAX_MEMORY_SIZE for this test, so "over the limit" stays cheap
DEEP = "[" * 100_000
BODIES: dict[str, tuple[str, str]] = {  # name -> (content type, raw body)
    "deep": ("application/json", DEEP),
    "deep-object": ("application/json", '{"a": ' * 50_000),
    "not-json": ("application/json", '{"text": "unterminated'),
    "wrong-type": ("application/json", "[1, 2, 3]"),
    "unknown-fields": ("application/json", '{"zzz": 1, "__proto__": {"admin": true}}'),
    "huge-number": ("application/json", '{"label": ' + "9" * 5000 + ', "text": 1e999999}'),
    "oversized": ("application/json", '{"text": "' + "x" * (BODY_LIMIT * 2) + '"}'),
    "form": ("application/x-www-form-urlencoded", "text=a&labels=b"),
    "bad-utf8": ("application/json", '{"text": "\udcff"}'),
}
QUERY = "?page_size=99999999999999999999&cursor=%00%ff&q=%00&labeled=maybe&format=../../etc/passwd&limit=-1"
HUGE_IDS = (2**63, 2**64 + 7)


def _table_counts() -> dict[str, int]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY tablename")
        tables = [row[0] for row in cursor.fetchall()]
        union = " UNION ALL ".join(f"SELECT '{t}', count(*) FROM \"{t}\"" for t in tables)
        cursor.execute(union)
        return dict(cursor.fetchall())


@pytest.fixture
def world(settings) -> dict[str, Any]:
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = BODY_LIMIT
    settings.REST_FRAMEWORK = {
        **settings.REST_FRAMEWORK,
        # The limits are tested elsewhere; here every request must reach the code it is aimed at.
        "DEFAULT_THROTTLE_RATES": {"anon": "100000/min", "user": "100000/min", "auth_failures": "100000/min"},
    }
    project = project_create(name="hostile", labels=["fresh", "rotten"], holdout_fraction=0.0)
    other = project_create(name="elsewhere", labels=["a", "b"])
    docs = [d for d, _ in document_bulk_create(project=project, items=[{"text": f"t{i}"} for i in range(6)])]
    users = {}
    for role in (roles.MANAGER, roles.REVIEWER, roles.ANNOTATOR, roles.INGEST):
        users[role] = f.UserFactory(username=f"h-{role}")
        membership_ensure(project=project, user=users[role], role=role)
    users["outsider"] = f.UserFactory(username="h-outsider")
    membership_ensure(project=other, user=users["outsider"], role=roles.MANAGER)
    lease = f.AssignmentFactory(document=docs[0], annotator=users[roles.ANNOTATOR])
    annotation = Annotation.objects.create(document=docs[1], annotator=users[roles.ANNOTATOR], label="fresh")
    job = f.ImportJobFactory(project=project)
    review_flag(project=project, document_ids=[docs[1].pk], reason=ReviewReason.AUDIT)
    item = ReviewItem.objects.get(document=docs[1])
    webhook = WebhookSubscription.objects.create(project=project, url="http://127.0.0.1:9/", events=["ping"])
    delivery = WebhookDelivery.objects.create(subscription=webhook, event_id=uuid.uuid4(), event="ping")
    ids = {
        "project_id": project.pk, "pk": project.pk, "document_id": docs[2].pk, "doc_id": docs[2].pk,
        "job_id": job.pk, "assignment_id": lease.pk, "annotation_id": annotation.pk, "model_id": 1,
        "user_id": users[roles.ANNOTATOR].pk, "item_id": item.pk, "webhook_id": webhook.pk,
        "delivery_id": delivery.pk,
    }
    headers = {name: {"Authorization": f"Token {token_create(user=user)[1]}"} for name, user in users.items()}
    headers["bad-token"] = {"Authorization": "Token " + "f" * 64}
    headers["malformed-token"] = {"Authorization": "Token a b c"}
    headers["anonymous"] = {}
    return {"ids": ids, "headers": headers, "manager": users[roles.MANAGER]}


def _url(name: str, ids: dict[str, int], **override: int) -> str:
    from django.urls import get_resolver

    # The route's own parameters, filled from the world's ids (or the override).
    for route_name, route_kwargs in _routes(get_resolver()).items():
        if route_name == name:
            return reverse(name, kwargs={k: override.get(k, ids[k]) for k in route_kwargs})
    raise KeyError(name)


def _routes(resolver: Any) -> dict[str, list[str]]:
    from tests.labeling.api.test_roles import _walk

    return {name: re.findall(r"<int:(\w+)>", route) for route, name, _ in _walk(resolver.url_patterns)}


def _cases(world: dict[str, Any]) -> list[tuple[str, str, str, dict[str, str], str | None, str | None]]:
    """(label, method, url, headers, content type, body) for every endpoint, role and hostile input."""
    ids, headers = world["ids"], world["headers"]
    cases = []
    for method, name in resolver_endpoints():
        url = _url(name, ids)
        for who, header in headers.items():
            if method == "get":
                cases.append((f"{name} {who} query", method, url + QUERY, header, None, None))
            else:
                cases.append((f"{name} {who} deep", method, url, header, *BODIES["deep"]))
        if method != "get":
            for body_name, (content_type, body) in BODIES.items():
                manager = headers[roles.MANAGER]
                cases.append((f"{name} manager {body_name}", method, url, manager, content_type, body))
        for huge in HUGE_IDS:
            params = [k for k in _routes_cache(name) if k in ids]
            for param in params:
                cases.append((f"{name} id {param}={huge}", method, _url(name, ids, **{param: huge}),
                              headers[roles.MANAGER], "application/json", "{}"))
    return cases


_ROUTE_PARAMS: dict[str, list[str]] = {}


def _routes_cache(name: str) -> list[str]:
    if not _ROUTE_PARAMS:
        from django.urls import get_resolver

        _ROUTE_PARAMS.update(_routes(get_resolver()))
    return _ROUTE_PARAMS[name]


def test_hostile_requests_never_get_a_5xx_and_leave_nothing_half_stored(world, live_server) -> None:
    cases = _cases(world)
    assert len(cases) >= 100
    seen: Counter[int] = Counter()
    problems: list[str] = []
    before = _table_counts()
    with requests.Session() as session:
        for label, method, url, header, content_type, body in cases:
            send = {**header, **({"Content-Type": content_type} if content_type else {})}
            data = body.encode("utf-8", "surrogateescape") if body is not None else None
            response = session.request(method.upper(), live_server.url + url, headers=send, data=data,
                                       timeout=60)
            seen[response.status_code] += 1
            if response.status_code >= 500:
                problems.append(f"{label}: {response.status_code} {response.text[:200]}")
            after = _table_counts()
            if response.status_code >= 400 and after != before:
                changed = {t: (before[t], after.get(t)) for t in before if before[t] != after.get(t)}
                problems.append(f"{label}: {response.status_code} but rows changed {changed}")
            before = after
    # A logged-in browser session posting without its CSRF token: 403, nothing stored.
    browser = requests.Session()
    page = browser.get(live_server.url + "/login/")
    token = browser.cookies.get("csrftoken")
    manager = world["manager"]
    manager.set_password("a long and unusual phrase")
    manager.save()
    login = browser.post(live_server.url + "/login/", data={"username": manager.username,
                         "password": "a long and unusual phrase", "csrfmiddlewaretoken": token},
                         headers={"Referer": live_server.url + "/login/"})
    assert page.status_code == 200 and login.status_code == 200 and "sessionid" in browser.cookies
    csrf_cases = [(m, name) for m, name in resolver_endpoints() if m != "get"]
    before = _table_counts()
    for method, name in csrf_cases:
        response = browser.request(method.upper(), live_server.url + _url(name, world["ids"]),
                                   json={"text": "a"})
        seen[response.status_code] += 1
        # 415: the upload endpoint refuses a JSON body before the CSRF check can read a form field.
        if response.status_code not in (403, 415):
            problems.append(f"{name} without CSRF: {response.status_code}")
    assert _table_counts() == before
    assert problems == [], "\n".join(problems)
    assert not any(code >= 500 for code in seen), seen
    # Print the figures the README quotes (pytest -s shows them).
    print(f"hostile suite: {sum(seen.values())} requests, 5xx: 0, statuses: {dict(sorted(seen.items()))}")
