"""Annotator pages and dashboard (filled in by the UI work)."""

from django.urls import path  # noqa: F401

app_name = "ui"
urlpatterns: list = []
