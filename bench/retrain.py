"""Retrain wall time: from the trigger to a promoted champion whose predictions cover the whole pool.

    .venv/bin/python bench/retrain.py [--labels 1000,5000] [--no-baseline]

A project of the ~18,000 unique rt-snippets + trec texts (8 labels) gets 1,000, then 5,000 gold
labels (bulk-written as annotations: set-up, not measured). Each step: ``training_run_request``,
then the TRAIN task and the RESCORE_POOL tasks it sends run in this process (the worker's code, no
broker), timed until the run is done. The encoder cache is warm (every text encoded once before),
as on a running service. Baseline (same run): the 1,000-label retrain with a cold cache, i.e. what
each retrain would cost if the encoder ran again (a fine-tuned encoder, or no cache).
"""

from __future__ import annotations

import sys
from pathlib import Path

# bench/queue.py would shadow the stdlib ``queue`` (used by concurrent.futures, requests ...):
# the bench folder goes to the end of the path, after the standard library.
BENCH = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != BENCH] + [str(BENCH)]

import argparse  # noqa: E402
import json  # noqa: E402
import tempfile  # noqa: E402

from _common import analyze, ensure_project, label_documents, labeled_corpus, machine, setup_django, timer, warm_cache  # noqa: E402

setup_django()

from django.conf import settings  # noqa: E402

from labeling.models import Annotation, Document, Prediction, RunTrigger, TrainingRun  # noqa: E402
from labeling.replay.eager import EagerTasks  # noqa: E402
from labeling.selectors.models import champion_get  # noqa: E402
from labeling.services import modeling  # noqa: E402
from labeling.services.training import training_run_request  # noqa: E402
from workers.app import app  # noqa: E402


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
    args = parser.parse_args()
    print(json.dumps({"machine": machine()}))
    texts, _, _ = labeled_corpus()
    print(json.dumps({"setup": "encode cache", "texts": len(texts), "s": round(warm_cache(texts), 1)}))
    eager = EagerTasks(app).install()
    project = ensure_project("bench retrain", len(texts))
    TrainingRun.objects.filter(project=project).delete()
    project.model_versions.all().delete()
    Annotation.objects.filter(document__project=project).delete()
    Document.objects.filter(project=project).update(is_labeled=False)
    warm: dict[int, float] = {}
    for target in [int(x) for x in args.labels.split(",")]:
        have = Annotation.objects.filter(document__project=project).count()
        label_documents(project, target - have)
        analyze()
        row = retrain_once(project, eager)
        warm[target] = row["wall_s"]
        name = f"retrain at {target} labels, warm cache, {row['pool_scored']} docs re-scored"
        print(json.dumps({"row": name, **row}))
    if not args.no_baseline:
        # Cold cache: a fresh ARTIFACT_DIR (empty embedding cache) and a fresh project at 1,000 labels.
        settings.ARTIFACT_DIR = Path(tempfile.mkdtemp(prefix="bench-cold-"))
        modeling._caches.clear()
        cold_project = ensure_project("bench retrain cold", len(texts))
        TrainingRun.objects.filter(project=cold_project).delete()
        cold_project.model_versions.all().delete()
        Annotation.objects.filter(document__project=cold_project).delete()
        Document.objects.filter(project=cold_project).update(is_labeled=False)
        label_documents(cold_project, 1000)
        analyze()
        row = retrain_once(cold_project, eager)
        ratio = round(row["wall_s"] / warm[1000], 1) if 1000 in warm else None
        print(json.dumps({"row": "baseline: retrain at 1000 labels, cold cache (encoder runs again)", **row,
                          "cold_over_warm": ratio}))
    eager.uninstall()


if __name__ == "__main__":
    main()
