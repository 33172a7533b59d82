"""Command line: ``python -m modelsvc {train,score,evaluate}``.

``--data`` is a file, or the name of a built-in data set (``modelsvc.datasets``: ``rt-snippets``,
``trec``, ``disaster``); ``--split`` picks the file's own split of a built-in that has one (disaster).
A multi-label built-in (or ``--multi-label`` with a label column of comma-joined sets) trains a sigmoid
head and evaluates with the multi-label metrics (``modelsvc.multilabel``).

User errors (missing column, unknown label, empty file, bad artifact) print one line on stderr and
exit with status 2; no traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any, get_args

import numpy as np

from modelsvc.artifacts import ArtifactError, load_classifier, save_classifier
from modelsvc.calibration import evaluate_predictions
from modelsvc.config import Features, ModelConfig, TrainConfig
from modelsvc.datasets import BUILTIN, is_multilabel, load_builtin, load_multilabel
from modelsvc.encoder import EmbeddingCache, EncoderError
from modelsvc.fitting import TrainingError, encode_labels
from modelsvc.inference import encoder_for, score_multilabel_embeddings, score_texts
from modelsvc.io import DataError, column, read_labeled, read_table
from modelsvc.multilabel import evaluate_multilabel
from modelsvc.training import train

USER_ERRORS = (DataError, ArtifactError, TrainingError, EncoderError, ValueError)


def _cache(args: argparse.Namespace) -> EmbeddingCache | None:
    return EmbeddingCache(args.cache) if args.cache else None


def _targets(sets: Sequence[str], names: Sequence[str], where: str) -> np.ndarray:
    """(N, C) 0/1 from stored sets ("a,b"; "" = none) in ``names`` order; DataError on an unknown name."""
    index = {n: i for i, n in enumerate(names)}
    y = np.zeros((len(sets), len(names)), dtype=np.float32)
    for i, stored in enumerate(sets):
        for name in filter(None, str(stored).split(",")):
            if name not in index:
                raise DataError(f"{where}: unknown label {name!r} (known: {', '.join(names)})")
            y[i, index[name]] = 1.0
    return y


def _labeled(
    args: argparse.Namespace, names: Sequence[str] | None = None, *, multi: bool = False
) -> tuple[list[str], Any, list[str], bool]:
    """(texts, labels, label names, multi-label?) from ``--data``; labels are (N, C) targets when multi-label."""
    limit = getattr(args, "limit", None)
    if args.data in BUILTIN and not Path(args.data).exists():
        if is_multilabel(args.data):
            data = load_multilabel(args.data)
            rows = [i for i, part in enumerate(data.split) if args.split in (None, part)][:limit]
            texts = [data.texts[i] for i in rows]
            return (
                texts,
                _targets([data.label_sets()[i] for i in rows], names or data.label_names, args.data),
                list(names or data.label_names),
                True,
            )
        texts, single = load_builtin(args.data)
        texts, single = texts[:limit], single[:limit]
        return texts, single, list(names or sorted(set(single))), False
    texts, labels = read_labeled(args.data, args.text_col, args.label_col)
    texts, labels = texts[:limit], labels[:limit]
    if args.multi_label or multi:
        found = names or sorted({n for s in labels for n in str(s).split(",") if n})
        return texts, _targets(labels, found, args.data), list(found), True
    return texts, labels, list(names or sorted(set(labels))), False


def cmd_train(args: argparse.Namespace) -> int:
    texts, labels, names, multi = _labeled(args, args.labels.split(",") if args.labels else None)
    if len(names) < 2:
        raise DataError(f"{args.data}: column {args.label_col!r} has fewer than 2 distinct labels")
    model_config = ModelConfig(
        encoder=args.encoder or ModelConfig.encoder,
        samples=args.samples,
        pooling=args.pooling,
        max_length=args.max_length,
        stride=args.stride if args.stride is not None else min(ModelConfig.stride, args.max_length // 4),
        n_members=args.members,
        features=args.features,
        device=args.device,
        precision=args.precision,
        output="sigmoid" if multi else "softmax",
    )
    train_config = TrainConfig(
        seed=args.seed,
        max_epochs=args.epochs,
        calibration_fraction=args.calibration_fraction,
        folds=args.folds,
        error_mapping=args.error_mapping,
        fine_tune=args.fine_tune,
        encoder_learning_rate=args.encoder_lr,
        fine_tune_epochs=args.fine_tune_epochs,
        fine_tune_refit=args.fine_tune_refit,
        class_weights=args.class_weights,
    )

    def progress(stage: str, fraction: float) -> None:
        if args.verbose:
            print(f"{stage} {fraction:.0%}", file=sys.stderr)

    result = train(
        texts,
        labels,
        label_names=names,
        model_config=model_config,
        train_config=train_config,
        cache=_cache(args),
        progress=progress,
    )
    save_classifier(result.classifier, args.out)
    summary = {
        "out": str(args.out),
        "labels": names,
        "split_sizes": result.split_sizes,
        "temperature": result.classifier.label_temperatures or result.classifier.temperature,
        "thresholds": result.classifier.thresholds,
        "encoder_id": result.classifier.encoder_id,
        "timings_s": {k: round(v, 3) for k, v in result.timings.items()},
        "calibration_metrics": result.classifier.metrics,
    }
    print(json.dumps(summary))
    return 0


def _atomic_write_lines(path: Path, lines: Sequence[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            for line in lines:
                fh.write(line + "\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def cmd_score(args: argparse.Namespace) -> int:
    clf = load_classifier(args.model)
    df = read_table(args.data)
    texts = column(df, args.text_col, args.data)
    ids = column(df, args.id_col, args.data) if args.id_col in df.columns else None
    encoder = encoder_for(clf)
    if clf.multi_label:
        records = score_multilabel_embeddings(clf, encoder.encode(texts, cache=_cache(args))).records(clf.label_names)
    else:
        records = score_texts(clf, texts, cache=_cache(args), encoder=encoder).records(clf.label_names)
    lines = []
    for i, rec in enumerate(records):
        row: dict[str, Any] = {"index": i}
        if ids is not None:
            row["id"] = ids[i]
        row.update(rec)
        lines.append(json.dumps(row))
    _atomic_write_lines(Path(args.out), lines)
    print(json.dumps({"out": str(args.out), "n": len(lines)}))
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    clf = load_classifier(args.model)
    if clf.multi_label:
        texts, targets, _, _ = _labeled(args, clf.label_names, multi=True)
        emb = encoder_for(clf).encode(texts, cache=_cache(args))
        scored = score_multilabel_embeddings(clf, emb)
        ml = evaluate_multilabel(scored.probs_uncalibrated, scored.probs, targets, clf.thresholds, clf.label_names)
        if args.json:
            print(json.dumps(ml))
        else:
            for key in (
                "n",
                "micro_f1",
                "macro_f1",
                "subset_accuracy",
                "hamming_loss",
                "example_f1",
                "ece_mean",
                "nll",
            ):
                print(f"{key:18s} {ml[key]}")
            print(f"{'intervals':18s} {json.dumps(ml['intervals'])}")
        return 0
    texts, labels = read_labeled(args.data, args.text_col, args.label_col)
    try:
        y = encode_labels(labels, clf.label_names)
    except TrainingError as exc:
        raise DataError(f"{args.data}: {exc}") from exc
    res = score_texts(clf, texts, cache=_cache(args))
    metrics = evaluate_predictions(res.probs_uncalibrated, res.probs, np.asarray(y), res.uncertainty())
    if args.json:
        print(json.dumps(metrics))
    else:
        for key in (
            "n",
            "accuracy",
            "macro_f1",
            "ece",
            "ece_uncalibrated",
            "mce",
            "nll",
            "brier",
            "auroc_error",
        ):
            print(f"{key:18s} {metrics[key]}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m modelsvc", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    def data_args(p: argparse.ArgumentParser, labeled: bool) -> None:
        p.add_argument("--data", required=True, help="CSV, JSONL or Parquet file, or a built-in data set's name")
        p.add_argument("--text-col", default="text")
        if labeled:
            p.add_argument("--label-col", default="label")
            p.add_argument("--split", help="built-in with its own split (disaster): train, validation or test")
            p.add_argument("--limit", type=int, help="only the first N rows")
            p.add_argument(
                "--multi-label", action="store_true", help="the label column holds comma-joined sets ('' = none)"
            )
        p.add_argument("--cache", default=os.environ.get("MODELSVC_CACHE"), help="embedding cache (SQLite file)")

    t = sub.add_parser("train", help="train a calibrated classifier")
    data_args(t, labeled=True)
    t.add_argument("--out", required=True, help="artifact folder to write")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--labels", help="comma-separated label order (default: sorted distinct labels)")
    t.add_argument("--encoder", help="local folder or cached hub name (default: packaged all-MiniLM-L6-v2)")
    t.add_argument("--epochs", type=int, default=TrainConfig.max_epochs, help="maximum epochs")
    t.add_argument("--samples", type=int, default=ModelConfig.samples, help="MC samples k")
    t.add_argument("--members", type=int, default=ModelConfig.n_members, help="ensemble heads per fold")
    t.add_argument(
        "--features",
        default=ModelConfig.features,
        choices=list(get_args(Features)),
        help="head input: embedding, hybrid (beside an SVD block of a TF-IDF fitted on the training texts), or sparse "
        "(a logistic regression on that TF-IDF beside the head)",
    )
    t.add_argument(
        "--folds", type=int, default=TrainConfig.folds, help="cross-fitting folds; 0 = single calibration split"
    )
    t.add_argument("--pooling", default=ModelConfig.pooling, choices=["mean", "cls", "mean_max", "mean_mid"])
    t.add_argument("--max-length", type=int, default=ModelConfig.max_length)
    t.add_argument("--stride", type=int, help="window overlap in tokens (default min(64, max_length/4))")
    t.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    t.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"])
    t.add_argument("--calibration-fraction", type=float, default=TrainConfig.calibration_fraction)
    t.add_argument("--error-mapping", default="none", choices=["none", "isotonic", "platt"])
    t.add_argument(
        "--fine-tune",
        default=TrainConfig.fine_tune,
        help="frozen (default), topN (e.g. top2: the top N encoder layers train with the head) or full",
    )
    t.add_argument("--encoder-lr", type=float, default=TrainConfig.encoder_learning_rate, help="tuned layers' lr")
    t.add_argument("--fine-tune-epochs", type=int, default=TrainConfig.fine_tune_epochs, help="most joint epochs")
    t.add_argument(
        "--fine-tune-refit",
        action=argparse.BooleanOptionalAction,
        default=TrainConfig.fine_tune_refit,
        help="retrain the tuned layers on all labels for the chosen epochs (default on)",
    )
    t.add_argument(
        "--class-weights",
        action=argparse.BooleanOptionalAction,
        default=TrainConfig.class_weights,
        help="weight the loss by inverse class frequency (default off: see docs/MODELSVC.md)",
    )
    t.add_argument("-v", "--verbose", action="store_true")
    t.set_defaults(func=cmd_train)

    s = sub.add_parser("score", help="score documents, one JSON line each")
    data_args(s, labeled=False)
    s.add_argument("--model", required=True, help="artifact folder")
    s.add_argument("--out", required=True, help="output .jsonl")
    s.add_argument("--id-col", default="id", help="copied to the output when present")
    s.set_defaults(func=cmd_score)

    e = sub.add_parser("evaluate", help="metrics on a labeled file")
    data_args(e, labeled=True)
    e.add_argument("--model", required=True, help="artifact folder")
    e.add_argument("--json", action="store_true", help="print one JSON object")
    e.set_defaults(func=cmd_evaluate)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except USER_ERRORS as exc:
        message = " ".join(str(exc).split()) or type(exc).__name__
        print(f"error: {message}", file=sys.stderr)
        return 2
