"""Start the test provider: ``python -m tests.support.oidc_provider.serve`` (environment below).

OIDC_PROVIDER_DB (SQLite path), OIDC_PROVIDER_CLAIMS (JSON file), OIDC_PROVIDER_USERS (JSON
``{username: password}``), OIDC_PROVIDER_CLIENT (JSON ``{client_id, client_secret, redirect_uri}``).
Prints ``listening <port>`` once it accepts connections.
"""

from __future__ import annotations

import json
import os
from socketserver import ThreadingMixIn
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

os.environ["DJANGO_SETTINGS_MODULE"] = "tests.support.oidc_provider.settings"


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _Quiet(WSGIRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the base class names it so
        pass


def main() -> None:
    import django

    django.setup()
    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from django.core.wsgi import get_wsgi_application
    from oauth2_provider.models import Application

    call_command("migrate", verbosity=0, interactive=False)
    for username, password in json.loads(os.environ["OIDC_PROVIDER_USERS"]).items():
        get_user_model().objects.create_user(username, password=password)
    client = json.loads(os.environ["OIDC_PROVIDER_CLIENT"])
    Application.objects.create(
        name="alabel", client_id=client["client_id"], client_secret=client["client_secret"],
        redirect_uris=client["redirect_uri"], client_type=Application.CLIENT_CONFIDENTIAL,
        authorization_grant_type=Application.GRANT_AUTHORIZATION_CODE, algorithm=Application.RS256_ALGORITHM,
        skip_authorization=True,
    )
    server = make_server("127.0.0.1", 0, get_wsgi_application(), server_class=_Server, handler_class=_Quiet)
    print(f"listening {server.server_port}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
