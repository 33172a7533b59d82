"""Agreement for multi-label projects: the answers' sets as ``modelsvc.set_agreement`` inputs, figures back.

The overlapped items (2+ current answers) become an (N, R, C) indicator array (1: the annotator put
label c in the set, 0: left it out, -1 on every label where they did not answer). Per label: alpha and
Fleiss' kappa of that label's 0/1 indicators; overall: the same pooled over every (item, label) unit
(``alpha``, ``fleiss_kappa``, so the dashboard's headline reads the same for both task types) and
Krippendorff's alpha with the MASI set distance (``masi_alpha``). Per annotator and per pair: Cohen's
kappa of their 0/1 judgements on the (item, label) units they shared (``modelsvc.agreement`` on a
two-value ratings matrix), whose intervals resample those units.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import numpy as np

from labeling.models import Annotation, Project
from modelsvc.agreement import Estimate, agreement_report
from modelsvc.set_agreement import set_agreement_report

MISSING = -1


def set_ratings(*, project: Project) -> tuple[np.ndarray, list[int], list[str]]:
    """(N, R, C) indicators of the overlapped items, their document ids and the annotators' usernames."""
    space = project.label_space
    given: dict[int, dict[str, str]] = defaultdict(dict)
    rows = Annotation.objects.filter(project=project)
    for doc_id, username, label in rows.values_list("document_id", "annotator__username", "label"):
        if space.is_current(label):
            given[doc_id][username] = label
    docs = sorted(d for d, by in given.items() if len(by) >= 2)
    people = sorted({u for d in docs for u in given[d]})
    column = {u: i for i, u in enumerate(people)}
    out = np.full((len(docs), len(people), len(space)), MISSING, dtype=np.int64)
    for i, doc_id in enumerate(docs):
        by = given[doc_id]
        answers = list(by.values())
        ind = space.indicators(answers)  # (k, C)
        for k, username in enumerate(by):
            out[i, column[username]] = ind[k]
    return out, docs, people


def set_agreement(*, project: Project, n_boot: int, figure: Any) -> dict[str, Any]:
    """The agreement payload of ``labeling.selectors.agreement.project_agreement`` for a multi-label project."""
    indicators, docs, people = set_ratings(project=project)
    names = project.label_space.names
    out: dict[str, Any] = {"n_items": len(docs), "n_annotators": len(people), "task_type": project.task_type}
    if not docs:
        empty = figure(Estimate(None, None, None, 0))
        out.update(
            alpha=empty,
            fleiss_kappa=empty,
            masi_alpha=empty,
            per_label={},
            per_label_detail={},
            per_annotator={},
            pairwise=[],
        )
        return out
    report = set_agreement_report(indicators, seed=project.seed, n_boot=n_boot)
    # Per annotator / pair: every (item, label) unit is one 0/1 judgement per annotator.
    units = indicators.transpose(0, 2, 1).reshape(-1, len(people))  # (N*C, R)
    binary = agreement_report(units, 2, seed=project.seed, n_boot=n_boot)
    out.update(
        alpha=figure(report.alpha),
        fleiss_kappa=figure(report.fleiss_kappa),
        masi_alpha=figure(report.masi_alpha),
        per_label={names[c]: figure(label.alpha) for c, label in enumerate(report.per_label)},
        per_label_detail={
            names[c]: {"alpha": figure(label.alpha), "fleiss_kappa": figure(label.fleiss_kappa), "share": label.share}
            for c, label in enumerate(report.per_label)
        },
        per_annotator={people[r]: figure(est) for r, est in enumerate(binary.per_rater)},
        pairwise=[
            {"a": people[a], "b": people[b], **figure(est)} for (a, b), est in sorted(binary.pairwise_kappa.items())
        ],
        method="alpha and fleiss_kappa pool every (item, label) 0/1 judgement; masi_alpha compares whole sets; "
        "per_label: each label's 0/1 indicators; intervals resample items",
    )
    return out
