"""Bench-only settings: the service's settings with ``_stack_ping``'s extra ``SELECT 1`` URL."""

from labeling.settings import *  # noqa: F403

ROOT_URLCONF = "_stack_ping"
