"""manage.py token_create USER [--client NAME] [--days N]: print a new API key (rotating that client's)."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser

from labeling.services.tokens import DEFAULT_CLIENT, token_create


class Command(BaseCommand):
    help = "Create (or rotate) a user's API key for one client and print it; only its digest is stored."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("username")
        parser.add_argument("--client", default=DEFAULT_CLIENT, help="which script or service holds the key")
        parser.add_argument("--days", type=int, default=None, help="lifetime (default TOKEN_TTL_DAYS; 0 = none)")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            user = get_user_model()._default_manager.get_by_natural_key(options["username"])
        except get_user_model().DoesNotExist:
            raise CommandError(f"no user {options['username']!r}") from None
        row, key = token_create(user=user, client=options["client"], ttl_days=options["days"])
        expiry = row.expiry.isoformat() if row.expiry else "never"
        self.stdout.write(
            f"Generated token {key} for user {user.get_username()} (client {row.client}, expires {expiry})"
        )
