"""Re-score 100,000 documents after a promotion, from the encoder cache.

    .venv/bin/python bench/rescore.py [--docs 100000]

The project holds ``--docs`` documents cycling through the ~18,000 unique rt-snippets + trec
texts (repeats keep their text, so the cache holds 18,000 vectors; every document is still scored
and written). A champion is trained on 1,000 gold labels; then ``model_version_rescore`` (the
RESCORE_POOL task's service) runs, continuation after continuation, until every document has a
prediction from it. Baseline (same run): scoring 2,000 documents whose vectors are not cached
(the encoder runs), extrapolated per document.
"""

from __future__ import annotations

import argparse
import json
import time

from _common import ensure_project, label_documents, labeled_corpus, machine, setup_django, timer, warm_cache

setup_django()

from labeling.models import Annotation, Document, Prediction, RunTrigger, TrainingRun
from labeling.selectors.models import champion_get
from labeling.services import modeling
from labeling.services.scoring import model_version_rescore
from labeling.services.training.runs import training_run_execute
from labeling.services.training.triggers import training_run_request

PROJECT = "bench 100k"


def ensure_champion(project) -> tuple[int, int]:
    """(run id, champion id): trained once on 1,000 labels, reused by later runs (and bench/queue.py)."""
    champion = champion_get(project_id=project.pk)
    run = TrainingRun.objects.filter(project=project, promoted=True).first()
    if champion is not None and run is not None:
        return run.pk, champion.pk
    if Annotation.objects.filter(document__project=project).count() < 1000:
        label_documents(project, 1000)
    run = training_run_request(project=project, trigger=RunTrigger.MANUAL)
    run = training_run_execute(run_id=run.pk)
    assert run is not None and run.promoted, run and run.error
    return run.pk, run.model_version_id


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--docs", type=int, default=100_000)
    args = parser.parse_args()
    print(json.dumps({"machine": machine()}))
    texts, _, _ = labeled_corpus()
    print(json.dumps({"setup": "encode cache", "texts": len(texts), "s": round(warm_cache(texts), 1)}))
    with timer() as t:
        project = ensure_project(PROJECT, args.docs)
    print(json.dumps({"setup": "documents", "docs": args.docs, "s": round(t["s"], 1)}))
    run_id, champion_id = ensure_champion(project)
    Prediction.objects.filter(model_version_id=champion_id).delete()  # as right after a promotion
    total = Document.objects.filter(project=project).count()
    calls = 0
    with timer() as t:
        while True:
            report = model_version_rescore(run_id=run_id, model_version_id=champion_id)
            calls += 1
            if not report.remaining:
                break
    scored = Prediction.objects.filter(model_version_id=champion_id).count()
    rate = scored / t["s"]
    print(json.dumps({"row": f"re-score {total:,} docs after promotion, warm cache", "scored": scored,
                      "wall_s": round(t["s"], 1), "docs_per_s": round(rate), "task_calls": calls}))
    # Baseline: the same scoring path on texts the cache has never seen.
    champion = champion_get(project_id=project.pk)
    classifier = modeling.classifier_for(champion)
    fresh = [f"{x} (unseen {time.time_ns()})" for x in texts[:2000]]
    with timer() as b:
        modeling.classifier_score(classifier, fresh, return_samples=True)
    base_rate = len(fresh) / b["s"]
    print(json.dumps({"row": "baseline: score 2,000 uncached docs (encoder runs)",
                      "docs_per_s": round(base_rate), "extrapolated_100k_s": round(100_000 / base_rate),
                      "warm_over_cold": round(rate / base_rate, 1)}))


if __name__ == "__main__":
    main()
