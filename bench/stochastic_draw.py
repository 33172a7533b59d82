"""What a stochastic strategy's draw costs a lease at scale: counted per lease, or cached per period (issue #23).

    BENCH_DATABASE_URL=postgres://postgres@127.0.0.1:5432/alabel_drawbench \\
        .venv/bin/python -m bench.stochastic_draw [--docs 100000 1000000] [--repeats 5]

Per size: a `power_bald` project of ``docs`` documents (every tenth a holdout one, which the queue never
holds; a quarter of the pool labeled, spread over it) and a champion's prediction of each, written with
``INSERT ... SELECT`` (no texts or model needed: the draw reads ``mutual_info`` and ``in_queue`` only;
``mutual_info`` cycles through 97 values), then ``VACUUM ANALYZE``. Timed, each ``repeats`` times (median and
max): the draw counted (``queue._draw_counted``: every open prediction of the champion through the
queue's partial index; what every lease paid before, and what one lease a period pays on a large project
now) and a cached read (``queue.stochastic_draw`` on a large project: what every other lease of the
period pays). The projects are deleted at the end.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from typing import Any

from bench._common import machine, setup_django

setup_django()

from django.core.cache import cache  # noqa: E402
from django.db import connection  # noqa: E402

from labeling.models import Document, ModelStatus, ModelVersion, Prediction  # noqa: E402
from labeling.selectors import queue as q  # noqa: E402
from labeling.services.projects import project_create  # noqa: E402


def build(n: int):
    name = f"draw bench {n} {time.time():.0f}"
    project = project_create(name=name, labels=["a", "b"], acquisition_strategy="power_bald")
    champion = ModelVersion.objects.create(project=project, version=1, status=ModelStatus.CHAMPION)
    doc, pred = Document._meta.db_table, Prediction._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {doc} (project_id, text, content_hash, metadata, split, is_labeled, created_at,"
            " labels_required, suggested_label) SELECT %s, 'draw bench ' || g, md5(%s || '-' || g), '{}',"
            " CASE WHEN g %% 10 = 9 THEN 'holdout' ELSE 'pool' END, g %% 10 <> 9 AND g %% 4 = 0, now(), 1, ''"
            " FROM generate_series(1, %s) g",
            [project.pk, str(project.pk), n],
        )
        cursor.execute(
            f"INSERT INTO {pred} (document_id, model_version_id, probabilities, predicted_label, confidence,"
            " entropy, expected_entropy, mutual_info, margin, acquisition_score, scored_at, in_queue)"
            " SELECT d.id, %s, '[0.6, 0.4]', 'a', 0.6, 0.67, 0.6, 0.001 + (d.id %% 97) / 300.0, 0.2,"
            " random(), now(), d.split = 'pool' AND NOT d.is_labeled FROM " + doc + " d WHERE d.project_id = %s",
            [champion.pk, project.pk],
        )
        # A bulk load's rows are all-visible only once vacuumed: as after autovacuum on a real project.
        cursor.execute(f"VACUUM ANALYZE {doc}")
        cursor.execute(f"VACUUM ANALYZE {pred}")
    return project, champion


def timed(fn, repeats: int) -> tuple[list[float], Any]:
    seconds, out = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        seconds.append(time.perf_counter() - t0)
    return seconds, out


def measure(champion: ModelVersion, repeats: int) -> dict[str, Any]:
    counted_s, counted = timed(lambda: q._draw_counted(champion, 1.0), repeats)
    cache.clear()
    q.stochastic_draw(champion, power=1.0)  # fills the cache
    cached_s, _ = timed(lambda: q.stochastic_draw(champion, power=1.0), repeats)

    def ms(seconds: list[float], digits: int = 1) -> list[float]:
        return [round(1000 * statistics.median(seconds), digits), round(1000 * max(seconds), digits)]

    return {"open": counted.pool_size, "counted_ms": ms(counted_s), "cached_ms": ms(cached_s, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    print(json.dumps({"machine": machine()}), flush=True)
    for n in args.docs:
        t0 = time.perf_counter()
        project, champion = build(n)
        built = time.perf_counter() - t0
        try:
            row = measure(champion, args.repeats)
            row = {"docs": n, "build_s": round(built, 1), **row}
            print(json.dumps(row), flush=True)
        finally:  # raw deletes: the ORM's cascade would load every row first
            with connection.cursor() as cursor:
                cursor.execute(f"DELETE FROM {Prediction._meta.db_table} WHERE model_version_id = %s", [champion.pk])
                cursor.execute(f"DELETE FROM {Document._meta.db_table} WHERE project_id = %s", [project.pk])
            project.delete()


if __name__ == "__main__":
    main()
