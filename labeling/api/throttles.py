"""Rate limits: read their rates when asked (a settings override takes effect), count on the real
client address (labeling.clientip), and count failed authentication too."""

from __future__ import annotations

from typing import Any

from rest_framework.exceptions import AuthenticationFailed
from rest_framework.request import Request
from rest_framework.settings import api_settings
from rest_framework.throttling import AnonRateThrottle, SimpleRateThrottle, UserRateThrottle

from labeling.clientip import client_ip


class _RatesFromSettings:
    scope: str

    def get_rate(self) -> str | None:
        return api_settings.DEFAULT_THROTTLE_RATES.get(self.scope)

    def get_ident(self, request: Request) -> str:
        return client_ip(request)


class AnonThrottle(_RatesFromSettings, AnonRateThrottle):
    pass


class UserThrottle(_RatesFromSettings, UserRateThrottle):
    pass


class AuthFailureThrottle(_RatesFromSettings, SimpleRateThrottle):
    """Requests with a wrong token, per client address: token guessing meets 429, not endless 401s."""

    scope = "auth_failures"

    def get_cache_key(self, request: Request, view: Any) -> str:
        return self.cache_format % {"scope": self.scope, "ident": self.get_ident(request)}


class CountsFailedAuthentication:
    """A view mixin: authentication fails before any throttle runs, so count the failure here."""

    def perform_authentication(self, request: Request) -> None:
        try:
            request.user  # noqa: B018 - authenticates
        except AuthenticationFailed:
            throttle = AuthFailureThrottle()
            if not throttle.allow_request(request, self):
                self.throttled(request, throttle.wait())  # type: ignore[attr-defined]
            raise
