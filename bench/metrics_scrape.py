"""What a Prometheus scrape of ``/metrics`` costs the database, at a size set by ``--documents``.

    .venv/bin/python bench/metrics_scrape.py [--documents 1000000] [--repeat 5]

Builds (once, in SQL) a project of ``--documents`` documents (10 % holdout, 1 % labeled), a champion
that has scored every pool document, and 10,000 labels, 1,000 of them in the last hour; then times,
in the same run:

- ``project_figures()``: the five grouped queries behind the per-project gauges (what a scrape
  computes once per METRICS_CACHE_SECONDS in each web process);
- a whole scrape through the view with the figures cached (what every other scrape costs);
- baseline: the dashboard's own reads of the same figures for this one project
  (``stats.document_counts`` + ``stats.champion_coverage``).

Prints one JSON object per line (the machine first); nothing is asserted.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

from _common import machine, setup_django

setup_django()

from django.core.cache import cache  # noqa: E402
from django.db import connection  # noqa: E402
from django.test import Client  # noqa: E402
from django.test.utils import override_settings  # noqa: E402

from labeling.api import metrics as metrics_api  # noqa: E402
from labeling.models import ModelStatus, ModelVersion, Project  # noqa: E402
from labeling.selectors.metrics import project_figures  # noqa: E402
from labeling.selectors.stats import champion_coverage, document_counts  # noqa: E402

LABELS = 10_000


def ensure_project(n_docs: int) -> tuple[Project, ModelVersion]:
    name = f"bench metrics {n_docs}"
    project = Project.objects.filter(name=name).first()
    if project is not None:
        return project, ModelVersion.objects.get(project=project, status=ModelStatus.CHAMPION)
    from django.contrib.auth import get_user_model

    project = Project.objects.create(name=name, labels=[{"name": "a", "text": "a", "key": "1"},
                                                        {"name": "b", "text": "b", "key": "2"}])
    champion = ModelVersion.objects.create(project=project, version=1, status=ModelStatus.CHAMPION,
                                           label_map=["a", "b"], metrics={"ece": 0.021})
    user, _ = get_user_model().objects.get_or_create(username="bench-metrics-annotator")
    started = time.perf_counter()
    with connection.cursor() as cur:
        cur.execute(
            """INSERT INTO labeling_document (project_id, text, content_hash, metadata, split, labels_required,
                   is_labeled, created_at)
               SELECT %s, 'document ' || i, md5(i::text), '{}'::jsonb,
                      CASE WHEN i %% 10 = 0 THEN 'holdout' ELSE 'pool' END, 1, i %% 100 = 1, now()
               FROM generate_series(1, %s) AS i""",
            [project.pk, n_docs],
        )
        cur.execute(
            """INSERT INTO labeling_prediction (document_id, model_version_id, probabilities, predicted_label,
                   confidence, entropy, expected_entropy, mutual_info, margin, acquisition_score, scored_at,
                   in_queue)
               SELECT d.id, %s, '[0.6, 0.4]'::jsonb, 'a', 0.6, 0.67, 0.6, 0.07, 0.2, random(), now(),
                      NOT d.is_labeled
               FROM labeling_document d WHERE d.project_id = %s AND d.split = 'pool'""",
            [champion.pk, project.pk],
        )
        cur.execute(
            """INSERT INTO labeling_annotation (document_id, project_id, annotator_id, label, predicted_label,
                   source, created_at, updated_at)
               SELECT d.id, d.project_id, %s, 'a', '', 'api',
                      now() - CASE WHEN row_number() OVER () <= %s THEN interval '10 minutes'
                                   ELSE interval '2 days' END, now()
               FROM labeling_document d WHERE d.project_id = %s ORDER BY d.id LIMIT %s""",
            [user.pk, LABELS // 10, project.pk, LABELS],
        )
        cur.execute("ANALYZE labeling_document; ANALYZE labeling_prediction; ANALYZE labeling_annotation")
    print(json.dumps({"built": name, "seconds": round(time.perf_counter() - started, 1)}), flush=True)
    return project, champion


def timed(fn, repeat: int) -> dict[str, float]:
    runs = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        runs.append(time.perf_counter() - started)
    return {"median_ms": round(1000 * statistics.median(runs), 1), "max_ms": round(1000 * max(runs), 1)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--documents", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    print(json.dumps({"machine": machine()}), flush=True)
    project, champion = ensure_project(args.documents)
    projects = Project.objects.count()
    figures = timed(project_figures, args.repeat)
    baseline = timed(lambda: (document_counts(project), champion_coverage(project, champion)), args.repeat)
    with override_settings(METRICS_TOKEN="bench", METRICS_CACHE_SECONDS=3600):
        client = Client()
        cache.delete(metrics_api.FIGURES_KEY)
        client.get("/metrics", HTTP_AUTHORIZATION="Bearer bench")  # fills the cache
        cached = timed(lambda: client.get("/metrics", HTTP_AUTHORIZATION="Bearer bench"), args.repeat)
    print(json.dumps({
        "documents": args.documents, "projects_in_database": projects, "labels": LABELS,
        "project_figures_all_projects": figures,
        "baseline_dashboard_reads_one_project": baseline,
        "ratio_figures_to_baseline": round(figures["median_ms"] / baseline["median_ms"], 2),
        "scrape_with_cached_figures": cached,
    }), flush=True)


if __name__ == "__main__":
    main()
