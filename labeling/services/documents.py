"""Document ingestion: validated, deduplicated by external_id, bulk-inserted, holdout drawn by hash.

``document_bulk_create`` is the one write path for documents: the REST endpoint and the file
importer (chunks of 1,000 rows) both call it, so it must stay a handful of queries per call.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction

from labeling.models import Document, Project, Split, text_hash
from labeling.services.dispatch import TaskName, enqueue
from labeling.services.errors import ExternalIdConflictError
from labeling.services.events import Event, publish
from labeling.services.overlap import labels_required_for
from labeling.services.sampling import seeded_draw

MAX_TEXT_CHARS = 100_000
MAX_EXTERNAL_ID_CHARS = 255
MAX_ITEMS_PER_CALL = 1_000
# What a known external_id sent with a different text does: "error" (409, nothing stored) or "skip"
# (the stored document is kept and the result says so). The text is never overwritten: labels,
# predictions and the holdout draw belong to the text they were made for.
ON_CONFLICT = ("error", "skip")
_CONFLICT_RETRIES = 3


def text_problem(value: Any, *, max_chars: int = MAX_TEXT_CHARS, allow_blank: bool = False) -> str | None:
    """Why ``value`` cannot be stored as text, or None. PostgreSQL rejects NUL and lone surrogates."""
    if not isinstance(value, str):
        return "must be a string"
    if "\x00" in value:
        return "must not contain NUL characters"
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return "must not contain unpaired surrogate characters"
    if not allow_blank and not value.strip():
        return "must not be empty or whitespace only"
    # The limit counts the text as stored (never stripped): padding is characters too.
    if len(value) > max_chars:
        return f"must be at most {max_chars:,} characters including whitespace (got {len(value):,})"
    return None


def _json_problem(value: Any, path: str = "metadata", depth: int = 0) -> str | None:
    """First string inside a JSON value that PostgreSQL's jsonb would refuse (NUL, lone surrogate)."""
    if depth > 32:
        return f"{path} is nested too deeply"
    if isinstance(value, str):
        problem = text_problem(value, max_chars=10**9, allow_blank=True)
        return f"{path} {problem}" if problem else None
    if isinstance(value, Mapping):
        for key, item in value.items():
            found = _json_problem(str(key), f"{path} key", depth + 1) or _json_problem(
                item, f"{path}.{key}", depth + 1
            )
            if found:
                return found
    elif isinstance(value, list):
        for i, item in enumerate(value):
            found = _json_problem(item, f"{path}[{i}]", depth + 1)
            if found:
                return found
    elif value is not None and not isinstance(value, (bool, int, float)):
        return f"{path} must be JSON"
    return None


def item_problems(item: Any) -> dict[str, str]:
    """Per-field reasons one incoming item is invalid (empty when it is fine)."""
    if not isinstance(item, Mapping):
        return {"item": "must be an object with a 'text' field"}
    problems: dict[str, str] = {}
    unknown = set(item) - {"text", "external_id", "metadata"}
    if unknown:
        problems["item"] = f"unknown fields {sorted(unknown)}"
    if "text" not in item:
        problems["text"] = "is required"
    elif (why := text_problem(item["text"])) is not None:
        problems["text"] = why
    external_id = item.get("external_id")
    if external_id is not None:
        why = text_problem(external_id, max_chars=MAX_EXTERNAL_ID_CHARS)
        if why is None and len(external_id) > MAX_EXTERNAL_ID_CHARS:
            why = f"must be at most {MAX_EXTERNAL_ID_CHARS} characters"
        if why:
            problems["external_id"] = why
    metadata = item.get("metadata", {})
    if metadata is not None and not isinstance(metadata, Mapping):
        problems["metadata"] = "must be an object"
    elif metadata and (why := _json_problem(metadata)):
        problems["metadata"] = why
    return problems


def holdout_draw(*, seed: int, content_hash: str, fraction: float) -> bool:
    """Seeded, deterministic: the same text in the same project always lands on the same side."""
    return seeded_draw(f"{seed}:{content_hash}", fraction)


def _validated(items: Iterable[Any]) -> list[Mapping[str, Any]]:
    items = list(items)
    if not items:
        raise ValidationError({"items": "send at least one document"})
    if len(items) > MAX_ITEMS_PER_CALL:
        raise ValidationError(
            {"items": f"at most {MAX_ITEMS_PER_CALL:,} documents per request (got {len(items):,})"}
        )
    for index, item in enumerate(items):
        problems = item_problems(item)
        if problems:
            # The first bad item rejects the whole call: nothing is stored.
            raise ValidationError({f"items[{index}].{field}": reason for field, reason in problems.items()})
    return items


def _conflict(index: int, external_id: str, stored: str) -> ExternalIdConflictError:
    return ExternalIdConflictError(
        f"items[{index}]: external_id {external_id!r} is already {stored} with a different text; "
        "nothing was stored (send on_conflict=skip to keep the stored text, or use a new external_id)",
        fields={f"items[{index}].text": f"differs from the text stored for external_id {external_id!r}"},
    )


def _insert(project: Project, items: list[Mapping[str, Any]], on_conflict: str) -> list[tuple[Document, bool]]:
    wanted = {item["external_id"] for item in items if item.get("external_id") is not None}
    existing: dict[str, Document] = {}
    if wanted:
        existing = {
            d.external_id: d
            for d in Document.objects.filter(project=project, external_id__in=wanted).defer("text")
        }
    results: list[tuple[Document, bool] | None] = []
    new_docs: list[Document] = []
    first_index: dict[str, int] = {}  # a repeated external_id in one call points at its first item
    for index, item in enumerate(items):
        external_id = item.get("external_id")
        content_hash = text_hash(item["text"])
        if external_id is not None and external_id in existing:
            stored = existing[external_id]
            if stored.content_hash != content_hash and on_conflict == "error":
                raise _conflict(index, external_id, f"stored as document {stored.pk}")
            results.append((stored, False))
            continue
        if external_id is not None and external_id in first_index:
            first = results[first_index[external_id]]
            assert first is not None  # the first item with this external_id was a new document
            if first[0].content_hash != content_hash and on_conflict == "error":
                raise _conflict(index, external_id, f"used by items[{first_index[external_id]}]")
            results.append(None)
            continue
        holdout = holdout_draw(
            seed=project.seed, content_hash=content_hash, fraction=project.holdout_fraction
        )
        split = Split.HOLDOUT if holdout else Split.POOL
        doc = Document(
            project=project,
            external_id=external_id,
            text=item["text"],
            content_hash=content_hash,
            metadata=dict(item.get("metadata") or {}),
            split=split,
            labels_required=labels_required_for(project, split=split, content_hash=content_hash),
        )
        if external_id is not None:
            first_index[external_id] = len(results)
        new_docs.append(doc)
        results.append((doc, True))
    if new_docs:
        Document.objects.bulk_create(new_docs, batch_size=MAX_ITEMS_PER_CALL)
    filled: list[tuple[Document, bool]] = []
    for item, result in zip(items, results, strict=True):
        if result is None:
            result = (results[first_index[item["external_id"]]][0], False)  # type: ignore[index]
        filled.append(result)
    return filled


def document_bulk_create(
    *, project: Project, items: Iterable[Any], on_conflict: str = "error"
) -> list[tuple[Document, bool]]:
    """Store new documents; an external_id seen before returns the stored document, never a copy.

    All or nothing: one invalid item raises ``ValidationError`` naming ``items[i].field``. A known
    external_id sent with a different text raises ``ExternalIdConflictError`` (``on_conflict="error"``)
    or returns the stored document unchanged (``"skip"``; ``document_text_differs`` tells them apart).
    Scoring of the new documents is enqueued once per call, after commit.
    """
    if on_conflict not in ON_CONFLICT:
        raise ValidationError({"on_conflict": f"one of {', '.join(ON_CONFLICT)}"})
    validated = _validated(items)
    for attempt in range(_CONFLICT_RETRIES):
        try:
            with transaction.atomic():
                results = _insert(project, validated, on_conflict)
                if any(created for _, created in results):
                    enqueue(TaskName.SCORE_PENDING, args=(project.id,), countdown=2)
                    new_ids = [doc.pk for doc, created in results if created]
                    publish(Event.DOCUMENTS_INGESTED,
                            {"project_id": project.id, "count": len(new_ids), "document_ids": new_ids},
                            project=project.id)  # by id: an import holds its Project row for hours
                return results
        except IntegrityError:
            # A concurrent request stored one of these external_ids between our read and insert:
            # read again, the stored copy now wins.
            if attempt == _CONFLICT_RETRIES - 1:
                raise
    raise AssertionError("unreachable")


def document_text_differs(document: Document, text: str) -> bool:
    """Whether ``text`` is not the text stored in ``document`` (compared by its content hash)."""
    return document.content_hash != text_hash(text)
