"""Small, real labeled data for tests: rt-snippets (Rotten Tomatoes, fresh / rotten) from modelsvc."""

from __future__ import annotations

import functools
import random

from django.contrib.auth.models import AbstractBaseUser
from django.utils import timezone

from labeling.models import Annotation, Document, Project


@functools.cache
def _rt_snippets() -> tuple[tuple[str, str], ...]:
    from modelsvc.datasets import load_builtin

    texts, labels = load_builtin("rt-snippets")
    return tuple(zip(texts, labels, strict=True))


def rt_snippets(n: int, *, seed: int = 0) -> list[tuple[str, str]]:
    """``n`` distinct (text, label) pairs, half fresh and half rotten, in a seeded order."""
    rng = random.Random(seed)
    rows = list(_rt_snippets())
    rng.shuffle(rows)
    fresh = [r for r in rows if r[1] == "fresh"][: (n + 1) // 2]
    rotten = [r for r in rows if r[1] == "rotten"][: n // 2]
    out = fresh + rotten
    rng.shuffle(out)
    return out


def documents_create(project: Project, rows: list[tuple[str, str]], *, split: str = "pool") -> list[Document]:
    """Documents straight through the ORM, the gold label kept for the test to label with later."""
    docs = [Document(project=project, text=text, gold_label=label, split=split) for text, label in rows]
    for doc in docs:
        doc.content_hash = ""
        doc.save()
    return docs


def label(documents: list[Document], annotator: AbstractBaseUser, *, flip: bool = False) -> None:
    """Annotate with the gold label (or the other one, to make a deliberately bad model)."""
    now = timezone.now()
    other = {"fresh": "rotten", "rotten": "fresh"}
    Annotation.objects.bulk_create(
        [
            Annotation(
                document=d,
                project_id=d.project_id,
                annotator=annotator,
                label=other[d.gold_label] if flip else d.gold_label,
                created_at=now,
                updated_at=now,
            )
            for d in documents
        ]
    )
    Document.objects.filter(pk__in=[d.pk for d in documents]).update(is_labeled=True)
