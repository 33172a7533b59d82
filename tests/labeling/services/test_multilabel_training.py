"""A multi-label project trains, promotes, scores, ranks its queue and answers /predict with sets.

Real PostgreSQL, the real packaged encoder, real crowd-labeled disaster messages (35 labels); the
TRAIN task's work runs in this process, as in ``test_training``.
"""

from __future__ import annotations

import functools

import numpy as np
import pytest
from django.utils import timezone

from labeling.labelspace import MULTI_LABEL, MultiLabel
from labeling.models import (
    Annotation,
    Document,
    ModelStatus,
    ModelVersion,
    Prediction,
    Project,
    RunStatus,
    Split,
    default_label_keys,
)
from labeling.selectors.models import champion_get
from labeling.services.modeling import predict_texts
from labeling.services.scoring import project_score_pending
from tests.factories import ProjectFactory, UserFactory
from tests.support.fixtures import shared_embedding_cache, train_now  # noqa: F401

pytestmark = [pytest.mark.django_db, pytest.mark.slow]


@functools.cache
def _disaster() -> tuple[list[str], list[str], list[str]]:
    from modelsvc.datasets import load_multilabel

    data = load_multilabel("disaster")
    rows = [i for i, part in enumerate(data.split) if part == "train"]
    sets = data.label_sets()
    seen: set[str] = set()
    keep = [i for i in rows if not (data.texts[i] in seen or seen.add(data.texts[i]))]
    return [data.texts[i] for i in keep], [sets[i] for i in keep], data.label_names


def _project(pool: int, holdout: int, unlabeled: int) -> Project:
    texts, sets, names = _disaster()
    project = ProjectFactory(task_type=MULTI_LABEL, labels=default_label_keys(names), retrain_after=10)
    annotator = UserFactory()
    now = timezone.now()
    docs = []
    for i in range(pool + holdout + unlabeled):
        split = Split.HOLDOUT if pool <= i < pool + holdout else Split.POOL
        doc = Document(project=project, text=texts[i], gold_label=sets[i], split=split, content_hash="")
        doc.save()
        docs.append(doc)
    labeled = docs[: pool + holdout]
    Annotation.objects.bulk_create(
        [
            Annotation(
                document=d,
                project_id=d.project_id,
                annotator=annotator,
                label=d.gold_label,
                created_at=now,
                updated_at=now,
            )
            for d in labeled
        ]
    )
    Document.objects.filter(pk__in=[d.pk for d in labeled]).update(is_labeled=True)
    return project


def _contradict(project: Project) -> None:
    """Two more annotators answer every pool document with the complement of its set: the majority flips."""
    space = project.label_space
    assert isinstance(space, MultiLabel)
    now = timezone.now()
    for _ in range(2):
        user = UserFactory()
        Annotation.objects.bulk_create(
            [
                Annotation(
                    document=d,
                    project_id=d.project_id,
                    annotator=user,
                    label=space.store(set(space.names) - set(space.parse(d.gold_label))),
                    created_at=now,
                    updated_at=now,
                )
                for d in project.documents.filter(split=Split.POOL, is_labeled=True)
            ]
        )


@pytest.mark.usefixtures("shared_embedding_cache")
def test_a_multi_label_project_trains_promotes_scores_and_predicts_sets() -> None:
    project = _project(pool=150, holdout=60, unlabeled=40)
    run = train_now(project)
    assert run.status == RunStatus.SUCCEEDED and run.promoted, run.error
    assert run.decision_reason.startswith("first model")
    champion = champion_get(project_id=project.pk)
    assert champion is not None and champion == run.model_version
    assert champion.thresholds is not None and len(champion.thresholds) == 35
    assert all(0.0 < t < 1.0 for t in champion.thresholds)
    metrics = champion.metrics
    assert metrics["evaluated_on"] == "holdout" and metrics["holdout_count"] == 60
    for key in ("micro_f1", "macro_f1", "subset_accuracy", "hamming_loss", "example_f1", "ece_mean"):
        assert key in metrics, key
    assert metrics["micro_f1"] > 0.3  # 150 real messages: well above predicting nothing (0)

    # scoring writes stored sets at the version's thresholds; the queue score is the summed per-label BALD
    report = project_score_pending(project_id=project.pk)
    assert report.scored == 250
    space = project.label_space
    preds = list(Prediction.objects.filter(model_version=champion))
    for p in preds:
        assert space.store(space.parse(p.predicted_label)) == p.predicted_label
        probs = np.asarray(p.probabilities)
        chosen = {space.names[j] for j in np.flatnonzero(probs >= np.asarray(champion.thresholds))}
        assert set(space.parse(p.predicted_label)) == chosen
        assert p.acquisition_score == pytest.approx(p.mutual_info) and p.mutual_info >= 0
    assert any(p.predicted_label for p in preds)

    answers = predict_texts(project=project, texts=["We need water and food in Leogane, please help"])
    assert set(answers[0]["labels"]) <= set(space.names) and len(answers[0]["probabilities"]) == 35
    assert answers[0]["recommendation"] in ("auto_accept", "review", "escalate")
    assert answers[0]["label"] == space.store(answers[0]["labels"])

    # a challenger trained on contradicted labels loses on the holdout's example F1
    _contradict(project)
    bad = train_now(project)
    assert bad.status == RunStatus.SUCCEEDED and bad.promoted is False, bad.error
    assert "rejected" in bad.decision_reason and "example F1" in bad.decision_reason
    challenger = ModelVersion.objects.get(pk=bad.model_version_id)
    assert challenger.status == ModelStatus.REJECTED
    assert challenger.metrics["example_f1"] < challenger.metrics["champion_holdout_example_f1"]
    assert champion_get(project_id=project.pk) == champion
