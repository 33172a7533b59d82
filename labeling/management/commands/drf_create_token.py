"""The old ``manage.py drf_create_token USER`` keeps working: it now creates a hashed, expiring key."""

from __future__ import annotations

from typing import Any

from django.core.management.base import CommandParser

from labeling.management.commands.token_create import Command as TokenCreate


class Command(TokenCreate):
    help = "Same as token_create (kept for scripts written for DRF's plain tokens)."

    def add_arguments(self, parser: CommandParser) -> None:
        super().add_arguments(parser)
        parser.add_argument("-r", "--reset", action="store_true", help="accepted; every call makes a new key")

    def handle(self, *args: Any, **options: Any) -> None:
        super().handle(*args, **options)
