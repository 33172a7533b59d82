"""Learning curves from replay records: mean and std over seeds, the plot, the headline figures.

Pure functions over plain dicts (no ORM), so they are cheap to test and reuse.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from modelsvc.calibration import LOG_TEMPERATURE_BOUNDS, log_temperature_prior_penalty

METRICS = ("accuracy", "macro_f1", "ece")
# Recorded by newer replays only: the ECE a perfectly calibrated champion would show on the test split,
# and the ECE at the temperature fitted on the test split itself (diagnosis: what a temperature can fix).
# ``newest_accuracy``: the newest trained model's test accuracy, promoted or not (the gate's cost or gain).
# Multi-label replays record ``micro_f1`` and ``hamming_loss`` too (``accuracy`` is then the subset accuracy).
OPTIONAL = ("ece_floor", "ece_test_optimal_temperature", "newest_accuracy", "micro_f1", "hamming_loss")

#: The temperatures of the records' per-round curves (log-spaced over ``fit_temperature``'s range, step
#: 1/16 in log T): test ECE and summed holdout NLL at each, so another temperature rule can be replayed.
DIAGNOSIS_TEMPERATURES: list[float] = np.exp(np.linspace(*LOG_TEMPERATURE_BOUNDS, 97)).tolist()
#: The rules ``temperature_rules`` replays: the sd of a normal prior on log T around the pool's
#: out-of-fold temperature (``modelsvc.holdout``); None: the holdout alone.
TEMPERATURE_RULES: dict[str, float | None] = {
    "holdout alone": None,
    "sd 1.0": 1.0,
    "sd 0.5": 0.5,
    "sd 0.3": 0.3,
    "sd 0.2": 0.2,
    "sd 0.1": 0.1,
}


def aggregate(records: Iterable[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """{strategy: {"labels": [n...], metric: {"mean": [...], "std": [...], "runs": k}}}.

    A label count is kept only where every seed of the strategy has a record, so a mean is never
    taken over a different set of runs at different points of the curve.
    """
    by: dict[str, dict[int, dict[int, dict[str, Any]]]] = defaultdict(lambda: defaultdict(dict))
    for r in records:
        by[r["strategy"]][int(r["labels"])][int(r["seed"])] = r
    out: dict[str, dict[str, Any]] = {}
    for strategy, points in by.items():
        seeds = {s for per_seed in points.values() for s in per_seed}
        counts = sorted(n for n, per_seed in points.items() if set(per_seed) == seeds)
        curve: dict[str, Any] = {"labels": counts, "seeds": sorted(seeds)}
        present = [m for m in OPTIONAL if all(m in points[n][s] for n in counts for s in seeds)]
        for metric in (*METRICS, *present):
            values = [[points[n][s][metric] for s in sorted(seeds)] for n in counts]
            curve[metric] = {
                "mean": [float(np.mean(v)) for v in values],
                "std": [float(np.std(v)) for v in values],
            }
        out[strategy] = curve
    return out


def labels_to_reach(curve: dict[str, Any], target: float, metric: str = "accuracy") -> int | None:
    """The first label count where the mean ``metric`` is at least ``target`` (None if never)."""
    for n, value in zip(curve["labels"], curve[metric]["mean"], strict=True):
        if value >= target - 1e-12:
            return int(n)
    return None


def headline(
    curves: dict[str, dict[str, Any]], *, baseline: str = "random", ece_from: int = 500
) -> dict[str, Any]:
    """Labels each strategy needs to match the baseline's accuracy at its full budget, and late ECE."""
    result: dict[str, Any] = {"baseline": baseline}
    if baseline in curves and curves[baseline]["labels"]:
        base = curves[baseline]
        target = base["accuracy"]["mean"][-1]
        result["baseline_budget"] = base["labels"][-1]
        result["baseline_final_accuracy"] = target
        result["labels_to_match_baseline"] = {s: labels_to_reach(c, target) for s, c in curves.items()}
    result["max_ece_from"] = ece_from
    result["max_mean_ece_from"] = {
        s: max((e for n, e in zip(c["labels"], c["ece"]["mean"], strict=True) if n >= ece_from), default=None)
        for s, c in curves.items()
    }
    floors = {
        s: max((e for n, e in zip(c["labels"], c["ece_floor"]["mean"], strict=True) if n >= ece_from), default=None)
        for s, c in curves.items() if "ece_floor" in c
    }
    if floors:
        result["max_mean_ece_floor_from"] = floors
    result["final"] = {
        s: {m: c[m]["mean"][-1] for m in METRICS} | {"labels": c["labels"][-1]}
        for s, c in curves.items() if c["labels"]
    }
    return result


def rule_temperature_index(record: dict[str, Any], prior_sd: float | None) -> int:
    """Index into ``DIAGNOSIS_TEMPERATURES`` of the temperature a rule would have deployed at this round.

    Where the service used the holdout (``temperature_source`` "holdout"), the grid point maximizing the
    holdout likelihood times the rule's prior; elsewhere the pool's out-of-fold temperature, as the service.
    """
    log_t = np.log(DIAGNOSIS_TEMPERATURES)
    log_prior = math.log(record["temperature_pool_out_of_fold"])
    if record.get("temperature_source") != "holdout":
        return int(np.argmin(np.abs(log_t - log_prior)))
    objective = np.asarray(record["holdout_nll_by_log_temperature"])
    if prior_sd is not None:
        objective = objective + log_temperature_prior_penalty(log_t, log_prior, prior_sd)
    return int(np.argmin(objective))


def temperature_rules(records: Iterable[dict[str, Any]], *, ece_from: int = 500) -> dict[str, Any]:
    """Each rule's test ECE replayed from the records: {strategy: {rule: [mean ECE from ``ece_from`` on, per seed]}}.

    Beside the rules, "deployed" is the ECE the run measured. Strategies whose records lack the grids
    (older replays) are left out. The replay ignores the temperature's effect on the queue and the gate.
    """
    by: dict[str, dict[int, list[dict[str, Any]]]] = defaultdict(lambda: defaultdict(list))
    for r in records:
        if int(r["labels"]) >= ece_from:
            by[r["strategy"]][int(r["seed"])].append(r)
    out: dict[str, Any] = {}
    for strategy, seeds in sorted(by.items()):
        if not all("ece_by_log_temperature" in r for per_seed in seeds.values() for r in per_seed):
            continue
        order = sorted(seeds)
        table: dict[str, list[Any]] = {"seeds": order, "deployed": [_mean(r["ece"] for r in seeds[s]) for s in order]}
        for name, sd in TEMPERATURE_RULES.items():
            table[name] = [_mean(_rule_ece(r, sd) for r in seeds[s]) for s in order]
        out[strategy] = table
    return out


def _rule_ece(record: dict[str, Any], prior_sd: float | None) -> float:
    return float(record["ece_by_log_temperature"][rule_temperature_index(record, prior_sd)])


def _mean(values: Iterable[float]) -> float:
    return float(np.mean(list(values)))


def plot(curves: dict[str, dict[str, Any]], path: Path, *, title: str = "") -> Path:
    """Accuracy, macro-F1 and ECE against labels, mean with a +-1 std band per strategy."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(METRICS), figsize=(5 * len(METRICS), 4), constrained_layout=True)
    for ax, metric in zip(axes, METRICS, strict=True):
        for k, (strategy, c) in enumerate(sorted(curves.items())):
            x = np.asarray(c["labels"])
            mean = np.asarray(c[metric]["mean"])
            std = np.asarray(c[metric]["std"])
            # Distinct markers: two strategies can coincide (margin and entropy on two classes).
            style = "--" if strategy == "random" else "-"
            ax.plot(x, mean, style, marker="os^vDx"[k % 6], markersize=3, label=strategy, linewidth=1.4)
            ax.fill_between(x, mean - std, mean + std, alpha=0.15)
            if metric == "ece" and "ece_floor" in c and strategy == "random":
                ax.plot(x, c["ece_floor"]["mean"], ":", color="gray", linewidth=1.2,
                        label="noise floor (perfect calibration)")
        ax.set_xlabel("labels")
        ax.set_title({"accuracy": "test accuracy", "macro_f1": "test macro-F1",
                      "ece": "test ECE (calibrated champion)"}[metric])
        ax.grid(alpha=0.3)
    axes[0].legend(loc="lower right")
    if any("ece_floor" in c for c in curves.values()):
        axes[METRICS.index("ece")].legend(loc="upper right", fontsize=7)
    if title:
        fig.suptitle(title)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


_AGREEMENT_FIGURES = ("alpha", "fleiss_kappa", "cohen_kappa")


def noise_summary(records: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """The label-noise targets per seed, from the last record of each curve (docs/REPLAY.md, "Label noise").

    Curves are told apart by their team tag: no ``flip`` (clean), ``flip`` without ``review`` (noisy),
    ``flip`` with ``review``. Per seed: the flags' precision/recall on the noisy curve, the accuracy lost
    to noise (clean - noisy) and the share of it review recovered ((review - noisy) / lost; None when
    nothing was lost), for the champion and for the newest model, all at the same labels spent, and
    whether each agreement interval contains the simulation's true value.
    """
    last: dict[int, dict[str, dict[str, Any]]] = defaultdict(dict)
    for r in records:
        tag = r["strategy"]
        kind = "review" if "review" in tag else "noisy" if "flip" in tag else "clean"
        seed = int(r["seed"])
        if kind not in last[seed] or r["labels"] >= last[seed][kind]["labels"]:
            last[seed][kind] = r
    out: dict[str, Any] = {}
    for seed, runs in sorted(last.items()):
        row: dict[str, Any] = {
            k: {"labels": v["labels"], "accuracy": v["accuracy"], "newest_accuracy": v.get("newest_accuracy")}
            for k, v in runs.items()
        }
        noisy = runs.get("noisy")
        if noisy and "flag_recall" in noisy:
            row["flag_precision"], row["flag_recall"] = noisy["flag_precision"], noisy["flag_recall"]
            row["wrong_labels"], row["pool_labels"] = noisy["wrong_labels"], noisy["pool_labels"]
        if noisy and "open_recall" in noisy:
            # every label under suspicion after the last run (the "flagged top 10 %")
            row["open_flagged"], row["open_flagged_wrong"] = noisy["flags_waiting"], noisy["open_flagged_wrong"]
            row["open_precision"], row["open_recall"] = noisy["open_precision"], noisy["open_recall"]
        if noisy and noisy.get("held_back"):
            # What the noise loop keeps out of training (flagged, not reviewed): how many of those are
            # wrong, and what share of the wrong labels it keeps out.
            row["held_back"], row["held_back_wrong"] = noisy["held_back"], noisy["held_back_wrong"]
            row["held_back_precision"] = noisy["held_back_wrong"] / noisy["held_back"]
            wrong = noisy["wrong_labels"]
            row["held_back_recall"] = noisy["held_back_wrong"] / wrong if wrong else None
        if {"clean", "noisy", "review"} <= set(runs):
            # The champion (what the service deploys, through the promotion gate) and the newest model
            # (what the labels trained, whatever a small noisy holdout made the gate decide).
            for key, suffix in (("accuracy", ""), ("newest_accuracy", "_newest")):
                if any(runs[k].get(key) is None for k in ("clean", "noisy", "review")):
                    continue
                lost = runs["clean"][key] - runs["noisy"][key]
                row[f"accuracy_lost{suffix}"] = lost
                gained = runs["review"][key] - runs["noisy"][key]
                row[f"recovered_share{suffix}"] = gained / lost if lost > 0 else None
        if "review" in runs:
            row["reviews"], row["reviews_changed"] = runs["review"]["reviews"], runs["review"]["reviews_changed"]
        for kind in ("noisy", "review"):
            r = runs.get(kind)
            if r and "agreement_truth" in r:
                truth = r["agreement_truth"]
                row[f"agreement_{kind}"] = {
                    "truth": truth,
                    **{
                        name: {**r[name], "contains_truth": r[name]["low"] <= truth <= r[name]["high"]}
                        for name in _AGREEMENT_FIGURES
                        if name in r and r[name]["low"] is not None
                    },
                }
        out[str(seed)] = row
    return out


def write_outputs(
    records: Sequence[dict[str, Any]], out_dir: Path, *, config: dict[str, Any], title: str = ""
) -> dict[str, Any]:
    """curves.json, records.jsonl and curves.png under ``out_dir``; returns the curves.json content."""
    out_dir.mkdir(parents=True, exist_ok=True)
    curves = aggregate(records)
    summary = {"config": config, "strategies": curves, "headline": headline(curves)}
    rules = temperature_rules(records)
    if rules:
        summary["temperature_rules"] = rules
    if any("wrong_labels" in r for r in records):
        summary["label_noise"] = noise_summary(records)
    (out_dir / "curves.json").write_text(json.dumps(summary, indent=2))
    with (out_dir / "records.jsonl").open("w") as fh:
        for r in records:
            fh.write(json.dumps(r) + "\n")
    plot(curves, out_dir / "curves.png", title=title)
    return summary
