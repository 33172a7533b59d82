"""The login page offers single sign-on only where it is configured; its routes are 404 otherwise."""

from __future__ import annotations

import pytest
from django.test import Client

pytestmark = pytest.mark.django_db


def test_without_configuration_there_is_no_sso_button_and_no_sso_route(settings) -> None:
    settings.OIDC_ENABLED = False
    client = Client()
    assert "Sign in with" not in client.get("/login/").content.decode()
    assert client.get("/login/sso/").status_code == 404
    assert client.get("/login/sso/callback/?code=x&state=y").status_code == 404


def test_with_configuration_the_button_carries_next_to_the_provider(settings) -> None:
    settings.OIDC_ENABLED = True
    settings.OIDC_PROVIDER_NAME = "Acme Keycloak"
    settings.OIDC_RP_CLIENT_ID = "alabel"
    settings.OIDC_OP_AUTHORIZATION_ENDPOINT = "https://idp.example.org/auth"
    client = Client()
    page = client.get("/login/?next=/projects/3/label/").content.decode()
    assert 'href="/login/sso/?next=/projects/3/label/"' in page
    assert "Sign in with Acme Keycloak" in page
    start = client.get("/login/sso/?next=/projects/3/label/")
    assert start.status_code == 302 and start["Location"].startswith("https://idp.example.org/auth?")
    for param in ("response_type=code", "client_id=alabel", "code_challenge_method=S256", "nonce=", "state="):
        assert param in start["Location"]
    # A return to another site is not kept (the library checks next against this host).
    client.get("/login/sso/?next=https://evil.example.org/")
    assert client.session["oidc_login_next"] is None
    assert "Single sign-on did not complete" in client.get("/login/?sso=failed").content.decode()


def test_admins_see_and_can_unlink_sso_identities(admin_client) -> None:
    from labeling.models import SsoIdentity
    from tests.factories import UserFactory

    identity = SsoIdentity.objects.create(user=UserFactory(), issuer="https://idp.example.org", subject="s-1")
    listing = admin_client.get("/admin/labeling/ssoidentity/")
    assert listing.status_code == 200 and "s-1" in listing.content.decode()
    assert admin_client.post(f"/admin/labeling/ssoidentity/{identity.pk}/delete/", {"post": "yes"}).status_code == 302
    assert not SsoIdentity.objects.exists()
