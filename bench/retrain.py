"""Retrain wall time: from the trigger to a promoted champion whose predictions cover the whole pool.

    .venv/bin/python bench/retrain.py [--labels 1000,5000] [--no-baseline]

A project of the ~18,000 unique rt-snippets + trec texts (8 labels) gets 1,000, then 5,000 gold
labels (bulk-written as annotations: set-up, not measured). Each step: ``training_run_request``,
then the TRAIN task and the RESCORE_POOL tasks it sends run in this process (the worker's code, no
broker), timed until the run is done. The encoder cache is warm (every text encoded once before),
as on a running service. Baseline (same run): the uncached encoding rate measured on 500 of the
texts, extrapolated to what each retrain would cost if the encoder ran again on the training texts
and on every re-scored document (no cache, or a fine-tuned encoder).
"""

from __future__ import annotations

import argparse
import json
import time

from _common import analyze, ensure_project, label_documents, labeled_corpus, machine, setup_django, timer, warm_cache

setup_django()


from labeling.models import Annotation, Document, Prediction, RunTrigger, TrainingRun
from labeling.replay.eager import EagerTasks
from labeling.selectors.models import champion_get
from labeling.services import modeling
from labeling.services.training.triggers import training_run_request
from workers.app import app


def retrain_once(project, eager: EagerTasks) -> dict:
    with timer() as t:
        run = training_run_request(project=project, trigger=RunTrigger.MANUAL)
        eager.drain()
    run.refresh_from_db()
    champion = champion_get(project_id=project.pk)
    total = Document.objects.filter(project=project).count()
    scored = Prediction.objects.filter(model_version=champion).count() if champion else 0
    mv = run.model_version
    timings = mv.calibration.get("timings_s", {}) if mv else {}
    return {
        "labels": Annotation.objects.filter(document__project=project).count(),
        "labels_used": run.labels_used,
        "wall_s": round(t["s"], 2), "status": run.status, "promoted": run.promoted,
        "model_version": mv.version if mv else None, "pool_scored": f"{scored}/{total}",
        "train_timings_s": {k: round(v, 2) for k, v in timings.items()},
        "error": run.error or None,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--labels", default="1000,5000")
    parser.add_argument("--no-baseline", action="store_true")
    parser.add_argument("--baseline-only", default="", help="skip the retrains; use these warm wall times, "
                        "e.g. 1000:236,5000:231 from an earlier run")
    args = parser.parse_args()
    print(json.dumps({"machine": machine()}))
    texts, _, _ = labeled_corpus()
    print(json.dumps({"setup": "encode cache", "texts": len(texts), "s": round(warm_cache(texts), 1)}))
    warm: dict[int, float] = {int(k): float(v) for k, v in
                              (x.split(":") for x in args.baseline_only.split(",") if x)}
    eager = EagerTasks(app).install()
    project = ensure_project("bench retrain", len(texts))
    if not warm:  # a fresh start: no labels, no models
        TrainingRun.objects.filter(project=project).delete()
        project.model_versions.all().delete()
        Annotation.objects.filter(document__project=project).delete()
        Document.objects.filter(project=project).update(is_labeled=False)
    for target in [int(x) for x in args.labels.split(",")] if not warm else []:
        have = Annotation.objects.filter(document__project=project).count()
        label_documents(project, target - have)
        analyze()
        row = retrain_once(project, eager)
        warm[target] = row["wall_s"]
        name = f"retrain at {target} labels, warm cache, {row['pool_scored']} docs re-scored"
        print(json.dumps({"row": name, **row}))
    if not args.no_baseline:
        # What the same retrain would cost if the encoder ran again (no cache, or a fine-tuned encoder):
        # the uncached encoding rate, measured now on 500 of the project's texts, times the documents a
        # retrain touches (the labeled texts to train on, then every document to re-score).
        sample = [f"{t} (uncached {time.time_ns()})" for t in texts[:500]]
        encoder = modeling.encoder_for()
        with timer() as b:
            encoder.encode_uncached(sample)
        rate = len(sample) / b["s"]
        for target, wall in warm.items():
            extra = (target + len(texts)) / rate
            print(json.dumps({"row": f"baseline: retrain at {target} labels if the encoder ran again",
                              "uncached_encode_docs_per_s": round(rate, 1),
                              "extrapolated_wall_s": round(wall + extra), "cached_over_uncached": round(
                                  (wall + extra) / wall, 1)}))
    eager.uninstall()


if __name__ == "__main__":
    main()
