import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from modelsvc.cli import build_parser, main
from modelsvc.config import ModelConfig, TrainConfig
from tests.modelsvc.conftest import toy_corpus

REQUIRED = {"accuracy", "macro_f1", "ece", "ece_uncalibrated", "nll", "brier", "auroc_error"}


@pytest.fixture()
def trained_dir(tiny_encoder_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    texts, labels = toy_corpus(40)
    pd.DataFrame({"text": texts, "label": labels}).to_csv(tmp_path / "train.csv", index=False)
    out = tmp_path / "model"
    rc = main(
        [
            "train",
            "--data",
            str(tmp_path / "train.csv"),
            "--out",
            str(out),
            "--seed",
            "1",
            "--encoder",
            str(tiny_encoder_dir),
            "--max-length",
            "16",
            "--epochs",
            "20",
            "--samples",
            "4",
        ]
    )
    assert rc == 0
    capsys.readouterr()
    return out


def test_train_score_evaluate_across_formats(
    trained_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    texts, labels = toy_corpus(10, seed=2)
    df = pd.DataFrame({"id": [f"d{i}" for i in range(10)], "text": texts, "label": labels})
    df.to_json(tmp_path / "eval.jsonl", orient="records", lines=True)
    df.to_parquet(tmp_path / "eval.parquet")
    assert (
        main(
            [
                "score",
                "--model",
                str(trained_dir),
                "--data",
                str(tmp_path / "eval.parquet"),
                "--out",
                str(tmp_path / "scores.jsonl"),
            ]
        )
        == 0
    )
    rows = [json.loads(line) for line in (tmp_path / "scores.jsonl").read_text().splitlines()]
    assert len(rows) == 10 and rows[0]["id"] == "d0"
    for key in (
        "probabilities",
        "label",
        "confidence",
        "entropy",
        "expected_entropy",
        "mutual_info",
        "margin",
    ):
        assert key in rows[0]
    assert set(rows[0]["probabilities"]) == {"neg", "pos"}
    capsys.readouterr()
    assert main(["evaluate", "--model", str(trained_dir), "--data", str(tmp_path / "eval.jsonl"), "--json"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1 and REQUIRED <= set(json.loads(out[0]))


def _error(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    return err


def test_user_errors_are_one_line(trained_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pd.DataFrame({"body": ["x"], "label": ["pos"]}).to_csv(tmp_path / "nocol.csv", index=False)
    pd.DataFrame({"text": ["x", "y"], "label": ["pos", "maybe"]}).to_csv(tmp_path / "unknown.csv", index=False)
    (tmp_path / "empty.csv").write_text("")
    (tmp_path / "header.csv").write_text("text,label\n")
    err = _error(["evaluate", "--model", str(trained_dir), "--data", str(tmp_path / "nocol.csv")], capsys)
    assert "missing column 'text'" in err
    err = _error(["evaluate", "--model", str(trained_dir), "--data", str(tmp_path / "unknown.csv")], capsys)
    assert "unknown label 'maybe'" in err
    assert "empty" in _error(
        [
            "score",
            "--model",
            str(trained_dir),
            "--data",
            str(tmp_path / "empty.csv"),
            "--out",
            str(tmp_path / "o.jsonl"),
        ],
        capsys,
    )
    assert "no rows" in _error(["train", "--data", str(tmp_path / "header.csv"), "--out", str(tmp_path / "m")], capsys)
    assert "does not exist" in _error(
        ["evaluate", "--model", str(tmp_path / "nope"), "--data", str(tmp_path / "unknown.csv")], capsys
    )
    assert not (tmp_path / "o.jsonl").exists() and not (tmp_path / "m").exists()


def test_module_entry_point_exits_nonzero_without_traceback(tmp_path: Path) -> None:
    pd.DataFrame({"body": ["x"]}).to_csv(tmp_path / "d.csv", index=False)
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "modelsvc",
            "train",
            "--data",
            str(tmp_path / "d.csv"),
            "--out",
            str(tmp_path / "m"),
        ],
        capture_output=True,
        text=True,
        check=False,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == ["error: " + proc.stderr.strip()[len("error: ") :]]
    assert "missing column 'text'" in proc.stderr and "Traceback" not in proc.stderr


def test_train_flags_default_to_the_configs() -> None:
    parser = build_parser()
    args = parser.parse_args(["train", "--data", "x.csv", "--out", "m"])
    assert args.class_weights is TrainConfig.class_weights and args.members == ModelConfig.n_members
    assert parser.parse_args(["train", "--data", "x.csv", "--out", "m", "--class-weights"]).class_weights is True


def test_multi_label_train_score_evaluate_on_disaster_rows(
    tiny_encoder_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from modelsvc.datasets import load_multilabel

    data = load_multilabel("disaster")
    sets = data.label_sets()
    pd.DataFrame({"text": data.texts[:60], "label": sets[:60]}).to_csv(tmp_path / "ml.csv", index=False)
    common = ["--encoder", str(tiny_encoder_dir), "--max-length", "16", "--epochs", "10", "--samples", "4"]
    out = tmp_path / "ml-model"
    labels = ["--labels", ",".join(data.label_names)]
    rc = main(["train", "--data", str(tmp_path / "ml.csv"), "--multi-label", "--out", str(out), *labels, *common])
    assert rc == 0
    summary = json.loads(capsys.readouterr().out)
    assert len(summary["thresholds"]) == 35 and summary["labels"] == data.label_names
    assert (
        main(["score", "--model", str(out), "--data", str(tmp_path / "ml.csv"), "--out", str(tmp_path / "s.jsonl")])
        == 0
    )
    capsys.readouterr()
    first = json.loads((tmp_path / "s.jsonl").read_text().splitlines()[0])
    assert set(first["labels"]) <= set(data.label_names) and len(first["probabilities"]) == 35
    assert main(["evaluate", "--model", str(out), "--data", str(tmp_path / "ml.csv"), "--json"]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert metrics["n"] == 60 and {"micro_f1", "macro_f1", "subset_accuracy", "hamming_loss"} <= set(metrics)
