"""Single sign-on against a real OpenID Connect provider (django-oauth-toolkit, its own process and port).

The authorization-code flow runs for real: alabel's login redirects to the provider, the provider's
login form is submitted, the provider redirects back with a code, alabel exchanges it over HTTP, checks
the RS256 ID token against the provider's JWKS and signs the user in. Driven by an HTTP client that
follows redirects (and once by Chromium, from the login page's button).
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
import requests
from django.contrib.auth import get_user_model
from django.core.management import call_command
from playwright.sync_api import expect

from labeling.models import ProjectMembership, SsoIdentity
from labeling.services.tokens import token_create
from tests import factories as f
from tests.support.oidc import OidcProvider, oidc_provider

pytestmark = [pytest.mark.e2e]

IDP_PASSWORD = "idp-password-for-tests"
ALICE = {"email": "alice@example.org", "email_verified": True, "preferred_username": "alice",
         "given_name": "Alice", "family_name": "Liddell"}


@pytest.fixture(scope="module")
def provider(live_server, tmp_path_factory: pytest.TempPathFactory) -> Iterator[OidcProvider]:
    with oidc_provider(
        workdir=tmp_path_factory.mktemp("oidc"), redirect_uri=f"{live_server.url}/login/sso/callback/",
        users={"alice": IDP_PASSWORD, "mallory": IDP_PASSWORD},
    ) as running:
        yield running


@pytest.fixture
def sso(settings, provider: OidcProvider) -> OidcProvider:
    for name, value in provider.rp_settings().items():
        setattr(settings, name, value)
    settings.OIDC_ROLES_CLAIM = "groups"
    return provider


def _form_field(page: str, name: str) -> str:
    match = re.search(rf'name="{name}" value="([^"]*)"', page)
    assert match, f"no {name} in the page"
    return html.unescape(match[1])


def provider_login(client: requests.Session, base: str, provider: OidcProvider, username: str) -> str:
    """Start at alabel, sign in at the provider; the URL of alabel's callback, not yet followed."""
    page = client.get(f"{base}/login/sso/?{urlencode({'next': '/'})}", timeout=30)
    assert page.status_code == 200 and page.url.startswith(f"{provider.base_url}/accounts/login/"), page.url
    answer = client.post(page.url, timeout=30, allow_redirects=False, data={
        "csrfmiddlewaretoken": _form_field(page.text, "csrfmiddlewaretoken"),
        "username": username, "password": IDP_PASSWORD, "next": _form_field(page.text, "next"),
    })
    while not answer.headers.get("Location", "").startswith(f"{base}/login/sso/callback/"):
        assert answer.status_code == 302, (answer.status_code, answer.text[:500])
        answer = client.get(requests.compat.urljoin(answer.url, answer.headers["Location"]),
                            timeout=30, allow_redirects=False)
    return answer.headers["Location"]


def sso_login(base: str, provider: OidcProvider, username: str) -> tuple[requests.Session, requests.Response]:
    client = requests.Session()
    callback = provider_login(client, base, provider, username)
    return client, client.get(callback, timeout=30)


def signed_in(client: requests.Session, base: str) -> bool:
    """The session is a user's: the project list answers instead of sending to the login page."""
    return client.get(f"{base}/", timeout=30, allow_redirects=False).status_code == 200


def roles_of(user: Any) -> dict[int, tuple[str, bool]]:
    return {m.project_id: (m.role, m.claim_managed) for m in ProjectMembership.objects.filter(user=user)}


def test_sso_creates_the_user_and_the_role_claim_maps_memberships_at_every_login(live_server, sso) -> None:
    base = live_server.url
    alpha, beta = f.ProjectFactory(name="alpha"), f.ProjectFactory(name="beta")
    sso.set_claims("alice", {**ALICE, "groups": [f"alabel:{alpha.pk}:annotator", "staff"]})

    client, landing = sso_login(base, sso, "alice")
    assert landing.status_code == 200 and landing.url == f"{base}/", landing.url
    assert "alpha" in landing.text and "beta" not in landing.text  # the session is alice's, with her project
    user = get_user_model().objects.get(username="alice")
    assert (user.email, user.first_name, user.has_usable_password()) == ("alice@example.org", "Alice", False)
    identity = SsoIdentity.objects.get(user=user)
    assert identity.issuer == sso.issuer and identity.subject  # the provider's sub, recorded
    assert roles_of(user) == {alpha.pk: ("annotator", True)}
    # The session works for the API as for pages.
    projects = client.get(f"{base}/api/v1/projects/", timeout=30).json()
    assert [p["name"] for p in projects] == ["alpha"]

    # The provider changes her groups: the next login changes the role, adds beta (by name).
    sso.set_claims("alice", {**ALICE, "groups": [f"alabel:{alpha.pk}:reviewer", "alabel:beta:manager"]})
    sso_login(base, sso, "alice")
    assert roles_of(user) == {alpha.pk: ("reviewer", True), beta.pk: ("manager", True)}
    assert get_user_model().objects.filter(username__startswith="alice").count() == 1

    # Out of alpha's group: removed at the next login.
    sso.set_claims("alice", {**ALICE, "groups": ["alabel:beta:manager"]})
    sso_login(base, sso, "alice")
    assert roles_of(user) == {beta.pk: ("manager", True)}


def test_a_manager_adds_an_sso_user_like_any_other_and_the_claim_leaves_it_alone(live_server, sso) -> None:
    base = live_server.url
    project = f.ProjectFactory()
    sso.set_claims("alice", {"preferred_username": "alice", "groups": []})  # no email: the sub is enough
    sso_login(base, sso, "alice")
    user = get_user_model().objects.get(username="alice")
    assert roles_of(user) == {}

    manager = f.UserFactory()
    ProjectMembership.objects.create(project=project, user=manager, role="manager")
    _, key = token_create(user=manager)
    added = requests.post(f"{base}/api/v1/projects/{project.pk}/members/", timeout=30,
                          json={"username": "alice", "role": "annotator"}, headers={"Authorization": f"Token {key}"})
    assert added.status_code == 201, added.text
    sso_login(base, sso, "alice")
    assert roles_of(user) == {project.pk: ("annotator", False)}

    # The members list tells a manager which memberships the provider's claim manages.
    sso.set_claims("alice", {"preferred_username": "alice", "groups": [f"alabel:{project.pk}:reviewer"]})
    sso_login(base, sso, "alice")
    assert roles_of(user) == {project.pk: ("annotator", False)}  # still the manager's, not the claim's
    requests.delete(f"{base}/api/v1/projects/{project.pk}/members/{user.pk}", timeout=30,
                    headers={"Authorization": f"Token {key}"}).raise_for_status()
    sso_login(base, sso, "alice")
    members = requests.get(f"{base}/api/v1/projects/{project.pk}/members/", timeout=30,
                           headers={"Authorization": f"Token {key}"}).json()
    assert {(m["username"], m["role"], m["claim_managed"]) for m in members} == {
        (manager.username, "manager", False), ("alice", "reviewer", True)}


@pytest.mark.parametrize(
    "forged",
    [{"aud": "another-client"}, {"aud": ["another-client", "alabel-test"]}, {"iss": "https://evil.example.org"},
     {"nonce": "not-the-one-alabel-sent"}, {"exp": 1_000_000_000}, {"sub": "not-the-userinfo-subject"}],
    ids=["audience", "audience-list-without-azp", "issuer", "nonce", "expired", "userinfo-of-another-subject"],
)
def test_a_forged_or_misissued_id_token_is_refused(live_server, sso, forged: dict) -> None:
    base = live_server.url
    sso.set_claims("mallory", {"email": "mallory@example.org", "email_verified": True, "id_token": forged})
    client, answer = sso_login(base, sso, "mallory")
    assert answer.url == f"{base}/login/?sso=failed"
    assert "Single sign-on did not complete" in answer.text
    assert not signed_in(client, base)
    assert not SsoIdentity.objects.exists()
    assert not get_user_model().objects.filter(email="mallory@example.org").exists()


def test_a_bad_state_is_refused_and_a_callback_works_once(live_server, sso) -> None:
    base = live_server.url
    sso.set_claims("alice", {**ALICE})
    client = requests.Session()
    callback = provider_login(client, base, sso, "alice")
    parts = urlsplit(callback)
    query = parse_qs(parts.query)
    forged = f"{base}{parts.path}?{urlencode({'code': query['code'][0], 'state': 'forged-state'})}"
    assert client.get(forged, timeout=30).status_code == 400
    assert not signed_in(client, base)
    # Another browser (no session of this flow) cannot use the code either.
    stranger = requests.Session()
    assert stranger.get(callback, timeout=30).url == f"{base}/login/?sso=failed"
    assert not signed_in(stranger, base)

    assert client.get(callback, timeout=30).url == f"{base}/"
    assert signed_in(client, base)
    assert client.get(callback, timeout=30).status_code == 400  # the state was used up


def test_local_accounts_and_api_tokens_keep_working_beside_sso(live_server, sso) -> None:
    base = live_server.url
    project = f.ProjectFactory(name="local project")
    local = f.UserFactory(username="localuser")
    ProjectMembership.objects.create(project=project, user=local, role="annotator")
    client = requests.Session()
    page = client.get(f"{base}/login/", timeout=30)
    assert "Sign in with Test IdP" in page.text
    answer = client.post(f"{base}/login/", timeout=30, headers={"Referer": f"{base}/login/"}, data={
        "csrfmiddlewaretoken": client.cookies["csrftoken"], "username": "localuser", "password": "pw-for-tests",
        "next": "/",
    })
    assert answer.url == f"{base}/" and "local project" in answer.text
    _, key = token_create(user=local)
    api = requests.get(f"{base}/api/v1/projects/", timeout=30, headers={"Authorization": f"Token {key}"})
    assert api.status_code == 200 and [p["name"] for p in api.json()] == ["local project"]
    # A password login cannot reach the provider (the OIDC backend answers only its own callback).
    wrong = requests.Session()
    wrong.get(f"{base}/login/", timeout=30)
    refused = wrong.post(f"{base}/login/?code=x&state=y", timeout=30, data={
        "csrfmiddlewaretoken": wrong.cookies["csrftoken"], "username": "alice", "password": "nope"})
    assert refused.status_code == 200 and "did not match" in refused.text


def test_sign_in_with_the_provider_from_the_login_page_in_chromium(live_server, sso, browser_page) -> None:
    page, base = browser_page, live_server.url
    project = f.ProjectFactory(name="browser project")
    sso.set_claims("alice", {**ALICE, "groups": [f"alabel:{project.pk}:annotator"]})
    page.goto(f"{base}/login/")
    page.get_by_role("link", name="Sign in with Test IdP").click()
    page.get_by_label("Username").fill("alice")
    page.get_by_label("Password").fill(IDP_PASSWORD)
    page.get_by_role("button", name="Log in to Test IdP").click()
    expect(page.get_by_role("heading", name="Projects")).to_be_visible()
    expect(page.get_by_text("browser project")).to_be_visible()
    assert page.url == f"{base}/"
    assert not page.errors


def test_failed_sso_callbacks_count_with_django_axes_and_lock_out_only_sso_from_that_address(
    live_server, sso, settings
) -> None:
    """Axes sees every SSO callback (the backend gets ``request``): failures count for (no username, address)."""
    base = live_server.url
    settings.AXES_FAILURE_LIMIT = 2
    local = f.UserFactory(username="localuser")
    sso.set_claims("mallory", {"email": "mallory@example.org", "id_token": {"nonce": "forged"}})
    sso.set_claims("alice", {**ALICE})
    try:
        assert sso_login(base, sso, "mallory")[1].url == f"{base}/login/?sso=failed"
        assert sso_login(base, sso, "mallory")[1].status_code == 429  # the failure that reaches the limit
        client, locked = sso_login(base, sso, "alice")
        assert locked.status_code == 429 and "Too many failed sign-ins" in locked.text
        assert not signed_in(client, base)
        # A password login from the same address is another (username, address) pair: not locked out.
        password = requests.Session()
        password.get(f"{base}/login/", timeout=30)
        answer = password.post(f"{base}/login/", timeout=30, data={
            "csrfmiddlewaretoken": password.cookies["csrftoken"], "username": local.username,
            "password": "pw-for-tests", "next": "/"})
        assert answer.url == f"{base}/"
    finally:
        call_command("axes_reset", verbosity=0)
    assert sso_login(base, sso, "alice")[1].url == f"{base}/"
