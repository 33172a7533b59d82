"""Browser fixtures: Playwright (sync API) driving Debian's /usr/bin/chromium; never a downloaded browser.

Playwright's sync API runs an event loop in the test thread, which trips Django's async-unsafe
guard on ORM calls in the test body; pytest-django's docs recommend DJANGO_ALLOW_ASYNC_UNSAFE for it.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
    "--disable-sync", "--no-first-run",
]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"


@pytest.fixture(scope="session")
def chromium_browser() -> Iterator[object]:
    from playwright.sync_api import expect, sync_playwright

    # Two shared CPUs: give assertions the same patience as actions.
    expect.set_options(timeout=15_000)

    if not Path(CHROMIUM).exists():
        raise pytest.UsageError(f"{CHROMIUM} is missing: `make chromium` installs Debian's chromium")
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


FAILED_CALL = pytest.StashKey[bool]()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[pytest.TestReport]:
    """Mark a test whose body failed, so ``browser_page`` keeps what the page showed."""
    report = yield
    if report.when == "call" and report.failed:
        item.stash[FAILED_CALL] = True
    return report


def _keep_failure_evidence(page: Any, name: str) -> None:
    """Screenshot, HTML, JavaScript errors and dialogs of a failed test's page, in test-artifacts/."""
    ARTIFACTS.mkdir(exist_ok=True)
    stem = ARTIFACTS / f"failed-{name}"
    try:
        page.screenshot(path=f"{stem}.png", full_page=True)
        stem.with_suffix(".html").write_text(page.content())
    except Exception as exc:  # noqa: BLE001 - evidence is best effort; the test already failed
        page.errors.append(f"(could not capture the page: {exc!r})")
    notes = [f"url: {page.url}", *(f"error: {e}" for e in page.errors), *(f"dialog: {d}" for d in page.dialogs)]
    stem.with_suffix(".txt").write_text("\n".join(notes) + "\n")


@pytest.fixture
def browser_page(chromium_browser, request: pytest.FixtureRequest) -> Iterator[object]:
    """A fresh browser context (no cookies) and page; collects console errors and JavaScript dialogs.

    When the test fails, the page's screenshot, HTML and errors are kept in test-artifacts/failed-*.
    """
    context = chromium_browser.new_context(viewport={"width": 1360, "height": 1000}, device_scale_factor=1)
    context.set_default_timeout(15_000)
    page = context.new_page()
    page.dialogs = []  # type: ignore[attr-defined]
    page.errors = []  # type: ignore[attr-defined]

    def on_dialog(dialog) -> None:
        page.dialogs.append(dialog.message)  # type: ignore[attr-defined]
        dialog.dismiss()

    page.on("dialog", on_dialog)
    page.on("pageerror", lambda exc: page.errors.append(str(exc)))  # type: ignore[attr-defined]
    pending: set[object] = set()
    context.on("request", lambda request: pending.add(request))
    context.on("requestfinished", lambda request: pending.discard(request))
    context.on("requestfailed", lambda request: pending.discard(request))
    try:
        yield page
        if request.node.stash.get(FAILED_CALL, False):
            _keep_failure_evidence(page, request.node.name)
    finally:
        # Leave the page before the test database is flushed: its pagehide handler releases the lease
        # with a keepalive request (which Playwright does not report) and polls may be in flight; a
        # flush (TRUNCATE) racing such a request's row locks in the live server deadlocked once. Wait
        # (at most 5 s each) for the page's requests, then for the live server's database sessions.
        page.goto("about:blank")
        _wait_until(lambda: not pending, page)
        # The pagehide keepalive is not in `pending` and may reach the live server a moment later, so
        # the sessions must stay idle for several looks in a row (one look let a flush race it in CI).
        _wait_until(_sessions_idle_steadily(), page)
        context.close()


def _wait_until(done: Callable[[], bool], page: Any, seconds: float = 5.0) -> None:
    deadline = time.monotonic() + seconds
    while not done() and time.monotonic() < deadline:
        page.wait_for_timeout(50)


def _sessions_idle_steadily(looks: int = 4) -> Callable[[], bool]:
    """A check that is true once ``_other_sessions_idle`` has held ``looks`` times in a row (~50 ms apart)."""
    streak = [0]

    def done() -> bool:
        streak[0] = streak[0] + 1 if _other_sessions_idle() else 0
        return streak[0] >= looks

    return done


def _other_sessions_idle() -> bool:
    """No other PostgreSQL session on the test database is running a statement or holds a transaction."""
    from django.db import connection

    if connection.vendor != "postgresql":
        return True
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND pid <> pg_backend_pid() AND state IS NOT NULL AND state <> 'idle'"
        )
        return cursor.fetchone()[0] == 0


@pytest.fixture
def artifacts_dir() -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS
