"""Selectors that cache whole-pool figures (the pool figures, a stochastic strategy's draw) start each test cold."""

from __future__ import annotations

import pytest
from django.core.cache import cache


@pytest.fixture(autouse=True)
def _empty_cache():
    cache.clear()
    yield
    cache.clear()
