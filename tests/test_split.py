"""Train/val/test split: patient-disjoint wherever the patients allow it."""

from __future__ import annotations

import pytest

from ctrobust.simulation import patients_in_several_splits, split_indices


def _meta(patients: dict[str, int]) -> list[dict[str, object]]:
    return [
        {"patient": p, "series": f"s{p}", "slice": k}
        for p, count in patients.items()
        for k in range(count)
    ]


@pytest.mark.parametrize(
    "patients",
    [{"a": 5, "b": 4, "c": 6}, {"p1": 3, "p2": 3, "p3": 3, "p4": 3, "p5": 3}],
)
def test_three_or_more_patients_give_patient_disjoint_train_val_test(patients):
    meta = _meta(patients)
    split = split_indices(meta, test_fraction=0.34, val_fraction=0.15)
    assert all(split[name] for name in ("train", "val", "test"))
    assert sorted(split["train"] + split["val"] + split["test"]) == list(range(len(meta)))
    assert patients_in_several_splits(split, meta) == {}
    owners = {name: {meta[i]["patient"] for i in idx} for name, idx in split.items()}
    assert not owners["train"] & owners["val"]
    assert not owners["val"] & owners["test"]


def test_no_validation_when_asked_for_none():
    meta = _meta({"a": 5, "b": 4, "c": 6})
    split = split_indices(meta, test_fraction=0.34, val_fraction=0.0)
    assert split["val"] == [] and patients_in_several_splits(split, meta) == {}


def test_two_patients_validate_on_the_training_patient_and_say_so():
    meta = _meta({"a": 10, "b": 4})
    split = split_indices(meta, test_fraction=0.34, val_fraction=0.2)
    assert {meta[i]["patient"] for i in split["test"]} == {"b"}
    assert len(split["val"]) == 2
    assert patients_in_several_splits(split, meta) == {"a": ["train", "val"]}


def test_one_patient_is_split_by_blocks_and_reported_as_shared():
    meta = _meta({"solo": 10})
    split = split_indices(meta, test_fraction=0.3, val_fraction=0.2)
    assert split["test"] == [7, 8, 9]
    assert patients_in_several_splits(split, meta) == {"solo": ["test", "train", "val"]}


def test_shared_patients_found_in_a_hand_made_split():
    meta = _meta({"a": 2, "b": 2})
    assert patients_in_several_splits({"train": [0, 2], "test": [1, 3]}, meta) == {
        "a": ["test", "train"],
        "b": ["test", "train"],
    }
