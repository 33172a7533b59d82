"""Replay on real data (a few hundred rt-snippets): the service's loop produces curves and a plot."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from labeling.models import Annotation, Project
from labeling.replay import curves

pytestmark = [pytest.mark.slow]


@pytest.mark.django_db(transaction=True)
def test_fast_replay_writes_curves_and_plot_from_the_real_loop(tmp_path: Path) -> None:
    out = tmp_path / "replay"
    call_command(
        "replay", "--data", "rt-snippets", "--strategy", "random,bald", "--budget", "50", "--batch", "25",
        "--seeds", "1", "--test-size", "100", "--pool-size", "200", "--out", str(out),
    )

    summary = json.loads((out / "curves.json").read_text())
    assert summary["config"]["pool_documents"] == 200
    assert summary["config"]["test_documents"] == 100
    for strategy in ("random", "bald"):
        curve = summary["strategies"][strategy]
        assert curve["labels"] == [25, 50]  # one record per batch of 25 labels
        for metric in ("accuracy", "macro_f1", "ece", "ece_floor", "ece_test_optimal_temperature"):
            assert len(curve[metric]["mean"]) == 2
            assert all(0.0 <= v <= 1.0 for v in curve[metric]["mean"])
    headline = summary["headline"]
    assert headline["baseline_budget"] == 50
    assert headline["labels_to_match_baseline"]["random"] in (25, 50)
    assert set(headline["max_mean_ece_floor_from"]) == {"random", "bald"}
    records = [json.loads(line) for line in (out / "records.jsonl").read_text().splitlines()]
    assert [r["labels"] for r in records] == [25, 50, 25, 50]
    assert all(r["model_version"] >= 1 and r["model_train_labels"] > 0 for r in records)
    # Diagnosis beside the deployed temperature: the one the test split itself would choose.
    assert all(r["temperature"] > 0 and r["temperature_test_optimal"] > 0 for r in records)
    assert all(0.0 <= r["ece_test_optimal_temperature"] <= 1.0 for r in records)
    assert {r["temperature_source"] for r in records} <= {"holdout", "pool_out_of_fold"}
    assert (out / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # Throwaway projects are removed: the replay leaves nothing in the database.
    assert not Project.objects.filter(name__startswith="replay ").exists()
    assert not Annotation.objects.exists()


@pytest.mark.django_db
def test_replay_refuses_unknown_strategies(tmp_path: Path) -> None:
    with pytest.raises(CommandError, match="unknown strategies"):
        call_command("replay", "--data", "rt-snippets", "--strategy", "psychic", "--out", str(tmp_path))


def test_curves_average_over_seeds_and_find_where_random_is_matched(tmp_path: Path) -> None:
    records = [
        {"strategy": s, "seed": seed, "labels": n, "accuracy": acc, "macro_f1": acc, "ece": 0.02}
        for s, seed, n, acc in [
            ("random", 0, 100, 0.60), ("random", 1, 100, 0.62),
            ("random", 0, 200, 0.70), ("random", 1, 200, 0.72),
            ("bald", 0, 100, 0.70), ("bald", 1, 100, 0.72), ("bald", 0, 200, 0.80), ("bald", 1, 200, 0.80),
            ("bald", 0, 300, 0.90),  # only one seed got here: not averaged
        ]
    ]
    summary = curves.write_outputs(records, tmp_path, config={})
    bald = summary["strategies"]["bald"]
    assert bald["labels"] == [100, 200]
    assert bald["accuracy"]["mean"] == pytest.approx([0.71, 0.80])
    assert bald["accuracy"]["std"] == pytest.approx([0.01, 0.0])
    assert summary["headline"]["labels_to_match_baseline"] == {"random": 200, "bald": 100}
    assert summary["headline"]["max_mean_ece_from"]["bald"] is None  # no point at 500+ labels
    assert (tmp_path / "curves.png").exists()
