"""The services' named errors, in one light module (no torch, no modelsvc) that views import directly.

``ServiceConflict`` is "cannot do that now": the API answers 409 with the error's ``code``. The other
errors are for the workers: a task retries a transient one (``RunLockedError``, ``ScoringBusyError``)
or records a permanent one on the run (``TrainingDataError``).
"""

from __future__ import annotations


class ServiceConflict(Exception):
    """The request is valid but the project's state does not allow it now (HTTP 409)."""

    code = "conflict"

    def __init__(self, message: str = "", *, fields: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.fields = fields or {}


class ExternalIdConflictError(ServiceConflict):
    """A known external_id was sent with a different text (the stored document is not changed)."""

    code = "external_id_conflict"


class NoChampionError(ServiceConflict):
    """The project has no champion model yet (label more documents first)."""

    code = "no_model"


class PromotionError(ServiceConflict):
    """This model version cannot be promoted."""


class RollbackError(ServiceConflict):
    """There is no earlier champion to roll back to."""


class TrainingDataError(ValueError):
    """The labels cannot train a model yet (e.g. a single class)."""


class RunLockedError(Exception):
    """The run's row is locked for a moment (a trigger being counted on it): retry shortly."""


class ScoringBusyError(Exception):
    """Another process is scoring this project right now (transient: retry shortly)."""
