"""Batch slice selection (attack.slices, attack.series) and the per-series verdict."""

from __future__ import annotations

from pathlib import Path

import pytest

from ctrobust.config import ConfigError, load_config
from ctrobust.selection import select_rows, slice_label
from ctrobust.verdict import MethodFigures, NoiseLevelAttack, series_verdicts


def _metas() -> list[dict[str, object]]:
    """Two series of five slices each, InstanceNumbers 11..15 and 1..5."""
    a = [
        {"series": "1.2.3", "patient": "P1", "slice": i, "instance": 11 + i, "z": -3.0 * i}
        for i in range(5)
    ]
    b = [
        {"series": "1.2.4", "patient": "P2", "slice": i, "instance": 1 + i, "description": "LUNG"}
        for i in range(5)
    ]
    return a + b


def test_slice_specs_choose_per_series() -> None:
    metas = _metas()
    rows = range(len(metas))
    assert select_rows(metas, rows, "all") == list(rows)
    assert select_rows(metas, rows, "first:2") == [0, 1, 5, 6]
    assert select_rows(metas, rows, "every:2") == [0, 2, 4, 5, 7, 9]
    assert select_rows(metas, rows, [12, 3]) == [1, 7]
    assert select_rows(metas, rows, [slice_label(metas[4])]) == [4]


def test_series_by_uid_description_or_patient() -> None:
    metas = _metas()
    rows = range(len(metas))
    assert select_rows(metas, rows, "all", ["LUNG"]) == [5, 6, 7, 8, 9]
    assert select_rows(metas, rows, "first:1", ["P1"]) == [0]
    assert select_rows(metas, rows, "first:1", ["1.2.4"]) == [5]
    with pytest.raises(ValueError, match="attack.series: 'nope'"):
        select_rows(metas, rows, "all", ["nope"])


def test_label_names_instance_number_and_z() -> None:
    assert slice_label(_metas()[2]) == "P1:1.2.3:IN13 z=-6.0mm"


@pytest.mark.parametrize("spec", ["'first:0'", "'some'", "'every:x'", "[]"])
def test_bad_slice_spec_is_a_one_line_error_naming_the_key(tmp_path: Path, spec: str) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(f"name: x\nattack:\n  slices: {spec}\n")
    with pytest.raises(ConfigError, match=r"attack\.slices") as error:
        load_config(path)
    assert "\n" not in str(error.value)


def _figures(error: list[float], random_error: list[float], rms: list[float]) -> MethodFigures:
    n = len(error)
    return MethodFigures(
        label="net",
        psnr=[30.0 + i for i in range(n)],
        ssim=[0.9] * n,
        error_per_eps=[[1.0] * n, [float(i) for i in range(n)]],
        at_noise=NoiseLevelAttack(
            eps_abs=[1.0] * n, error=error, random_error=random_error, rms_change_hu=rms
        ),
    )


def test_verdict_fails_on_the_slice_past_a_threshold_and_names_it() -> None:
    series = ["A", "A", "B", "B"]
    labels = ["a1", "a2", "b1", "b2"]
    # series A: ratios 1.2, 1.4 and 10, 20 HU pass; series B: slice b2 is 3x the random error
    figures = _figures([1.2, 1.4, 1.0, 3.0], [1.0, 1.0, 1.0, 1.0], [10.0, 20.0, 5.0, 5.0])
    result = series_verdicts(
        series, labels, {"B": "LUNG"}, {"net": figures}, [0.01, 0.05], k_ratio=1.5, max_rms_hu=25
    )
    a, b = result.series
    assert (a.series, a.passed, b.series, b.passed) == ("A", True, "B", False)
    assert b.worst_slice == "b2" and a.worst_slice == "a2"
    assert a.ratio == pytest.approx(1.4) and a.rms_hu == pytest.approx(20.0)
    assert b.rho_hat == pytest.approx([1.0, 2.5])  # mean of slices 2 and 3 at the second eps
    assert a.psnr == pytest.approx(30.5)
    assert "PASSES" in a.sentence and "FAILS" in b.sentence and "(LUNG)" in b.sentence
    assert "1.5 x" in result.rule and "25 HU" in result.rule


def test_rms_threshold_alone_fails_a_series() -> None:
    figures = _figures([1.0], [1.0], [30.0])
    (v,) = series_verdicts(
        ["A"], ["a1"], {}, {"net": figures}, [0.01, 0.05], k_ratio=1.5, max_rms_hu=25
    ).series
    assert not v.passed and v.ratio == pytest.approx(1.0)
