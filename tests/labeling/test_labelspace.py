"""The label space: names <-> indices <-> model outputs, in one place for every task type."""

from __future__ import annotations

import numpy as np
import pytest

from labeling.labelspace import (
    TASK_TYPES,
    Consensus,
    MultiLabel,
    SingleLabel,
    label_space,
    label_space_for_model,
    label_space_for_project,
)
from labeling.models import ModelVersion, Project, TaskType, default_label_keys


def _project(names: list[str]) -> Project:
    return Project(name="p", labels=default_label_keys(names), task_type=TaskType.SINGLE_LABEL)


def test_the_task_type_choices_are_the_registry() -> None:
    assert [value for value, _ in TaskType.choices] == list(TASK_TYPES)
    assert Project._meta.get_field("task_type").default == "single_label"


def test_a_project_maps_names_to_indices_in_label_set_order() -> None:
    space = label_space_for_project(_project(["fresh", "rotten", "meh"]))
    assert isinstance(space, SingleLabel) and space.names == ("fresh", "rotten", "meh")
    assert [space.index(n) for n in ("meh", "fresh", "gone")] == [2, 0, -1]
    assert "rotten" in space and "gone" not in space
    np.testing.assert_array_equal(space.encode(["rotten", "meh", "fresh"]), [1, 2, 0])
    with pytest.raises(ValueError, match="unknown label 'gone'"):
        space.encode(["gone"])


def test_answers_are_validated_with_a_message_naming_the_set() -> None:
    space = label_space("single_label", ["fresh", "rotten"])
    assert space.validate_answer("fresh") is None
    for bad in ("maybe", 1, None, ["fresh"]):
        assert space.validate_answer(bad) == "must be one of ['fresh', 'rotten']"
    with pytest.raises(ValueError, match="unknown task type"):
        label_space("multi_label_someday", ["a", "b"])


def test_model_outputs_become_the_stored_prediction_columns() -> None:
    space = label_space_for_model(ModelVersion(label_map=["neg", "pos"]))
    probs = np.array([[0.2, 0.8], [0.9, 0.1]], dtype=np.float32)
    first, second = space.prediction_fields(probs)
    assert (first.predicted_label, second.predicted_label) == ("pos", "neg")
    assert first.confidence == pytest.approx(0.8) and second.confidence == pytest.approx(0.9)
    assert first.as_dict()["probabilities"] == [pytest.approx(0.2), pytest.approx(0.8)]
    assert space.probabilities([0.25, 0.75]) == {"neg": 0.25, "pos": 0.75}
    assert space.probabilities(None) == {}


def test_consensus_is_the_majority_and_a_tie_is_none() -> None:
    space = label_space("single_label", ["a", "b", "c"])
    majority = space.consensus(["b", "a", "a"])
    assert (majority.label, majority.reason, majority.votes) == ("a", "agreed", 3)
    assert majority.agreement == pytest.approx(2 / 3)
    tie = space.consensus(["b", "a"])
    assert (tie.label, tie.reason, tie.agreement) == (None, "tie", 0.5)
    assert space.consensus(["gone", "gone", "c"]).label == "c"  # labels no longer in the set do not vote
    assert space.consensus(["gone"]) == Consensus(None, 0.0, "no_answer", 0)
    assert space.consensus(["a"]).label == "a"  # one label is its own consensus, whatever the minimum


def test_consensus_needs_the_minimum_agreement() -> None:
    space = label_space("single_label", ["a", "b", "c"])
    assert space.consensus(["a", "a", "b"], min_agreement=0.6).label == "a"
    low = space.consensus(["a", "a", "b"], min_agreement=0.7)
    assert (low.label, low.reason) == (None, "low_agreement")
    assert space.consensus(["a", "a", "b", "c", "c"], 0.0).reason == "tie"
    assert space.consensus(["a", "a", "a"], min_agreement=1.0).label == "a"


def test_a_multi_label_answer_is_a_set_stored_in_label_set_order() -> None:
    from labeling.labelspace import MultiLabel

    space = label_space("multi_label", ["food", "water", "shelter"])
    assert isinstance(space, MultiLabel)
    assert space.validate_answer(["shelter", "food"]) is None
    assert space.validate_answer([]) is None  # no label applies
    assert "unknown labels ['fire']" in (space.validate_answer(["fire", "food"]) or "")
    assert "twice" in (space.validate_answer(["food", "food"]) or "")
    assert "must be a list" in (space.validate_answer("food") or "")
    assert space.store(["shelter", "food"]) == space.store(("food", "shelter")) == "food,shelter"
    assert space.store([]) == "" and space.parse("") == ()
    assert space.parse("food,shelter") == ("food", "shelter")
    np.testing.assert_array_equal(space.encode(["food,shelter", ["water"], ""]), [[1, 0, 1], [0, 1, 0], [0, 0, 0]])
    with pytest.raises(ValueError, match="unknown label 'fire'"):
        space.encode([["fire"]])


def test_multi_label_predictions_are_thresholded_per_label() -> None:
    space = label_space("multi_label", ["food", "water", "shelter"])
    probs = np.array([[0.9, 0.4, 0.2], [0.1, 0.1, 0.1]])
    fields = space.prediction_fields(probs)
    assert [f.predicted_label for f in fields] == ["food", ""]
    assert fields[0].confidence == pytest.approx(0.9 * 0.6 * 0.8)
    fields = space.prediction_fields(probs, thresholds=[0.95, 0.3, 0.5])
    assert fields[0].predicted_label == "water"


def test_multi_label_consensus_is_a_per_label_majority() -> None:
    space = label_space("multi_label", ["food", "water", "shelter"])
    agreed = space.consensus(["food,water", "food", "food,water"])
    assert agreed.label == "food,water" and agreed.agreed and agreed.votes == 3
    assert agreed.agreement == pytest.approx(2 / 3)  # the weakest label: water, 2 of 3
    assert space.consensus(["food", "food,water"]).reason == "tie"  # water split 1-1
    assert space.consensus(["", ""]).label == ""  # agreed that no label applies
    assert space.consensus(["food,water", "food", "food,water"], min_agreement=0.75).reason == "low_agreement"
    assert space.consensus([]).reason == "no_answer"


def test_relabel_maps_names_keeps_the_new_order_and_drops_only_what_it_is_told():
    new = MultiLabel(["water", "rations", "shelter"])
    assert new.relabel("water,food", {"food": "rations"}) == "water,rations"
    assert new.relabel("food,shelter", {"food": None}) == "shelter"
    assert new.relabel("food", {"food": None}) == ""
    merged = MultiLabel(["food", "shelter"])
    assert merged.relabel("water,food", {"water": "shelter"}) == "food,shelter"  # in the new set's order
    assert merged.relabel("water,shelter", {"water": "shelter"}) == "shelter"  # the target once
    # A name the new set does not know (split away earlier, kept as given) is kept, after the known ones.
    assert new.relabel("old,food", {"food": "rations"}) == "rations,old"
    assert new.relabel("", {"food": None}) == ""


def test_a_stored_set_naming_a_label_no_longer_in_the_set_does_not_vote():
    space = MultiLabel(["water", "food"])
    assert space.consensus(["water", "water,shelter"]).label == "water"
    assert space.consensus(["water,shelter"]).reason == "no_answer"
