"""The API's JSON parser: bounded in size (413) and in nesting depth (400), on every view.

Kept apart from ``base`` (which imports DRF's views) because DRF imports the parser classes named in
``REST_FRAMEWORK`` while its own views module is still loading.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from rest_framework import exceptions as drf
from rest_framework import status
from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser
from rest_framework.utils import json as drf_json

from labeling import jsonbounds


class PayloadTooLarge(drf.APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_detail = "the request body is too large"
    default_code = "payload_too_large"


class LimitedJSONParser(JSONParser):
    """DRF's JSON parser with two bounds: DATA_UPLOAD_MAX_MEMORY_SIZE (413; DRF reads the stream
    itself, so Django's own check never runs) and ``jsonbounds.MAX_JSON_DEPTH`` nesting (400)."""

    def parse(self, stream: Any, media_type: str | None = None, parser_context: Any = None) -> Any:
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        request = (parser_context or {}).get("request")
        if limit is not None and request is not None:
            try:
                declared = int(request.META.get("CONTENT_LENGTH") or 0)
            except ValueError:
                declared = 0
            if declared > limit:
                raise PayloadTooLarge(f"the body is {declared:,} bytes; the limit is {limit:,}")
        encoding = (parser_context or {}).get("encoding", settings.DEFAULT_CHARSET)
        try:
            raw = stream.read(limit + 1 if limit is not None else -1) if stream is not None else b""
            if limit is not None and len(raw) > limit:  # a chunked body declares no length
                raise PayloadTooLarge(f"the body is over the {limit:,}-byte limit")
            return jsonbounds.loads(
                raw.decode(encoding), parse_constant=drf_json.strict_constant if self.strict else None
            )
        except ValueError as exc:  # bad JSON, too deep, bad encoding, an integer of 5,000 digits ...
            raise ParseError(f"JSON parse error - {exc}") from None
