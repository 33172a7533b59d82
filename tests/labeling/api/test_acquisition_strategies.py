"""Acquisition strategies: the project's choices are modelsvc's registry, and only a batch-aware
strategy passes over near-copies of what other annotators hold."""

from __future__ import annotations

import pytest

from labeling.models import AcquisitionStrategy, Project
from modelsvc.acquisition import REGISTRY

pytestmark = pytest.mark.django_db


def test_the_django_choices_are_the_registry() -> None:
    assert AcquisitionStrategy.choices == [(s.name, s.label) for s in REGISTRY.values()]
    field = Project._meta.get_field("acquisition_strategy")
    assert [value for value, _ in field.choices] == list(REGISTRY)
    assert field.default in REGISTRY and REGISTRY[field.default].batch_aware


def next_item(client, project):
    return client.post(f"/api/v1/projects/{project.pk}/queue/next").json()


@pytest.mark.parametrize(("strategy", "pushed_back"), [("diverse", True), ("bald", False)])
def test_near_copies_are_passed_over_only_by_a_batch_aware_strategy(
    annotator_client, other_client, project, docs, champion, strategy, pushed_back
):
    project.acquisition_strategy = strategy
    project.save(update_fields=["acquisition_strategy"])
    by_score = sorted(docs, key=lambda d: d.predictions.get().acquisition_score, reverse=True)
    by_score[1].predictions.update(map_x=11.0, map_y=0.0)  # on the best document's map point
    assert next_item(annotator_client, project)["document"]["id"] == by_score[0].pk
    second = next_item(other_client, project)
    assert second["document"]["id"] == (by_score[2] if pushed_back else by_score[1]).pk
    assert second["reason"]["strategy"] == strategy
