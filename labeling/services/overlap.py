"""The overlap policy: how many annotators label each document, applied to rows.

A document's ``labels_required`` is decided when it is stored, from the project's policy
(``overlap``, ``overlap_scope``, ``overlap_share``); a policy change re-applies it to every document
and re-opens (or closes) documents whose label count no longer matches, so the queue, which reads
``is_labeled`` only, follows at once.
"""

from __future__ import annotations

from collections import defaultdict

from django.db import transaction
from django.db.models import Count, F, OuterRef, Subquery
from django.db.models.functions import Coalesce

from labeling.models import Annotation, Document, OverlapScope, Prediction, Project, Split
from labeling.services.planner import planner_statistics_refresh
from labeling.services.sampling import seeded_draw

#: The policy fields whose change re-applies the overlap to the stored documents.
OVERLAP_FIELDS = ("overlap", "overlap_scope", "overlap_share")
_UPDATE_CHUNK = 5_000


def _share_draw(*, seed: int, content_hash: str, share: float) -> bool:
    """Seeded, deterministic and independent of the holdout draw: the same text always lands alike."""
    return seeded_draw(f"{seed}:overlap:{content_hash}", share)


def labels_required_for(project: Project, *, split: str, content_hash: str) -> int:
    """How many annotators label a document of ``split`` with this text under the project's policy."""
    if project.overlap <= 1:
        return 1
    if project.overlap_scope == OverlapScope.ALL:
        return project.overlap
    if project.overlap_scope == OverlapScope.HOLDOUT:
        return project.overlap if split == Split.HOLDOUT else 1
    if split == Split.POOL and _share_draw(seed=project.seed, content_hash=content_hash, share=project.overlap_share):
        return project.overlap
    return 1


@transaction.atomic
def overlap_apply(*, project: Project) -> int:
    """Re-apply the overlap policy to every document of ``project``; returns the documents changed.

    Documents whose labels now reach (or no longer reach) their requirement close (or re-open), and
    the queue's ``Prediction.in_queue`` flag follows.
    """
    wanted: dict[int, list[int]] = defaultdict(list)
    rows = Document.objects.filter(project=project).values_list("pk", "split", "content_hash", "labels_required")
    for pk, split, content_hash, current in rows.iterator(chunk_size=_UPDATE_CHUNK):
        required = labels_required_for(project, split=split, content_hash=content_hash)
        if required != current:
            wanted[required].append(pk)
    changed = 0
    for required, ids in wanted.items():
        for start in range(0, len(ids), _UPDATE_CHUNK):
            changed += Document.objects.filter(pk__in=ids[start : start + _UPDATE_CHUNK]).update(
                labels_required=required
            )
    if changed:
        given = (
            Annotation.objects.filter(document=OuterRef("pk")).values("document").annotate(n=Count("pk")).values("n")
        )
        docs = Document.objects.filter(project=project).annotate(given=Coalesce(Subquery(given), 0))
        close = list(docs.filter(is_labeled=False, given__gte=F("labels_required")).values_list("pk", flat=True))
        reopen = list(docs.filter(is_labeled=True, given__lt=F("labels_required")).values_list("pk", flat=True))
        Document.objects.filter(pk__in=close).update(is_labeled=True)
        Document.objects.filter(pk__in=reopen).update(is_labeled=False)
        flipped = Prediction.objects.filter(document_id__in=close, in_queue=True).update(in_queue=False)
        flipped += Prediction.objects.filter(document_id__in=reopen, document__split=Split.POOL).update(in_queue=True)
        # The queue's statements plan on these columns: a change on every document of a large project left
        # the planner's old statistics in place until autovacuum, and the queue's p95 at twice its steady state
        # (docs/BENCHMARKS.md, "Overlap on a 100,000-document project").
        planner_statistics_refresh(model=Document, rows_written=changed)
        planner_statistics_refresh(model=Prediction, rows_written=flipped)
    return changed

