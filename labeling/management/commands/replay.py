"""``manage.py replay``: label-efficiency curves of each acquisition strategy on a labeled dataset.

    manage.py replay --data rt-snippets --strategy random,margin,entropy,bald,diverse \\
        --budget 1000 --batch 25 --seeds 3 --out var/replay/rt-snippets

Runs the service's own loop (queue, annotation, training, calibration, promotion, re-scoring; the
Celery tasks run in this process) in throwaway projects of the configured database, with
simulated annotators answering from the gold labels. Writes ``curves.json``, ``records.jsonl``
and ``curves.png`` to ``--out``. See docs/REPLAY.md.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser

from labeling.labelspace import MULTI_LABEL
from labeling.models import MODEL_FEATURES, AcquisitionStrategy, validate_deep_tier
from labeling.replay import curves
from labeling.replay.baseline import plain_baseline
from labeling.replay.eager import EagerTasks
from labeling.replay.loop import ReplayData, dedupe, replay_run, split_for_seed
from labeling.replay.team import TeamPolicy
from labeling.services import modeling


def load_data(source: str, text_col: str, label_col: str) -> ReplayData:
    from modelsvc.datasets import BUILTIN, is_multilabel, load_multilabel

    if source in BUILTIN and is_multilabel(source):
        data = load_multilabel(source)
        texts, labels = dedupe(data.texts, data.label_sets())
        return ReplayData(name=source, texts=texts, labels=labels, label_names=data.label_names, task_type=MULTI_LABEL)
    if source in ("rt-snippets", "trec"):
        from modelsvc.datasets import load_builtin

        texts, labels = load_builtin(source)
        name = source
    else:
        from modelsvc.io import DataError, read_labeled

        try:
            texts, labels = read_labeled(source, text_col, label_col)
        except DataError as exc:
            raise CommandError(str(exc)) from exc
        name = Path(source).stem
    texts, labels = dedupe(texts, labels)
    return ReplayData(name=name, texts=texts, labels=labels, label_names=sorted(set(labels)))


class Command(BaseCommand):
    help = "Replay a labeled dataset through the service's active-learning loop and write learning curves."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--data", help="rt-snippets, trec, disaster (multi-label), or a CSV/JSONL/Parquet file")
        parser.add_argument("--text-col", default="text")
        parser.add_argument("--label-col", default="label")
        parser.add_argument(
            "--strategy",
            default=",".join(s for s in AcquisitionStrategy.values if s != "least_confidence"),
            help="comma-separated; default: every registered strategy but least_confidence",
        )
        parser.add_argument("--budget", type=int, default=1000)
        parser.add_argument("--batch", type=int, default=25)
        parser.add_argument("--seeds", type=int, default=3)
        parser.add_argument("--first-seed", type=int, default=0)
        parser.add_argument("--test-size", type=int, default=2000, help="fixed test documents per seed")
        parser.add_argument("--pool-size", type=int, default=None, help="sample the pool (default: all)")
        parser.add_argument("--out", required=True)
        parser.add_argument("--keep", action="store_true", help="keep the replay projects in the database")
        parser.add_argument(
            "--promotion-tolerance", type=float, default=None,
            help="project policy override; 1.0 promotes every retrained model (default: the project default)",
        )
        parser.add_argument(
            "--holdout-interleave", type=float, default=None,
            help="project policy override: the share of leases served from the blind holdout (default 0.1)",
        )
        parser.add_argument(
            "--random-share", type=float, default=None,
            help="project policy override: the share of pool leases drawn at random once a model exists (default 0)",
        )
        parser.add_argument(
            "--features", default=None, choices=list(MODEL_FEATURES),
            help="project policy override: the fast tier's input, model_features (default: embedding)",
        )
        parser.add_argument("--flip-rate", type=float, default=0.0,
                            help="simulated annotators flip this share of labels to another label at random")
        parser.add_argument("--annotator-flip-rates", default="",
                            help="comma-separated flip rate per simulated annotator (overrides --flip-rate)")
        parser.add_argument("--holdout-overlap", type=int, default=1,
                            help="simulated annotators per holdout document (1-5); agreement figures from 2")
        parser.add_argument("--review-share", type=float, default=0.0,
                            help="after each retrain, review up to this share of the run's labels, most "
                                 "likely wrong first (a reviewer gives the gold label; one label each)")
        parser.add_argument("--hold-flagged", action="store_true",
                            help="the project holds labels the noise loop flagged back from training until "
                                 "a reviewer decides them (noise_hold_flagged; default off: they keep training)")
        parser.add_argument("--deep-every", type=int, default=0,
                            help="the deep tier: a retrain crossing each multiple of N labels tunes the encoder "
                                 "(deep_tier_every); each strategy then also runs frozen-only in the same run")
        parser.add_argument("--deep-tier", default="top2", help="what a deep run tunes: topN or full (deep_tier)")
        parser.add_argument("--deep-budget", type=int, default=None,
                            help="seconds a deep run may tune (deep_tier_budget_s; default the project's 1800)")
        parser.add_argument("--plain-baseline", action="store_true",
                            help="also the plain baseline per seed: random order, frozen mean-pooled encoder, "
                                 "logistic regression (labeling.replay.baseline)")
        parser.add_argument(
            "--combine", nargs="+", metavar="DIR",
            help="only merge the records.jsonl of earlier runs (e.g. one process per seed) into --out",
        )

    def handle(self, *args: Any, **opts: Any) -> None:
        if opts["combine"]:
            return self._combine(opts)
        if not opts["data"]:
            raise CommandError("--data is required")
        strategies = [s.strip() for s in opts["strategy"].split(",") if s.strip()]
        unknown = sorted(set(strategies) - set(AcquisitionStrategy.values))
        if unknown:
            raise CommandError(f"unknown strategies {unknown}; choose from {AcquisitionStrategy.values}")
        if opts["batch"] < 1 or opts["budget"] < opts["batch"]:
            raise CommandError("--batch must be >= 1 and --budget >= --batch")
        for name in ("labeling", "celery"):  # one line per task and round is noise here
            logging.getLogger(name).setLevel(logging.WARNING)
        try:
            rates = tuple(float(r) for r in opts["annotator_flip_rates"].split(",") if r.strip())
            team = TeamPolicy(
                flip_rate=opts["flip_rate"], annotator_flip_rates=rates,
                holdout_overlap=opts["holdout_overlap"], review_share=opts["review_share"],
                hold_flagged=opts["hold_flagged"],
            )
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        data = load_data(opts["data"], opts["text_col"], opts["label_col"])
        if opts["test_size"] >= len(data.texts):
            raise CommandError(f"--test-size {opts['test_size']} leaves no pool ({len(data.texts)} docs)")
        out = Path(opts["out"])
        seeds = range(opts["first_seed"], opts["first_seed"] + opts["seeds"])
        splits = {
            seed: split_for_seed(data, seed=seed, test_size=opts["test_size"], pool_size=opts["pool_size"])
            for seed in seeds
        }
        used = sorted({int(i) for sp in splits.values() for i in (*sp.pool, *sp.test)})
        self._warm_cache([data.texts[i] for i in used])

        from workers.app import app  # the tasks the workers run, executed here in-process

        policy: dict[str, Any] = {}
        for field in ("promotion_tolerance", "holdout_interleave", "random_share"):
            if opts[field] is not None:
                policy[field] = opts[field]
        if opts["features"] is not None:
            policy["model_features"] = opts["features"]
        # Each curve: (its name's suffix, its policy). With the deep tier, frozen-only runs beside it.
        variants: list[tuple[str, dict[str, Any]]] = [("", policy)]
        if opts["deep_every"] > 0:
            try:
                validate_deep_tier(opts["deep_tier"])
            except ValidationError as exc:
                raise CommandError(f"--deep-tier: {exc.messages[0]}") from exc
            deep = {**policy, "deep_tier_every": opts["deep_every"], "deep_tier": opts["deep_tier"]}
            if opts["deep_budget"] is not None:
                deep["deep_tier_budget_s"] = opts["deep_budget"]
            variants = [(f" deep{opts['deep_every']}-{opts['deep_tier']}", deep), ("", policy)]
        eager = EagerTasks(app).install()
        records: list[dict[str, Any]] = []
        keys = ("data", "budget", "batch", "seeds", "first_seed", "test_size", "pool_size", "deep_every",
                "deep_tier", "deep_budget")
        config = {k: opts[k] for k in keys}
        config |= {"strategies": strategies, "policy": policy, "team": asdict(team), "documents": len(data.texts),
                   "labels": data.label_names,
                   "database": "configured DATABASE_URL, one throwaway project per run"}
        started = time.perf_counter()
        try:
            for seed, split in splits.items():
                config.setdefault("pool_documents", len(split.pool))
                config.setdefault("test_documents", len(split.test))
                if opts["plain_baseline"]:
                    t0 = time.perf_counter()
                    records.extend(plain_baseline(
                        texts=data.texts, labels=data.labels, pool=split.pool, test=split.test, seed=seed,
                        budget=opts["budget"], batch=opts["batch"],
                    ))
                    self.stdout.write(f"plain baseline seed {seed} in {time.perf_counter() - t0:.0f} s")
                for strategy in strategies:
                    for suffix, variant in variants:
                        t0 = time.perf_counter()
                        run = replay_run(
                            data=data, split=split, strategy=strategy, seed=seed, budget=opts["budget"],
                            batch=opts["batch"], eager=eager, keep=opts["keep"], progress=self._progress,
                            policy=variant, team_policy=team, curve_suffix=suffix,
                        )
                        records.extend(run)
                        took = time.perf_counter() - t0
                        self.stdout.write(f"{strategy}{suffix} seed {seed}: {len(run)} rounds in {took:.0f} s")
                        # Partial results survive an interrupted run.
                        curves.write_outputs(records, out, config=config, title=self._title(data, opts))
        finally:
            eager.uninstall()
        config["wall_s"] = round(time.perf_counter() - started, 1)
        summary = curves.write_outputs(records, out, config=config, title=self._title(data, opts))
        self.stdout.write(json.dumps(summary["headline"], indent=2))
        self.stdout.write(f"wrote {out / 'curves.json'} and {out / 'curves.png'}")

    def _combine(self, opts: dict[str, Any]) -> None:
        records: list[dict[str, Any]] = []
        config: dict[str, Any] = {"combined_from": []}
        for folder in map(Path, opts["combine"]):
            part = json.loads((folder / "curves.json").read_text())["config"]
            config["combined_from"].append({"dir": str(folder), **part})
            records += [json.loads(x) for x in (folder / "records.jsonl").read_text().splitlines() if x]
        summary = curves.write_outputs(records, Path(opts["out"]), config=config, title=opts["data"] or "")
        self.stdout.write(json.dumps(summary["headline"], indent=2))

    def _title(self, data: ReplayData, opts: dict[str, Any]) -> str:
        return f"{data.name}: batch {opts['batch']}, {opts['seeds']} seed(s), test {opts['test_size']}"

    def _warm_cache(self, texts: list[str]) -> None:
        """Encode the replay's texts once; every retrain and re-score after this reads the cache."""
        encoder = modeling.encoder_for()
        cache = modeling.embedding_cache_for(encoder.encoder_id)
        t0 = time.perf_counter()
        encoder.encode(texts, cache=cache)
        self.stdout.write(f"encoded {len(texts):,} texts (cache) in {time.perf_counter() - t0:.0f} s")

    def _progress(self, record: dict[str, Any]) -> None:
        micro = f"micro-f1 {record['micro_f1']:.3f} " if "micro_f1" in record else ""
        self.stdout.write(
            f"  {record['strategy']:<8} seed {record['seed']} labels {record['labels']:>5} "
            f"acc {record['accuracy']:.3f} {micro}f1 {record['macro_f1']:.3f} ece {record['ece']:.3f} "
            f"v{record['model_version']} {record['round_s']:.1f}s"
            + (f" {record['tier']} {record['train_s']:.0f}s" if record.get("train_s") is not None else "")
            + (f" wrong {record['wrong_labels']} reviews {record['reviews']}" if "wrong_labels" in record else "")
        )
