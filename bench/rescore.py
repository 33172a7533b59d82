"""Re-score 100,000 documents after a promotion, from the encoder cache.

    .venv/bin/python bench/rescore.py [--docs 100000]

The project holds ``--docs`` documents cycling through the ~18,000 unique rt-snippets + trec
texts (repeats keep their text, so the cache holds 18,000 vectors; every document is still scored
and written). A champion is trained on 1,000 gold labels; then ``model_version_rescore`` (the
RESCORE_POOL task's service) runs, continuation after continuation, until every document has a
prediction from it. Baseline (same run): scoring 2,000 documents whose vectors are not cached
(the encoder runs), extrapolated per document.

Floor (same run): a bare ``COPY`` of the same prediction rows, read back from the table, into a
fresh table of the same columns without indexes or constraints; no re-score can write faster, so
``rescore_over_copy`` is the figure that survives a busy machine. Disk: bytes per prediction row
(``pg_total_relation_size`` of the predictions table with its indexes over its rows) and per cached
vector (the embedding cache file over its rows), for docs/DEPLOYMENT.md's arithmetic.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import pstats
import time

from _common import ensure_project, label_documents, labeled_corpus, machine, setup_django, timer, warm_cache

setup_django()

from django.db import connection

from labeling.models import Annotation, Document, ModelVersion, Prediction, RunTrigger, TrainingRun
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


def fresh_version(champion_id: int) -> None:
    """The champion's predictions deleted and the table vacuumed and analyzed: as right after a promotion,
    when the planner knows no row of the new version (an earlier run's statistics would know 100,000).
    The VACUUM is what autovacuum does on a default server; without it (hosts that run PostgreSQL with
    autovacuum off) the deleted rows' index entries stay, and every page lookup of the re-score walked
    them: 2.6 s of a 13 s re-score against 0.6 s for the same walk over a vacuumed table."""
    Prediction.objects.filter(model_version_id=champion_id).delete()
    with connection.cursor() as cursor:
        cursor.execute(f"VACUUM (ANALYZE) {connection.ops.quote_name(Prediction._meta.db_table)}")


def copy_floor(champion_id: int) -> tuple[int, float]:
    """(rows, seconds) of a bare COPY of ``champion_id``'s prediction rows into an unindexed table."""
    table = connection.ops.quote_name(Prediction._meta.db_table)
    columns = [f.column for f in Prediction._meta.concrete_fields if f.column != "id"]
    names = ", ".join(connection.ops.quote_name(c) for c in columns)
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {names} FROM {table} WHERE model_version_id = %s", [champion_id])
        rows = cursor.fetchall()
        cursor.execute("DROP TABLE IF EXISTS bench_copy_floor")
        cursor.execute(f"CREATE TABLE bench_copy_floor AS SELECT {names} FROM {table} WITH NO DATA")
        raw = cursor.cursor  # psycopg 3
        with timer() as t:
            with raw.copy(f"COPY bench_copy_floor ({names}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)
        cursor.execute("DROP TABLE bench_copy_floor")
    return len(rows), t["s"]


def split_figures(champion_id: int) -> dict[str, float]:
    """Seconds for the head (cache read + k samples x heads) and for each write path, same rows and batches."""
    import numpy as np
    from django.conf import settings
    from django.db import transaction

    from labeling.services.prediction_writes import PredictionColumns, predictions_write

    batch = settings.SCORING_BATCH_SIZE
    champion = ModelVersion.objects.get(pk=champion_id)
    classifier = modeling.classifier_for(champion)
    docs = list(Document.objects.filter(project_id=champion.project_id).order_by("-id").values_list("id", "text"))
    with timer() as head:
        for i in range(0, len(docs), batch):
            modeling.classifier_score(classifier, [t for _, t in docs[i : i + batch]], return_samples=True)
    floats = ["confidence", "entropy", "expected_entropy", "mutual_info", "margin", "acquisition_score", "map_x",
              "map_y"]
    rows = list(Prediction.objects.filter(model_version_id=champion_id).order_by("-document_id")
                .values_list("document_id", "probabilities", "predicted_label", *floats))
    answers = sorted({r[2] for r in rows})
    scored_at = Prediction.objects.filter(model_version_id=champion_id).first().scored_at

    def columns(part: list[tuple]) -> PredictionColumns:
        cols = list(zip(*part, strict=True))
        return PredictionColumns(
            document_id=np.array(cols[0]), probabilities=np.array(cols[1]), answers=answers,
            answer_index=np.array([answers.index(a) for a in cols[2]]), scored_at=scored_at,
            **{name: np.array(values) for name, values in zip(floats, cols[3:], strict=True)},
        )

    batches = [columns(rows[i : i + batch]) for i in range(0, len(rows), batch)]
    out = {"docs": len(docs), "batch": batch, "head_s": round(head["s"], 1)}
    for name, use_copy in (("orm_upsert", False), ("copy_upsert", True)):
        Prediction.objects.filter(model_version_id=champion_id).delete()
        with timer() as w:
            for part in batches:
                with transaction.atomic():
                    predictions_write(model_version_id=champion_id, columns=part, use_copy=use_copy)
        out[f"{name}_s"] = round(w["s"], 2)
    out["orm_over_copy"] = round(out["orm_upsert_s"] / out["copy_upsert_s"], 2)
    return out


def component_floors(champion_id: int, copy_s: float) -> dict[str, float]:
    """Two parts of a re-score alone, each over the bare-COPY floor: reading every document's vector from the
    embedding cache (pages of ``SCORING_BATCH_SIZE``, as scoring reads them) and the head's k samples over
    those vectors already in memory (``Classifier.sample_logits``, the code path scoring runs). Either
    part above 3x the floor means the 3x target cannot be met by faster writes alone."""
    import numpy as np
    from django.conf import settings

    champion = ModelVersion.objects.get(pk=champion_id)
    classifier = modeling.classifier_for(champion)
    encoder_id = modeling.classifier_encoder(classifier).encoder_id
    cache = modeling.embedding_cache_for(encoder_id)
    texts = list(Document.objects.filter(project_id=champion.project_id).order_by("-id").values_list("text", flat=True))
    batch = settings.SCORING_BATCH_SIZE
    vectors: list[np.ndarray] = []
    with timer() as read:
        for i in range(0, len(texts), batch):
            found = cache.get_many(encoder_id, texts[i : i + batch])
            vectors.extend(found[j] for j in range(len(found)))
    x = np.stack(vectors)
    with timer() as head:
        for i in range(0, len(x), batch):
            classifier.sample_logits(x[i : i + batch])
    return {"docs": len(x), "cache_read_s": round(read["s"], 2), "head_samples_s": round(head["s"], 2),
            "cache_read_over_copy": round(read["s"] / copy_s, 1), "head_over_copy": round(head["s"] / copy_s, 1),
            "samples_k": classifier.config.samples}


#: Where a re-score's time goes: (name, function names whose cumulative time counts for it), as cProfile
#: reports them; a name's figure is the summed cumulative time of its functions (none of them nest).
PROFILE_PARTS = (
    ("find unscored pages (documents_unscored_page)", ("documents_unscored_page",)),
    ("cache read (SQLite fetch + frombuffer)", ("get_many",)),
    ("head: k samples over the heads (sample_logits)", ("sample_logits",)),
    ("calibration + uncertainty columns (summarize_logits)", ("summarize_logits",)),
    ("acquisition scores", ("acquisition_for",)),
    ("map projection", ("map_project",)),
    ("label fields (prediction_fields)", ("prediction_fields",)),
    ("write: rows -> staging COPY + set-based upsert (predictions_write)", ("predictions_write",)),
    ("progress counts", ("_rescore_progress",)),
    ("ANALYZE at completion", ("planner_statistics_refresh",)),
)


def profile_split(run_id: int, champion_id: int) -> dict[str, float]:
    """One re-score of every document under cProfile: seconds per part (``PROFILE_PARTS``) and the rest.

    cProfile slows Python-heavy parts more than C-heavy ones (matmuls, COPY); read the shares, not the total.
    """
    fresh_version(champion_id)
    profile = cProfile.Profile()
    with timer() as t:
        profile.enable()
        while model_version_rescore(run_id=run_id, model_version_id=champion_id).remaining:
            pass
        profile.disable()
    stats = pstats.Stats(profile).stats  # type: ignore[attr-defined]
    out: dict[str, float] = {"total_s": round(t["s"], 2)}
    for name, functions in PROFILE_PARTS:
        out[name] = round(sum(v[3] for (_, _, fn), v in stats.items() if fn in functions), 2)
    out["everything else"] = round(out["total_s"] - sum(v for k, v in out.items() if k != "total_s"), 2)
    return out


def disk_figures(champion_id: int) -> dict[str, float]:
    """Bytes per prediction row (table + indexes + TOAST) and per embedding cache row."""
    from labeling.services import modeling

    table = Prediction._meta.db_table
    with connection.cursor() as cursor:
        # FULL: earlier runs' deleted rows would otherwise count as the table's size.
        cursor.execute(f"VACUUM FULL ANALYZE {connection.ops.quote_name(table)}")
        cursor.execute("SELECT pg_total_relation_size(%s), pg_relation_size(%s)", [table, table])
        total, heap = cursor.fetchone()
    rows = Prediction.objects.count()
    probs = len(Prediction.objects.filter(model_version_id=champion_id).first().probabilities)
    cache = modeling.embedding_cache_for(modeling.encoder_for().encoder_id)
    path = str(cache.path)
    cache_bytes = sum(os.path.getsize(p) for p in (path, f"{path}-wal") if os.path.exists(p))
    cache_rows = len(cache)
    return {"prediction_rows": rows, "labels": probs, "bytes_per_prediction": round(total / rows),
            "heap_bytes_per_prediction": round(heap / rows), "cache_rows": cache_rows,
            "bytes_per_cached_vector": round(cache_bytes / max(cache_rows, 1))}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--docs", type=int, default=100_000)
    parser.add_argument("--no-cold", action="store_true", help="skip the uncached-encoding baseline")
    parser.add_argument("--profile", action="store_true", help="also re-score once under cProfile: the split")
    args = parser.parse_args()
    print(json.dumps({"machine": machine()}))
    texts, _, _ = labeled_corpus()
    print(json.dumps({"setup": "encode cache", "texts": len(texts), "s": round(warm_cache(texts), 1)}))
    with timer() as t:
        project = ensure_project(PROJECT, args.docs)
    print(json.dumps({"setup": "documents", "docs": args.docs, "s": round(t["s"], 1)}))
    run_id, champion_id = ensure_champion(project)
    fresh_version(champion_id)
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
    copied, copy_s = copy_floor(champion_id)
    print(json.dumps({"row": f"floor: bare COPY of the same {copied:,} prediction rows (no indexes)",
                      "wall_s": round(copy_s, 2), "rows_per_s": round(copied / copy_s),
                      "rescore_over_copy": round(t["s"] / copy_s, 1)}))
    print(json.dumps({"row": "components alone, each over the same floor", **component_floors(champion_id, copy_s)}))
    print(json.dumps({"row": "disk", **disk_figures(champion_id)}))
    print(json.dumps({"row": "split: head vs writes, same rows, same batches", **split_figures(champion_id)}))
    if args.profile:
        split = profile_split(run_id, champion_id)
        print(json.dumps({"row": "profile: one re-score under cProfile, cumulative s", **split}))
    if args.no_cold:
        return
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
