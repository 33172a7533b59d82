"""Agreement and annotator quality: the project's labels as ``modelsvc.agreement`` inputs, and its figures back.

Agreement is measured on the overlapped items only (documents with 2+ labels): a ratings matrix
(N items, R annotators) of label indices, -1 where an annotator did not label an item. Annotator
quality compares each annotator with three references where they exist: the consensus of the
OTHER annotators of an item (leave-one-out, so nobody is measured against a majority they are part
of), reviewers' decisions, and imported gold labels; plus a confusion between labels (against the
final label) and throughput.

The bootstrap is the expensive part: figures are cached for a minute per project and label state,
so a dashboard polled by a team does not recompute them on every poll.
"""

from __future__ import annotations

import hashlib
import statistics
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

import numpy as np
from django.core.cache import cache

from labeling.models import Annotation, Document, Project, ReviewDecision
from labeling.selectors.consensus import final_labels
from labeling.selectors.set_agreement import set_agreement
from modelsvc.agreement import Estimate, agreement_report, agreement_with_reference

#: Fewer overlapped items than this: the figures say "too few overlapped items" instead of a number.
MIN_ITEMS = 10
CACHE_SECONDS = 60
TOO_FEW = "too few overlapped items"


@dataclass(frozen=True)
class Ratings:
    matrix: np.ndarray  # (N, R) label indices, -1 where not rated
    document_ids: list[int]  # (N,)
    annotators: list[str]  # (R,) usernames
    n_labels: int


def ratings_matrix(*, project: Project, split: str | None = None) -> Ratings:
    """The overlapped items (2+ labels) of ``project`` as an (N, R) ratings matrix."""
    space = project.label_space
    rows = Annotation.objects.filter(project=project)
    if split is not None:
        rows = rows.filter(document__split=split)
    given: dict[int, dict[str, int]] = defaultdict(dict)
    for doc_id, username, label in rows.values_list("document_id", "annotator__username", "label"):
        if label in space:
            given[doc_id][username] = space.index(label)
    docs = sorted(d for d, by in given.items() if len(by) >= 2)
    people = sorted({u for d in docs for u in given[d]})
    column = {u: i for i, u in enumerate(people)}
    matrix = np.full((len(docs), len(people)), -1, dtype=np.int64)
    for i, doc_id in enumerate(docs):
        for username, index in given[doc_id].items():
            matrix[i, column[username]] = index
    return Ratings(matrix, docs, people, len(space))


def _figure(est: Estimate) -> dict[str, Any]:
    enough = est.n_items >= MIN_ITEMS and est.value is not None
    return {**est.as_dict(), "enough": enough, "note": None if enough else TOO_FEW}


def _state_key(project: Project, kind: str, n_boot: int) -> str:
    labels = Annotation.objects.filter(project=project)
    state = (
        labels.count(),
        labels.order_by("-updated_at").values_list("updated_at", flat=True).first(),
        ReviewDecision.objects.filter(project=project).count(),
        project.min_agreement,
    )
    digest = hashlib.sha1(repr(state).encode()).hexdigest()[:16]
    return f"alabel:{kind}:{project.pk}:{n_boot}:{digest}"


def project_agreement(*, project: Project, n_boot: int = 1000) -> dict[str, Any]:
    """Krippendorff's alpha, Fleiss' kappa, pairwise Cohen's kappa, per label and per annotator, with intervals."""
    key = _state_key(project, "agreement", n_boot)
    cached = cache.get(key)
    if cached is not None:
        return cached
    if project.label_space.answer_field == "labels":  # a set per answer: labeling/selectors/set_agreement.py
        out = set_agreement(project=project, n_boot=n_boot, figure=_figure)
        out["min_items"] = MIN_ITEMS
        out["enough"] = out["n_items"] >= MIN_ITEMS
        out["note"] = None if out["enough"] else TOO_FEW
        cache.set(key, out, CACHE_SECONDS)
        return out
    ratings = ratings_matrix(project=project)
    n = len(ratings.document_ids)
    out = {"n_items": n, "n_annotators": len(ratings.annotators), "min_items": MIN_ITEMS}
    if n == 0:
        empty = _figure(Estimate(None, None, None, 0))
        out.update(alpha=empty, fleiss_kappa=empty, per_label={}, per_annotator={}, pairwise=[])
    else:
        report = agreement_report(ratings.matrix, ratings.n_labels, seed=project.seed, n_boot=n_boot)
        names = project.label_space.names
        out.update(
            alpha=_figure(report.alpha),
            fleiss_kappa=_figure(report.fleiss_kappa),
            per_label={names[c]: _figure(est) for c, est in enumerate(report.per_label)},
            per_annotator={ratings.annotators[r]: _figure(est) for r, est in enumerate(report.per_rater)},
            pairwise=[
                {"a": ratings.annotators[a], "b": ratings.annotators[b], **_figure(est)}
                for (a, b), est in sorted(report.pairwise_kappa.items())
            ],
        )
    out["enough"] = n >= MIN_ITEMS
    out["note"] = None if out["enough"] else TOO_FEW
    cache.set(key, out, CACHE_SECONDS)
    return out


def _versus(labels: list[int], reference: list[int], n_labels: int, seed: int, n_boot: int) -> dict[str, Any]:
    if not labels:
        return {"n_items": 0, "accuracy": None, "kappa": None, "note": "no shared items"}
    ref = agreement_with_reference(np.array(labels), np.array(reference), n_labels, seed=seed, n_boot=n_boot)
    return {"n_items": len(labels), "accuracy": ref.accuracy.as_dict(), "kappa": ref.kappa.as_dict(), "note": None}


def annotator_quality(*, project: Project, n_boot: int = 500) -> dict[str, Any]:
    """Per annotator: agreement with the others' consensus, with reviewers and with gold; confusion; throughput."""
    key = _state_key(project, "quality", n_boot)
    cached = cache.get(key)
    if cached is not None:
        return cached
    space = project.label_space
    rows = list(
        Annotation.objects.filter(project=project)
        .order_by("id")
        .values_list("document_id", "annotator__username", "label", "duration_ms", "created_at")
    )
    by_doc: dict[int, list[tuple[str, str]]] = defaultdict(list)
    for doc_id, username, label, _, _ in rows:
        by_doc[doc_id].append((username, label))
    finals = final_labels(project=project)
    gold = dict(
        Document.objects.filter(project=project, gold_label__isnull=False).values_list("id", "gold_label")
    )
    decided = {doc_id: f.label for doc_id, f in finals.items() if f.decided_by == "reviewer"}
    pairs: dict[str, dict[str, tuple[list[int], list[int]]]] = defaultdict(
        lambda: {"consensus": ([], []), "reviewer": ([], []), "gold": ([], []), "final": ([], [])}
    )
    # A multi-label answer is judged label by label: each (item, label) is one 0/1 judgement, compared
    # with the reference's, so accuracy is the share of labels judged as the reference did.
    multi = space.answer_field == "labels"
    n_codes = 2 if multi else len(space)
    code_names = ["not given", "given"] if multi else list(space.names)

    def codes(stored: str) -> list[int]:
        return [int(v) for v in space.indicators([stored])[0]] if multi else [space.index(stored)]

    for doc_id, given in by_doc.items():
        for username, label in given:
            if not space.is_current(label):
                continue
            mine = codes(label)
            others = [other for name, other in given if name != username]
            refs = {
                "consensus": space.consensus(others, project.min_agreement).label if others else None,
                "reviewer": decided.get(doc_id),
                "gold": gold.get(doc_id),
                "final": finals[doc_id].label,
            }
            for kind, ref in refs.items():
                if ref is not None and space.is_current(ref):
                    pairs[username][kind][0].extend(mine)
                    pairs[username][kind][1].extend(codes(ref))
    durations: dict[str, list[int]] = defaultdict(list)
    counts: dict[str, int] = defaultdict(int)
    for _, username, _, duration_ms, _ in rows:
        counts[username] += 1
        if duration_ms is not None:
            durations[username].append(duration_ms)
    people = []
    for username in sorted(counts):
        mine = pairs[username]
        final_labels_, final_refs = mine["final"]
        confusion = np.zeros((n_codes, n_codes), dtype=np.int64)
        for lab, ref in zip(final_labels_, final_refs, strict=True):
            confusion[ref, lab] += 1
        spent = durations[username]
        people.append(
            {
                "annotator": username,
                "labels": counts[username],
                "median_seconds": statistics.median(spent) / 1000 if spent else None,
                "labels_per_hour": round(3600 * 1000 * len(spent) / sum(spent), 1) if spent and sum(spent) else None,
                "vs_consensus": _versus(*mine["consensus"], n_codes, project.seed, n_boot),
                "vs_reviewers": _versus(*mine["reviewer"], n_codes, project.seed, n_boot),
                "vs_gold": _versus(*mine["gold"], n_codes, project.seed, n_boot) if gold else None,
                "confusion": {"rows_are": "final label", "labels": code_names, "matrix": confusion.tolist()},
            }
        )
    out = {"annotators": people, "has_gold": bool(gold)}
    cache.set(key, out, CACHE_SECONDS)
    return out
