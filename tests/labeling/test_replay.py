"""Replay on real data (a few hundred rt-snippets): the service's loop produces curves and a plot."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from django.core.management import CommandError, call_command

from labeling.models import Annotation, Project
from labeling.replay import curves
from labeling.replay.curves import DIAGNOSIS_TEMPERATURES
from labeling.replay.noise import open_flags_precision_recall
from labeling.replay.team import TeamPolicy, TeamState

pytestmark = [pytest.mark.slow]


@pytest.mark.django_db(transaction=True)
def test_fast_replay_writes_curves_and_plot_from_the_real_loop(tmp_path: Path) -> None:
    out = tmp_path / "replay"
    call_command(
        "replay", "--data", "rt-snippets", "--strategy", "random,bald", "--budget", "50", "--batch", "25",
        "--seeds", "1", "--test-size", "100", "--pool-size", "200", "--holdout-interleave", "0.3", "--out", str(out),
    )

    summary = json.loads((out / "curves.json").read_text())
    assert summary["config"]["pool_documents"] == 200
    assert summary["config"]["test_documents"] == 100
    assert summary["config"]["policy"] == {"holdout_interleave": 0.3}  # a project policy override
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
    # Curves over a fixed temperature grid, so another temperature rule can be replayed from the records:
    # test ECE at each grid point, and the champion on the labeled holdout (accuracy, summed NLL per point).
    for r in records:
        assert r["newest_model_version"] >= r["model_version"] and 0.0 <= r["newest_accuracy"] <= 1.0
        assert len(r["ece_by_log_temperature"]) == len(DIAGNOSIS_TEMPERATURES)
        assert all(0.0 <= v <= 1.0 for v in r["ece_by_log_temperature"])
        assert r["n_holdout"] >= 0
        if r["n_holdout"]:
            assert 0.0 <= r["holdout_accuracy"] <= 1.0
            assert len(r["holdout_nll_by_log_temperature"]) == len(DIAGNOSIS_TEMPERATURES)
            assert all(v >= 0 for v in r["holdout_nll_by_log_temperature"])
    assert (out / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # Throwaway projects are removed: the replay leaves nothing in the database.
    assert not Project.objects.filter(name__startswith="replay ").exists()
    assert not Annotation.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_noisy_team_replay_flags_reviews_and_measures_agreement(tmp_path: Path) -> None:
    out = tmp_path / "noisy"
    call_command(
        "replay", "--data", "rt-snippets", "--strategy", "random", "--budget", "100", "--batch", "50",
        "--seeds", "1", "--test-size", "100", "--pool-size", "300", "--holdout-interleave", "0.3",
        "--flip-rate", "0.3", "--holdout-overlap", "2", "--review-share", "0.1", "--hold-flagged",
        "--out", str(out),
    )
    summary = json.loads((out / "curves.json").read_text())
    assert summary["config"]["team"] == {
        "flip_rate": 0.3, "annotator_flip_rates": [], "holdout_overlap": 2, "review_share": 0.1,
        "hold_flagged": True,
    }
    records = [json.loads(line) for line in (out / "records.jsonl").read_text().splitlines()]
    assert {r["strategy"] for r in records} == {"random flip0.3 overlap2 review0.1 hold"}
    last = records[-1]
    assert last["wrong_labels"] > 0  # 30% of the answers were flipped
    assert last["flagged"] >= 1 and 0.0 <= last["flag_precision"] <= 1.0 and 0.0 <= last["flag_recall"] <= 1.0
    assert 1 <= last["reviews"] and 0 <= last["reviews_changed"] <= last["reviews"]
    # With --hold-flagged, flagged labels nobody reviewed yet are held back from training (they are
    # still pool labels).
    assert 0 <= last["held_back_wrong"] <= last["held_back"] == last["flags_waiting"] <= last["pool_labels"]
    # Labels spent: every answer (second opinions on the holdout too) and every review.
    assert last["labels"] >= last["pool_labels"] + 2 * last["holdout_rated"] + last["reviews"]
    for name in ("alpha", "fleiss_kappa", "cohen_kappa"):
        figure = last[name]
        assert figure["n_items"] == last["holdout_rated"] > 0
        assert figure["value"] is None or figure["low"] <= figure["value"] <= figure["high"]
    assert 0.0 < last["agreement_truth"] < 1.0
    assert not Project.objects.filter(name__startswith="replay ").exists()


@pytest.mark.django_db(transaction=True)
def test_replay_runs_the_deep_tier_beside_the_frozen_service_and_the_plain_baseline(tmp_path: Path) -> None:
    out = tmp_path / "deep"
    call_command(
        "replay", "--data", "rt-snippets", "--strategy", "random", "--budget", "75", "--batch", "25",
        "--seeds", "1", "--test-size", "100", "--pool-size", "200", "--deep-every", "50", "--deep-tier", "top1",
        "--plain-baseline", "--out", str(out),
    )
    summary = json.loads((out / "curves.json").read_text())
    assert summary["config"]["deep_every"] == 50 and summary["config"]["deep_tier"] == "top1"
    assert set(summary["strategies"]) == {"random deep50-top1", "random", "plain baseline"}
    assert summary["strategies"]["plain baseline"]["labels"] == [25, 50, 75]
    records = [json.loads(line) for line in (out / "records.jsonl").read_text().splitlines()]
    deep = [r for r in records if r["strategy"] == "random deep50-top1"]
    frozen = [r for r in records if r["strategy"] == "random"]
    # The first model is fast; the run whose pool labels (the holdout's are not counted) first reach 50 is
    # deep, once: with a tenth of the leases on the holdout that is the round of 75 labels, not of 50.
    tiers = [r["tier"] for r in deep]
    assert tiers[0] == "fast" and tiers.count("deep") == 1, tiers
    assert all(r["train_s"] > 0 for r in deep)
    assert {r["tier"] for r in frozen} == {"fast"}


@pytest.mark.django_db
def test_replay_refuses_a_deep_tier_that_does_not_tune(tmp_path: Path) -> None:
    with pytest.raises(CommandError, match="--deep-tier"):
        call_command(
            "replay", "--data", "rt-snippets", "--deep-every", "50", "--deep-tier", "frozen", "--out", str(tmp_path)
        )


@pytest.mark.django_db
def test_replay_refuses_a_bad_team(tmp_path: Path) -> None:
    with pytest.raises(CommandError, match="holdout_overlap"):
        call_command("replay", "--data", "rt-snippets", "--holdout-overlap", "6", "--out", str(tmp_path))


def test_simulated_annotators_flip_at_their_rate() -> None:
    state = TeamState(TeamPolicy(annotator_flip_rates=(0.0, 0.5)), ["a", "b", "c"], np.random.default_rng(0))
    assert all(state.answer(0, "a") == "a" for _ in range(200))
    flipped = [state.answer(1, "a") for _ in range(2000)]
    assert 0.45 < np.mean([x != "a" for x in flipped]) < 0.55
    assert {"b", "c"} <= set(flipped)
    assert TeamPolicy().tag() == "" and TeamPolicy(flip_rate=0.15, review_share=0.1).tag() == "flip0.15 review0.1"
    held = TeamPolicy(flip_rate=0.15, hold_flagged=True)
    assert held.tag() == "flip0.15 hold" and held.project_policy() == {"noise_hold_flagged": True}
    assert "noise_hold_flagged" not in TeamPolicy(flip_rate=0.15).project_policy()  # default: flags train
    with pytest.raises(ValueError):
        TeamPolicy(review_share=0.6)


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


def test_temperature_rules_replay_a_prior_from_the_recorded_grids() -> None:
    grid = np.log(DIAGNOSIS_TEMPERATURES)
    ece = [abs(g - np.log(2.0)) / 10 for g in grid]  # the test split wants T = 2

    def record(seed: int, labels: int, source: str) -> dict[str, object]:
        return {
            "strategy": "margin", "seed": seed, "labels": labels, "ece": 0.05, "temperature_source": source,
            "temperature_pool_out_of_fold": 4.0,  # the prior's centre
            "holdout_nll_by_log_temperature": [100 * (g - np.log(1.0)) ** 2 for g in grid],  # holdout: T = 1
            "ece_by_log_temperature": ece,
        }

    records = [record(0, 500, "holdout"), record(0, 525, "pool_out_of_fold"), record(1, 500, "holdout"),
               record(1, 475, "holdout")]  # below 500 labels: not counted
    # The holdout alone picks T = 1; a tight prior pulls to the out-of-fold 4; without the holdout, 4.
    alone_t = DIAGNOSIS_TEMPERATURES[curves.rule_temperature_index(records[0], None)]
    tight_t = DIAGNOSIS_TEMPERATURES[curves.rule_temperature_index(records[0], 0.01)]
    assert alone_t == pytest.approx(1.0, rel=0.04)
    assert tight_t == pytest.approx(4.0, rel=0.04)
    assert DIAGNOSIS_TEMPERATURES[curves.rule_temperature_index(records[1], None)] == pytest.approx(4.0, rel=0.04)
    weak = DIAGNOSIS_TEMPERATURES[curves.rule_temperature_index(records[0], 0.3)]
    assert alone_t < weak < tight_t  # between the holdout alone and the tight prior
    # Precision weighting in log T: 100 g^2 + (g - log 4)^2 / (2 * 0.3^2) is least at g = log 4 / (1 + 18).
    assert weak == pytest.approx(np.exp(np.log(4.0) / 19), rel=0.04)

    table = curves.temperature_rules(records)["margin"]
    assert table["seeds"] == [0, 1] and table["deployed"] == [0.05, 0.05]
    alone = np.log(2.0) / 10  # |log 1 - log 2| / 10, the same at T = 4
    assert table["holdout alone"] == pytest.approx([alone, alone], abs=0.01)
    assert set(table) == {"seeds", "deployed", *curves.TEMPERATURE_RULES}
    older = {k: v for k, v in records[0].items() if k != "ece_by_log_temperature"}
    assert curves.temperature_rules([older]) == {}  # a replay without the grids: nothing to replay


def test_noise_summary_reads_the_targets_off_the_last_round_of_each_curve() -> None:
    figure = {"value": 0.5, "low": 0.4, "high": 0.6, "n_items": 100}
    base = {"seed": 0, "labels": 1000}
    records = [
        {**base, "strategy": "random overlap2", "accuracy": 0.80, "wrong_labels": 0},
        {**base, "labels": 500, "strategy": "random flip0.15 overlap2", "accuracy": 0.60},
        {**base, "strategy": "random flip0.15 overlap2", "accuracy": 0.70, "wrong_labels": 120, "pool_labels": 800,
         "flag_precision": 0.8, "flag_recall": 0.6, "agreement_truth": 0.45, "alpha": figure,
         "held_back": 80, "held_back_wrong": 60, "flags_waiting": 80, "open_flagged_wrong": 60,
         "open_precision": 0.75, "open_recall": 0.5},
        {**base, "strategy": "random flip0.15 overlap2 review0.1", "accuracy": 0.76, "reviews": 90,
         "reviews_changed": 60, "agreement_truth": 0.65, "alpha": figure},
    ]
    row = curves.noise_summary(records)["0"]
    assert row["noisy"] == {"labels": 1000, "accuracy": 0.70, "newest_accuracy": None}
    assert row["accuracy_lost"] == pytest.approx(0.10) and row["recovered_share"] == pytest.approx(0.6)
    assert (row["flag_precision"], row["flag_recall"], row["reviews_changed"]) == (0.8, 0.6, 60)
    assert (row["held_back_precision"], row["held_back_recall"]) == (0.75, 0.5)
    # every open flag against every wrong label: the "flagged top 10 % holds half of the wrong labels"
    assert (row["open_flagged"], row["open_flagged_wrong"], row["open_precision"], row["open_recall"]) == (
        80, 60, 0.75, 0.5
    )
    assert open_flags_precision_recall({1, 2, 3, 4}, {2, 3, 9}) == (0.5, pytest.approx(2 / 3))
    assert open_flags_precision_recall(set(), set()) == (0.0, 1.0)
    assert row["agreement_noisy"]["alpha"]["contains_truth"] is True
    assert row["agreement_review"]["alpha"]["contains_truth"] is False
