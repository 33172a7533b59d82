"""manage.py token_revoke USER [--client NAME]: delete a user's API key (every key without --client)."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser

from labeling.services.tokens import token_revoke


class Command(BaseCommand):
    help = "Revoke a user's API key for one client, or all of them."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("username")
        parser.add_argument("--client", default=None)

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            user = get_user_model()._default_manager.get_by_natural_key(options["username"])
        except get_user_model().DoesNotExist:
            raise CommandError(f"no user {options['username']!r}") from None
        deleted = token_revoke(user=user, client=options["client"])
        self.stdout.write(f"revoked {deleted} token(s) of {user.get_username()}")
