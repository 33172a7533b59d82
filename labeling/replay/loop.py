"""The replay loop: a simulated annotator team answers the service's own queue from gold labels.

Per (strategy, seed) the replay creates a throwaway project in the configured database (deleted
at the end unless ``keep``), imports the pool through the import service (the holdout is drawn by
``document_bulk_create`` as for any project), and then repeats:

1. ``batch`` simulated annotators each take a lease with ``assignments.assignment_next`` (so the
   holdout interleave, the cold-start order and, for a batch-aware strategy, the near-copy rule all
   apply: the same definition the live queue uses);
2. each answers with the document's gold label through ``annotations.annotation_submit``;
3. the tasks those labels sent run in-process (``EagerTasks``): the retrain check, the training
   run (train, calibrate, evaluate on the labeled holdout, promote or not), the pool re-score;
4. the champion is evaluated on the seed's fixed test split, which never enters the project.

Label counts include the holdout items the queue interleaves (the service spends them too).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser

from labeling.labelspace import SINGLE_LABEL, label_space
from labeling.models import (
    Annotation,
    AnnotationSource,
    Document,
    ModelVersion,
    Project,
    RunTrigger,
    TrainingRun,
)
from labeling.models import Split as DocumentSplit
from labeling.replay.curves import DIAGNOSIS_TEMPERATURES
from labeling.replay.eager import EagerTasks
from labeling.replay.noise import team_round
from labeling.replay.team import TeamPolicy, TeamState
from labeling.roles import ANNOTATOR
from labeling.selectors.models import champion_get, majority_labels
from labeling.services import assignments, imports, memberships, modeling, projects
from labeling.services.annotations import annotation_submit
from labeling.services.training.triggers import training_run_request
from modelsvc.calibration import ece_mce, ece_noise_floor, evaluate_predictions, fit_temperature, tempered_samples
from modelsvc.datasets import random_split
from modelsvc.holdout import summed_nll
from modelsvc.model import Classifier
from modelsvc.multilabel import MultiLabelScore, evaluate_multilabel

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ReplayData:
    name: str
    texts: list[str]
    labels: list[str]  # stored answers: a label name, or a stored set ("a,b"; "" = none) for multi-label
    label_names: list[str]
    task_type: str = SINGLE_LABEL


@dataclass(frozen=True)
class Split:
    pool: np.ndarray  # indices into ReplayData
    test: np.ndarray


def dedupe(texts: Sequence[str], labels: Sequence[str]) -> tuple[list[str], list[str]]:
    """Keep the first of exact repeats, so no test text can also sit in the pool."""
    seen: set[str] = set()
    out_t: list[str] = []
    out_l: list[str] = []
    for t, lab in zip(texts, labels, strict=True):
        if t not in seen:
            seen.add(t)
            out_t.append(t)
            out_l.append(lab)
    return out_t, out_l


def split_for_seed(data: ReplayData, *, seed: int, test_size: int, pool_size: int | None) -> Split:
    """A stratified test split fixed by ``seed``; the pool is the rest (optionally a seeded sample)."""
    rng = np.random.default_rng(seed)
    y = np.asarray(data.labels)
    n = len(y)
    if data.task_type != SINGLE_LABEL:  # sets: a seeded random test split (no one class to stratify on)
        pool, test_idx = random_split(n, seed=seed, test_size=test_size, pool_size=pool_size)
        return Split(pool=pool, test=test_idx)
    test: list[int] = []
    for name in data.label_names:
        idx = rng.permutation(np.flatnonzero(y == name))
        test.extend(idx[: int(round(test_size * len(idx) / n))].tolist())
    test_arr = np.sort(np.asarray(test, dtype=np.int64))
    rest = np.setdiff1d(np.arange(n), test_arr)
    if pool_size is not None and pool_size < len(rest):
        rest = np.sort(rng.choice(rest, size=pool_size, replace=False))
    return Split(pool=rest, test=test_arr)


def _annotators(n: int, project: Project) -> list[AbstractBaseUser]:
    User = get_user_model()
    users = []
    for i in range(n):
        user, _ = User.objects.get_or_create(username=f"replay-annotator-{i + 1}")
        memberships.membership_ensure(project=project, user=user, role=ANNOTATOR)
        users.append(user)
    return users


def champion_metrics(project: Project, texts: list[str], y: np.ndarray) -> dict[str, Any] | None:
    """The champion's test metrics, scored through the service's model bridge (embedding cache)."""
    champion = champion_get(project_id=project.pk)
    if champion is None:
        return None
    classifier = modeling.classifier_for(champion)
    result = modeling.classifier_score(classifier, texts)
    if isinstance(result, MultiLabelScore):
        return multilabel_champion_metrics(champion, classifier, result, y)
    metrics = evaluate_predictions(result.probs_uncalibrated, result.probs, y, result.uncertainty())
    return {
        "model_version": champion.version,
        "model_train_labels": champion.train_label_count,
        **{k: metrics[k] for k in ("accuracy", "macro_f1", "ece", "ece_uncalibrated", "nll", "brier")},
        # What a perfectly calibrated model would score on this test set: the ECE's noise floor.
        "ece_floor": ece_noise_floor(result.probs),
        **temperature_diagnosis(classifier, classifier.head_inputs(texts, result.embeddings), y),
        **holdout_diagnosis(project, classifier),
        **newest_model_metrics(project, champion.version, texts, y, metrics),
    }


def multilabel_champion_metrics(
    champion: ModelVersion, classifier: Classifier, result: MultiLabelScore, y: np.ndarray
) -> dict[str, Any]:
    """A multi-label champion's test figures, under the single-label record's keys where the curves read
    them (``accuracy`` is the subset accuracy, ``ece`` the mean per-label ECE)."""
    m = evaluate_multilabel(result.probs_uncalibrated, result.probs, y, classifier.thresholds, classifier.label_names)
    return {
        "model_version": champion.version,
        "model_train_labels": champion.train_label_count,
        "accuracy": m["subset_accuracy"],
        "macro_f1": m["macro_f1"],
        "micro_f1": m["micro_f1"],
        "hamming_loss": m["hamming_loss"],
        "example_f1": m["example_f1"],
        "ece": m["ece_mean"],
        "ece_uncalibrated": m["ece_mean_uncalibrated"],
        "ece_floor": 0.0,  # no floor computed for per-label ECE
        "nll": m["nll"],
        "brier": float(((result.probs - y) ** 2).sum(1).mean()),
        "micro_f1_interval": m["intervals"]["micro_f1"],
        "macro_f1_interval": m["intervals"]["macro_f1"],
    }


def newest_model_metrics(
    project: Project, champion_version: int, texts: list[str], y: np.ndarray, champion: dict[str, Any]
) -> dict[str, Any]:
    """The newest trained model on the test split, promoted or not (diagnosis only).

    Beside the champion's curve it is the gate's cost or gain at each round: the model trained on the
    same labels that the gate kept out (had it been promoted, later queues would differ as well).
    """
    newest = ModelVersion.objects.filter(project=project).exclude(artifact_path="").order_by("-version").first()
    metrics = champion
    if newest is not None and newest.version != champion_version:
        result = modeling.classifier_score(modeling.classifier_for(newest), texts)
        metrics = evaluate_predictions(result.probs_uncalibrated, result.probs, y, result.uncertainty())
    version = champion_version if newest is None else newest.version
    return {"newest_model_version": version, "newest_accuracy": metrics["accuracy"], "newest_ece": metrics["ece"]}


def temperature_diagnosis(classifier: Classifier, inputs: np.ndarray, y: np.ndarray) -> dict[str, Any]:
    """The deployed temperature beside the one the test split itself would choose (diagnosis only).

    ``temperature_test_optimal`` and ``ece_test_optimal_temperature`` are fitted on the test labels, so
    they are never used by the model: they show how much of the test ECE a better temperature could
    remove (the rest is not a temperature's to fix) and how far the deployed one is from it.
    """
    calibration = classifier.calibration
    logits = classifier.sample_logits(inputs)  # (N, K, C), uncalibrated; inputs: classifier.head_inputs
    optimal = fit_temperature(logits, y)
    return {
        "temperature": classifier.temperature,
        "temperature_source": calibration.get("temperature_source", "pool_out_of_fold"),
        "temperature_pool_out_of_fold": calibration.get("temperature_pool_out_of_fold", classifier.temperature),
        "n_temperature_holdout": calibration.get("n_temperature_holdout", 0),
        "temperature_test_optimal": optimal,
        "ece_test_optimal_temperature": ece_mce(tempered_samples(logits, optimal).mean(1), y)[0],
        "ece_by_log_temperature": [ece_mce(tempered_samples(logits, t).mean(1), y)[0] for t in DIAGNOSIS_TEMPERATURES],
    }


def holdout_diagnosis(project: Project, classifier: Classifier) -> dict[str, Any]:
    """The champion on the project's labeled holdout now: its size, accuracy and summed NLL per temperature.

    The holdout is the service's own data (the gate and the temperature fit read it); set beside the
    test accuracy it shows whether the gate's choice of champion flatters it on these documents.
    """
    holdout = majority_labels(project=project, split=DocumentSplit.HOLDOUT)
    if not holdout:
        return {"n_holdout": 0}
    texts = [t for _, t, _ in holdout]
    result = modeling.classifier_score(classifier, texts)
    y = label_space(project.task_type, classifier.label_names).encode([lab for _, _, lab in holdout])
    logits = classifier.sample_logits(classifier.head_inputs(texts, result.embeddings))  # (N, K, C)
    return {
        "n_holdout": len(y),
        "holdout_accuracy": float(np.mean(result.probs.argmax(1) == y)),
        "holdout_nll_by_log_temperature": [summed_nll(logits, y, math.log(t)) for t in DIAGNOSIS_TEMPERATURES],
    }


def _label_round(project: Project, team: list[AbstractBaseUser], n: int, state: TeamState) -> int:
    leases = []
    for i, user in enumerate(team[:n]):
        lease = assignments.assignment_next(project=project, annotator=user)
        if lease is not None:
            leases.append((i, user, lease))
    for i, user, lease in leases:
        gold = Document.objects.values_list("gold_label", flat=True).get(pk=lease.document_id)
        # parse: the answer as an annotator sends it (a label name, or a list of names for a set)
        answer = project.label_space.parse(state.answer(i, gold))
        annotation_submit(
            assignment=lease, user=user, source=AnnotationSource.API, **{project.label_space.answer_field: answer}
        )
    return len(leases)


def _gold_sets_write(project: Project, gold: dict[str, str]) -> None:
    docs = list(Document.objects.filter(project=project, external_id__in=list(gold)))
    for doc in docs:
        doc.gold_label = gold[doc.external_id]
    Document.objects.bulk_update(docs, ["gold_label"], batch_size=1000)


def _retrain(project: Project, eager: EagerTasks, runs_before: int) -> None:
    """Run the tasks the labels sent; if the policy's threshold did not start a run, ask for one."""
    eager.drain()
    if TrainingRun.objects.filter(project=project).count() == runs_before:
        training_run_request(project=project, trigger=RunTrigger.MANUAL)
        eager.drain()


def replay_run(
    *,
    data: ReplayData,
    split: Split,
    strategy: str,
    seed: int,
    budget: int,
    batch: int,
    eager: EagerTasks,
    keep: bool = False,
    progress: Callable[[dict[str, Any]], None] | None = None,
    policy: dict[str, Any] | None = None,
    team_policy: TeamPolicy | None = None,
    curve_suffix: str = "",
) -> list[dict[str, Any]]:
    """One learning curve: a record per round once a champion exists.

    ``policy``: project policy fields to override (e.g. ``promotion_tolerance``), else the defaults.
    ``team_policy``: noisy annotators, holdout overlap and review (``labeling.replay.team``); by default
    one noiseless answer per document. Reviews and overlap answers count as labels spent.
    ``curve_suffix``: appended to the curve's name (e.g. " deep250-top2" for the deep tier's policy).
    Each record carries the round's last run's tier and training seconds (``tier``, ``train_s``).
    """
    team_policy = team_policy or TeamPolicy()
    curve = f"{strategy}{curve_suffix} {team_policy.tag()}".strip()
    name = f"replay {data.name} {strategy} seed {seed} {time.strftime('%Y%m%d-%H%M%S')}"
    project = projects.project_create(
        name=name,
        labels=data.label_names,
        task_type=data.task_type,
        acquisition_strategy=strategy,
        retrain_after=batch,
        seed=seed,
        **(policy or {}),
        **team_policy.project_policy(),
    )
    records: list[dict[str, Any]] = []
    try:
        if data.task_type == SINGLE_LABEL:
            rows = ({"id": f"{data.name}-{i}", "text": data.texts[i], "label": data.labels[i]} for i in split.pool)
            imports.import_records(project=project, records=rows, label_col="label", external_id_col="id")
        else:
            # The import's label column takes one label name: sets are imported unlabeled and their
            # gold answers (read only by the simulated annotators) written beside them.
            rows = ({"id": f"{data.name}-{i}", "text": data.texts[i]} for i in split.pool)
            imports.import_records(project=project, records=rows, external_id_col="id")
            _gold_sets_write(project, {f"{data.name}-{i}": data.labels[i] for i in split.pool})
        eager.drain()
        team = _annotators(max(batch, team_policy.holdout_overlap), project)
        state = TeamState(team_policy, list(project.label_names), np.random.default_rng([seed, 18]))
        test_texts = [data.texts[i] for i in split.test]
        y_test = project.label_space.encode([data.labels[i] for i in split.test])
        labeled = 0
        while labeled < budget:
            t0 = time.perf_counter()
            runs_before = TrainingRun.objects.filter(project=project).count()
            got = _label_round(project, team, min(batch, budget - labeled), state)
            if got == 0:
                break  # the pool is exhausted
            _retrain(project, eager, runs_before)
            noise = {} if team_policy.is_noiseless else team_round(state, project)
            labeled = Annotation.objects.filter(project=project).count() + state.reviews
            metrics = champion_metrics(project, test_texts, y_test)
            if metrics is None:
                continue
            last = TrainingRun.objects.filter(project=project).first()
            record = {
                "strategy": curve,
                "seed": seed,
                "labels": labeled,
                "promoted": bool(last and last.promoted),
                "tier": last.tier if last else "",
                "train_s": round(last.train_seconds, 1) if last and last.train_seconds is not None else None,
                "round_s": round(time.perf_counter() - t0, 2),
                **metrics,
                **noise,
            }
            records.append(record)
            if progress:
                progress(record)
    finally:
        if not keep:
            projects.project_delete(project=project)
    return records
