"""Single sign-on with OpenID Connect: mozilla-django-oidc's authorization-code flow, made strict.

The library does the flow (state, nonce and PKCE kept in the session, the code exchanged, the ID
token's signature checked against the provider's JWKS). What it leaves open is closed here: the ID
token's ``iss`` must be the configured issuer and its ``aud`` must name this client (an ID token issued
to another client of the same provider is refused), the userinfo answer must be about the same ``sub``,
and the backend answers only a callback of a flow this site started (``nonce`` passed by the view), so
a username/password login never reaches the provider. Accounts and roles: labeling.services.sso.
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import urlencode

import jwt
import requests
from django.conf import settings
from django.core.exceptions import SuspiciousOperation
from django.http import Http404, HttpRequest, HttpResponse
from django.urls import reverse
from mozilla_django_oidc.auth import OIDCAuthenticationBackend
from mozilla_django_oidc.views import OIDCAuthenticationCallbackView, OIDCAuthenticationRequestView

from labeling.services.sso import (
    SsoRefused,
    role_claim_values,
    role_grants,
    sso_memberships_sync,
    sso_user_resolve,
)

logger = logging.getLogger(__name__)


class SsoBackend(OIDCAuthenticationBackend):
    def authenticate(self, request: HttpRequest | None, **kwargs: Any) -> Any:
        # Only the callback view passes a nonce: every other authenticate() call is not ours to answer.
        if not settings.OIDC_ENABLED or request is None or "nonce" not in kwargs:
            return None
        try:
            return super().authenticate(request, **kwargs)
        # A refused token (expired, bad signature, wrong claims), an unreachable or confused provider.
        except (SuspiciousOperation, requests.RequestException, jwt.PyJWTError, ValueError, KeyError) as exc:
            logger.warning("sso: login refused: %s", exc)
            return None

    def verify_token(self, token: str, **kwargs: Any) -> dict[str, Any]:
        payload: dict[str, Any] = super().verify_token(token, **kwargs)
        if payload.get("iss") != settings.OIDC_OP_ISSUER:
            raise SuspiciousOperation(f"ID token issuer {payload.get('iss')!r} is not {settings.OIDC_OP_ISSUER!r}")
        audience = payload.get("aud")
        audiences = [audience] if isinstance(audience, str) else list(audience or [])
        client_id = settings.OIDC_RP_CLIENT_ID
        if client_id not in audiences:
            raise SuspiciousOperation(f"ID token audience {audience!r} does not name this client")
        if len(audiences) > 1 and payload.get("azp") != client_id:
            raise SuspiciousOperation("ID token for several audiences was not issued to this client (azp)")
        return payload

    def verify_claims(self, claims: dict[str, Any]) -> bool:
        # The library wants an email whenever the scope asks for one; an account here needs only a sub.
        return bool(claims.get("sub"))

    def get_or_create_user(self, access_token: str, id_token: str, payload: dict[str, Any]) -> Any:
        userinfo = self.get_userinfo(access_token, id_token, payload)
        if userinfo.get("sub") != payload.get("sub"):
            raise SuspiciousOperation("userinfo is about another subject than the ID token")
        claims = {**payload, **userinfo}
        try:
            user = sso_user_resolve(
                issuer=settings.OIDC_OP_ISSUER, claims=claims,
                link_verified_email=settings.OIDC_LINK_VERIFIED_EMAIL, create_users=settings.OIDC_CREATE_USERS,
            )
        except SsoRefused as exc:
            logger.warning("sso: no account: %s", exc)
            return None
        if settings.OIDC_ROLES_CLAIM and user.is_active:
            values = role_claim_values(claims, settings.OIDC_ROLES_CLAIM)
            sso_memberships_sync(user=user, grants=role_grants(values=values, prefix=settings.OIDC_ROLE_PREFIX))
        return user


class SsoStartView(OIDCAuthenticationRequestView):
    """GET /login/sso/?next=...: to the provider's login page (404 while single sign-on is off)."""

    def dispatch(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if not settings.OIDC_ENABLED:
            raise Http404("single sign-on is not configured")
        return super().dispatch(request, *args, **kwargs)


class SsoCallbackView(OIDCAuthenticationCallbackView):
    """GET /login/sso/callback/: where the provider sends the browser back (the redirect URI to register)."""

    @property
    def failure_url(self) -> str:
        return reverse("ui:login") + "?" + urlencode({"sso": "failed"})

    def dispatch(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if not settings.OIDC_ENABLED:
            raise Http404("single sign-on is not configured")
        return super().dispatch(request, *args, **kwargs)
