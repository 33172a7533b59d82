"""A project's annotation reads in a documents table of 1,000,000+ rows, before and after ``Annotation.project`` (#23).

    BENCH_DATABASE_URL=postgres://postgres@127.0.0.1:5432/alabel_bench_annotations \\
        nice .venv/bin/python bench/annotation_reads.py --build              # the database (once)
    nice .venv/bin/python bench/annotation_reads.py                          # reads, this checkout's code
    nice .venv/bin/python bench/annotation_reads.py --code /tmp/before      # the same reads, older code
    nice .venv/bin/python bench/annotation_reads.py --backfill 1000000       # migration 0033 on 1M labels

``--build`` makes two projects through the services and then widens one with set-based SQL:

- "measured": ``--measured-docs`` real texts through ``document_bulk_create``, ``--labels`` of them
  labeled by 5 annotators over the last 48 hours (half with the champion's guess beside them);
- "filler": 18,133 real texts (rt-snippets + trec, through ``document_bulk_create``) copied by one
  ``INSERT ... SELECT`` with ``generate_series`` to ``--docs`` rows, each copy a distinct external id
  (``s<i>-<copy>``), the text unchanged; ``--filler-labels`` of them labeled.

The reads, timed in process, ``--repeats`` times interleaved, with their statements captured: the
dashboard document and ``/stats`` (the selectors the views call; the pool figures from the cache, so
what is left is what this change is about), the export's rows, and each annotation read on its own in
both forms (``document__project=`` joined to the documents, ``project=``), plus ``EXPLAIN (ANALYZE,
BUFFERS)`` of the project's annotation count in both forms. ``--code DIR`` imports ``labeling`` from DIR
instead (e.g. ``git archive <commit> | tar -x -C DIR``) and skips the single-form reads that need the
new column; the database is migrated by this checkout only.

``--backfill N`` labels N filler documents (one annotator, set-based ``INSERT``), then times
``migrate labeling 0032`` (drops the column) and ``migrate labeling 0033`` (adds it, backfills every
label, NOT NULL, index, triggers). Nothing is asserted.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

PRE = argparse.ArgumentParser(add_help=False)
PRE.add_argument("--code", type=Path, default=None)
_pre, _ = PRE.parse_known_args()
if _pre.code is not None:  # before setup_django puts this checkout first on the path
    sys.path.insert(0, str(_pre.code.resolve()))

import os  # noqa: E402

os.environ.setdefault("BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/alabel_bench_annotations")

from _common import analyze, machine, real_texts  # noqa: E402

BATCH = 1000
ANNOTATORS = 5


def emit(row: dict[str, Any]) -> None:
    print(json.dumps(row), flush=True)


def setup(migrate: bool) -> None:
    import _common

    if migrate:
        _common.setup_django()
        return
    # Older code: Django from that tree, the database as this checkout migrated it.
    os.environ.update(DJANGO_SETTINGS_MODULE="labeling.settings", DATABASE_URL=os.environ["BENCH_DATABASE_URL"])
    os.environ["CELERY_BROKER_URL"] = "memory://"
    os.environ.setdefault("VAR_DIR", str(_common.ROOT / "var" / "bench"))
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    import django

    django.setup()


# --- the database --------------------------------------------------------------------------------


def build(args: argparse.Namespace) -> None:
    from django.contrib.auth import get_user_model
    from django.db import connection

    from labeling.models import Document, Project
    from labeling.services.documents import document_bulk_create
    from labeling.services.projects import project_create

    texts = real_texts()
    names = sorted({label for _, label in texts})
    Project.objects.filter(name__in=["measured", "filler"]).delete()
    users = [get_user_model().objects.get_or_create(username=f"ann-{i}")[0] for i in range(ANNOTATORS)]
    t0 = time.perf_counter()
    for name, n in (("measured", args.measured_docs), ("filler", len(texts))):
        project = project_create(name=name, labels=names)
        for start in range(0, n, BATCH):
            items = [
                {"text": text, "external_id": f"s{i}", "metadata": {"gold": gold}}
                for i in range(start, min(n, start + BATCH))
                for text, gold in [texts[i % len(texts)]]
            ]
            document_bulk_create(project=project, items=items)
    emit({"row": "ingest (document_bulk_create)", "docs": args.measured_docs + len(texts),
          "s": round(time.perf_counter() - t0, 1)})
    measured, filler = Project.objects.get(name="measured"), Project.objects.get(name="filler")
    columns = [f.column for f in Document._meta.concrete_fields if not f.primary_key]
    copies = -(-(args.docs - len(texts)) // len(texts))
    select = ", ".join("s.external_id || '-' || g" if c == "external_id" else f"s.{c}" for c in columns)
    t0 = time.perf_counter()
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO labeling_document ({', '.join(columns)}) SELECT {select} "
            "FROM labeling_document s CROSS JOIN generate_series(1, %s) g WHERE s.project_id = %s",
            [copies, filler.pk],
        )
        added = cursor.rowcount
    emit({"row": "filler copies (one INSERT ... SELECT)", "docs": added, "s": round(time.perf_counter() - t0, 1)})
    label(measured, args.labels, users, spread_hours=48)
    label(filler, args.filler_labels, users[:1], spread_hours=48)
    analyze()
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM labeling_document")
        total = cursor.fetchone()[0]
    emit({"row": "built", "documents_in_table": total, "measured_project": measured.pk, "filler_project": filler.pk})


def label(project: Any, n: int, users: list[Any], *, spread_hours: int, close: bool = True) -> None:
    """``n`` of the project's pool documents labeled with their gold label, round-robin over ``users``;
    ``close`` marks them labeled (the backfill's labels skip that: only the annotations table matters)."""
    from django.db import connection

    ids = "{" + ",".join(str(u.pk) for u in users) + "}"
    t0 = time.perf_counter()
    with connection.cursor() as cursor:
        cursor.execute(
            """
            WITH picked AS (
                SELECT d.id, d.project_id, d.metadata ->> 'gold' AS gold, row_number() OVER (ORDER BY d.id) AS k
                FROM labeling_document d
                WHERE d.project_id = %s AND d.split = 'pool' AND NOT d.is_labeled
                ORDER BY d.id LIMIT %s
            )
            INSERT INTO labeling_annotation (document_id, project_id, annotator_id, label, predicted_label,
                predicted_confidence, duration_ms, source, import_source, created_at, updated_at)
            SELECT p.id, p.project_id, (%s::bigint[])[1 + p.k %% %s], p.gold,
                   CASE WHEN p.k %% 2 = 0 THEN p.gold ELSE '' END,
                   CASE WHEN p.k %% 2 = 0 THEN 0.8 END, 2000 + (p.k * 37) %% 9000, 'api', '',
                   now() - make_interval(secs => (p.k * 7919) %% (%s * 3600)), now()
            FROM picked p
            """,
            [project.pk, n, ids, len(users), spread_hours],
        )
        stored = cursor.rowcount
        if close:
            cursor.execute(
                "UPDATE labeling_document SET is_labeled = true WHERE id IN "
                "(SELECT document_id FROM labeling_annotation WHERE project_id = %s)",
                [project.pk],
            )
    emit({"row": f"labels ({project.name})", "annotations": stored, "s": round(time.perf_counter() - t0, 1)})


# --- the reads -----------------------------------------------------------------------------------


def timed(call: Callable[[], Any]) -> tuple[float, int, list[dict[str, Any]]]:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as ctx:
        t0 = time.perf_counter()
        call()
        ms = (time.perf_counter() - t0) * 1000
    annotation_sql = [
        {"ms": round(float(q["time"]) * 1000, 1), "sql": q["sql"][:140]}
        for q in ctx.captured_queries
        if "labeling_annotation" in q["sql"]
    ]
    return ms, len(ctx.captured_queries), annotation_sql


def single_reads(project: Any) -> dict[str, Callable[[], Any]]:
    """Each annotation read of the dashboard and /stats on its own, in the old and the new form."""
    from datetime import timedelta

    from django.db.models import Count
    from django.db.models.functions import TruncHour
    from django.utils import timezone

    from labeling.models import Annotation

    since = timezone.now() - timedelta(hours=23)
    reads: dict[str, Callable[[], Any]] = {}
    for form, scope in (("join", {"document__project": project}), ("project", {"project": project})):
        def q(scope: dict[str, Any] = scope) -> Any:
            return Annotation.objects.filter(**scope)

        reads[f"count, {form}"] = lambda q=q: q().count()
        reads[f"label counts, {form}"] = lambda q=q: list(q().values("label").annotate(n=Count("id")))
        reads[f"per annotator, {form}"] = lambda q=q: list(
            q().values("annotator_id").annotate(n=Count("id")).order_by()
        )
        reads[f"last 24 h by hour, {form}"] = lambda q=q: list(
            q().filter(created_at__gte=since).annotate(h=TruncHour("created_at")).values("h").annotate(n=Count("id"))
        )
        reads[f"agreement with the model, {form}"] = lambda q=q: list(
            q().exclude(predicted_label="").values_list("label", "predicted_label")
        )
        reads[f"export rows, {form}"] = lambda q=q: list(
            q().order_by("pk").values_list("pk", "document__external_id", "document__text", "label")
        )
    return reads


def explain_count(project: Any) -> None:
    from django.db import connection

    forms = {
        "join": "SELECT COUNT(*) FROM labeling_annotation a JOIN labeling_document d ON d.id = a.document_id "
        "WHERE d.project_id = %s",
        "project": "SELECT COUNT(*) FROM labeling_annotation a WHERE a.project_id = %s",
    }
    for form, sql in forms.items():
        with connection.cursor() as cursor:
            cursor.execute("EXPLAIN (ANALYZE, BUFFERS) " + sql, [project.pk])
            plan = [r[0] for r in cursor.fetchall()]
        emit({"row": f"EXPLAIN (ANALYZE, BUFFERS) count, {form}", "plan": plan})


def reads(args: argparse.Namespace) -> None:
    from django.contrib.auth import get_user_model
    from django.core.cache import cache

    from labeling.models import Annotation, Document, Project
    from labeling.selectors.dashboard import dashboard
    from labeling.selectors.exports import export_rows
    from labeling.selectors.stats import project_stats

    project = Project.objects.get(name="measured")
    owner = get_user_model().objects.filter(is_staff=True).first() or get_user_model().objects.create(
        username="bench-staff", is_staff=True
    )
    emit({"row": "data", "documents_in_table": Document.objects.count(),
          "annotations_in_table": Annotation.objects.count(),
          "measured_annotations": Annotation.objects.filter(document__project=project).count(),
          "code": str(_pre.code or "this checkout")})
    calls: dict[str, Callable[[], Any]] = {
        "dashboard (selector, pool figures cached)": lambda: dashboard(project=project, user=owner),
        "/stats (selector, pool figures cached)": lambda: project_stats(project),
        "export rows (selector)": lambda: sum(1 for _ in export_rows(project)),
    }
    if _pre.code is None:
        calls.update(single_reads(project))
    cache.clear()
    for call in calls.values():  # warm: the pool figures into the cache, the pages into shared buffers
        call()
    samples: dict[str, list[float]] = {name: [] for name in calls}
    detail: dict[str, Any] = {}
    for _ in range(args.repeats):
        for name, call in calls.items():
            ms, statements, annotation_sql = timed(call)
            samples[name].append(ms)
            detail[name] = {"statements": statements, "annotation_statements": annotation_sql}
    for name, runs in samples.items():
        emit({"row": name, "median_ms": round(statistics.median(runs), 1), "min_ms": round(min(runs), 1),
              "max_ms": round(max(runs), 1), "repeats": len(runs), **detail[name]})
    if _pre.code is None:
        for read in sorted({name.rsplit(", ", 1)[0] for name in samples if name.endswith(", project")}):
            join, new = statistics.median(samples[f"{read}, join"]), statistics.median(samples[f"{read}, project"])
            emit({"row": f"ratio join / project: {read}", "ratio": round(join / new, 1)})
        explain_count(project)


def backfill(args: argparse.Namespace) -> None:
    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from django.db import connection

    from labeling.models import Annotation, Project

    filler = Project.objects.get(name="filler")
    have = Annotation.objects.filter(project=filler).count()
    if args.backfill > have:
        user = get_user_model().objects.get_or_create(username="ann-backfill")[0]
        label(filler, args.backfill - have, [user], spread_hours=24 * 30, close=False)
    analyze()
    total = Annotation.objects.count()
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_total_relation_size('labeling_annotation')")
        size = cursor.fetchone()[0]
    emit({"row": "annotations before the migration", "annotations": total, "table_mb": round(size / 2**20)})
    for target in ("0032_deeptier_tiers", "0033_annproject"):
        t0 = time.perf_counter()
        call_command("migrate", "labeling", target, verbosity=0)
        s = time.perf_counter() - t0
        emit({"row": f"migrate labeling {target}", "s": round(s, 1),
              "s_per_million_annotations": round(s / total * 1e6, 1), "load_avg_after": os.getloadavg()})
    analyze()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, parents=[PRE],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--build", action="store_true")
    parser.add_argument("--docs", type=int, default=1_000_000, help="filler documents (with --build)")
    parser.add_argument("--measured-docs", type=int, default=5000)
    parser.add_argument("--labels", type=int, default=3000, help="labels of the measured project")
    parser.add_argument("--filler-labels", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--backfill", type=int, default=0, help="label this many filler documents, time 0033")
    args = parser.parse_args()
    setup(migrate=_pre.code is None)
    emit({"row": "machine", **machine()})
    if args.build:
        build(args)
    elif args.backfill:
        backfill(args)
    else:
        reads(args)
    emit({"row": "load average at the end", "load_avg_1_5_15": [round(x, 2) for x in os.getloadavg()]})


if __name__ == "__main__":
    main()
