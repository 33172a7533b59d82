"""One JSON error shape for every API failure: ``{"error": {"code", "message", "fields"}}``.

DRF's own exceptions, Django's (validation, permission, not found, body too big), the services'
named errors and anything unexpected (500, logged) all leave through ``exception_handler``.
"""

from __future__ import annotations

import logging
from typing import Any

from django.conf import settings
from django.core import exceptions as dj
from django.db import IntegrityError, InterfaceError, OperationalError
from django.http import Http404, HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from rest_framework import exceptions as drf
from rest_framework import status
from rest_framework.response import Response
from rest_framework.views import set_rollback

from labeling.api.parsers import PayloadTooLarge
from labeling.services.annotations import AnnotationConflictError
from labeling.services.assignments import AssignmentClosedError, LeaseExpiredError
from labeling.services.errors import ServiceConflict
from labeling.services.memberships import MembershipNotFoundError

logger = logging.getLogger(__name__)


class Conflict(drf.APIException):
    status_code = status.HTTP_409_CONFLICT
    default_detail = "the request conflicts with the current state"
    default_code = "conflict"


def error_body(code: str, message: str, fields: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "fields": fields or {}}}


def _flatten(detail: Any) -> str:
    if isinstance(detail, dict):
        return "; ".join(f"{key}: {_flatten(value)}" for key, value in detail.items())
    if isinstance(detail, list):
        return "; ".join(_flatten(item) for item in detail)
    return str(detail)


def _fields(detail: Any) -> dict[str, Any]:
    if not isinstance(detail, dict):
        return {}
    out: dict[str, Any] = {}
    for key, value in detail.items():
        if key == "non_field_errors":
            continue
        out[str(key)] = _flatten(value)
    return out


def _validation(detail: Any) -> Response:
    fields = _fields(detail)
    if fields:
        message = "invalid input: " + "; ".join(f"{k}: {v}" for k, v in fields.items())
    else:
        message = "invalid input: " + _flatten(detail)
    return Response(error_body("invalid", message, fields), status=status.HTTP_400_BAD_REQUEST)


def _django_validation(exc: dj.ValidationError) -> Response:
    if hasattr(exc, "error_dict"):
        return _validation({k: [str(m) for m in v] for k, v in exc.message_dict.items()})
    return _validation(exc.messages)


# Service errors the user can cause, and what they answer.
_CONFLICTS: dict[type[Exception], tuple[str, int]] = {
    LeaseExpiredError: ("lease_expired", status.HTTP_409_CONFLICT),
    AssignmentClosedError: ("assignment_closed", status.HTTP_409_CONFLICT),
    AnnotationConflictError: ("already_labeled", status.HTTP_409_CONFLICT),
    MembershipNotFoundError: ("not_found", status.HTTP_404_NOT_FOUND),
}


def _named_service_error(exc: Exception) -> tuple[str, int] | None:
    for klass, answer in _CONFLICTS.items():
        if isinstance(exc, klass):
            return answer
    if isinstance(exc, ServiceConflict):
        return exc.code, status.HTTP_409_CONFLICT
    return None


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response:
    """DRF EXCEPTION_HANDLER: every failure becomes the one error shape; nothing half-written stays."""
    set_rollback()
    if isinstance(exc, dj.RequestDataTooBig):
        exc = PayloadTooLarge()
    if isinstance(exc, dj.SuspiciousOperation):  # too many form fields, a malformed multipart body ...
        return Response(error_body("bad_request", str(exc) or "malformed request"), status=400)
    if isinstance(exc, drf.ValidationError):
        return _validation(exc.detail)
    if isinstance(exc, dj.ValidationError):
        return _django_validation(exc)
    if isinstance(exc, drf.ParseError):
        return Response(error_body("invalid_json", f"the body is not valid JSON: {exc.detail}"), status=400)
    if isinstance(exc, Http404 | dj.ObjectDoesNotExist):
        message = str(exc) or "not found"
        return Response(error_body("not_found", message), status=404)
    if isinstance(exc, dj.PermissionDenied):
        return Response(error_body("permission_denied", str(exc) or "permission denied"), status=403)
    if isinstance(exc, drf.APIException):
        code = exc.get_codes() if isinstance(exc.get_codes(), str) else exc.default_code
        headers: dict[str, str] = {}
        if getattr(exc, "auth_header", None):
            headers["WWW-Authenticate"] = exc.auth_header  # type: ignore[attr-defined]
        if getattr(exc, "wait", None) is not None:
            headers["Retry-After"] = str(int(exc.wait))  # type: ignore[attr-defined]
        return Response(error_body(str(code), _flatten(exc.detail)), status=exc.status_code, headers=headers)
    named = _named_service_error(exc)
    if named is not None:
        code, http_status = named
        return Response(error_body(code, str(exc), getattr(exc, "fields", None)), status=http_status)
    if isinstance(exc, IntegrityError):
        # A concurrent request changed the same rows; the client may retry.
        logger.warning("integrity error answered 409: %s", exc)
        return Response(
            error_body("conflict", "a concurrent change conflicted with this request; retry"), status=409
        )
    if isinstance(exc, OperationalError | InterfaceError):
        return _database_unavailable(exc)
    logger.exception("unhandled API error", exc_info=exc)
    return Response(error_body("server_error", "internal server error"), status=500)


# PostgreSQL's SQLSTATE for a statement cancelled by statement_timeout (labeling/db.py).
QUERY_CANCELED = "57014"


def _database_unavailable(exc: Exception) -> Response:
    """503 with Retry-After: the database is unreachable (restart, failover) or the query ran too long.

    The transaction was rolled back, so nothing was stored: the client may send the same request again.
    The driver's message (host, user) stays in the log, never in the answer.
    """
    cause = getattr(exc, "__cause__", None)
    timed_out = getattr(cause, "sqlstate", None) == QUERY_CANCELED or getattr(cause, "pgcode", None) == QUERY_CANCELED
    if timed_out:
        code, message = "query_timeout", "the request took too long and was cancelled; retry later"
    else:
        code, message = "database_unavailable", "the database is unavailable; retry shortly"
    logger.warning("API answered 503 (%s): %s", code, exc)
    retry_after = str(settings.DB_RETRY_AFTER_S)
    return Response(error_body(code, message), status=status.HTTP_503_SERVICE_UNAVAILABLE,
                    headers={"Retry-After": retry_after})


def _is_api(request: HttpRequest) -> bool:
    return request.path.startswith("/api/")


@csrf_exempt  # an unknown path answers 404 JSON for every method, not Django's HTML CSRF page
def json_not_found(request: HttpRequest, *args: Any, **kwargs: Any) -> JsonResponse:
    """Catch-all for unknown /api/ paths (and a handler404 for the root URLconf)."""
    return JsonResponse(error_body("not_found", f"no API endpoint at {request.path}"), status=404)


def handler404(request: HttpRequest, exception: Exception | None = None) -> Any:
    if _is_api(request):
        return json_not_found(request)
    from django.views.defaults import page_not_found

    return page_not_found(request, exception)  # type: ignore[arg-type]


def handler500(request: HttpRequest) -> Any:
    if _is_api(request):
        return JsonResponse(error_body("server_error", "internal server error"), status=500)
    from django.views.defaults import server_error

    return server_error(request)
