"""Claims from a JSON file ``{username: {claim: value, ..., "id_token": {overrides}}}`` read per request.

``id_token`` overrides claims of the signed ID token only (e.g. ``aud``): how a test makes the provider
issue a token for another client, the way a misconfigured or hostile provider could.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from oauth2_provider.oauth2_validators import OAuth2Validator


def _entry(request: Any) -> dict[str, Any]:
    data = json.loads(Path(os.environ["OIDC_PROVIDER_CLAIMS"]).read_text())
    return dict(data.get(request.user.get_username(), {}))


class ClaimsFileValidator(OAuth2Validator):
    oidc_claim_scope = None  # every claim of the file, whatever the scopes asked for

    def get_additional_claims(self, request: Any) -> dict[str, Any]:
        claims = _entry(request)
        claims.pop("id_token", None)
        return claims

    def get_id_token_dictionary(self, token: Any, token_handler: Any, request: Any) -> tuple[dict[str, Any], Any]:
        claims, expiration = super().get_id_token_dictionary(token, token_handler, request)
        claims.update(_entry(request).get("id_token", {}))
        return claims, expiration
