"""Typed metrics.json: the documented schema is the code's, and strict JSON holds no NaN."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from pydantic import ValidationError

from ctrobust.results import ImageIterate, Metrics, schema_markdown
from ctrobust.runfiles import atomic_write_json

DOC = Path(__file__).resolve().parents[1] / "docs" / "run_folder.md"


def test_run_folder_doc_lists_the_schema_of_the_models():
    assert schema_markdown() in DOC.read_text(), "regenerate with `python -m ctrobust.results`"


def test_a_renamed_key_is_a_validation_error_naming_it():
    with pytest.raises(ValidationError, match="rho_hats"):
        Metrics.model_validate(
            {
                "attack": {
                    "note": "",
                    "settings": {
                        "eps": [0.01],
                        "relative": True,
                        "n_iter": 1,
                        "rel_tol": None,
                        "patience": 10,
                        "start": "cold",
                        "step": 1.0,
                        "momentum": 0.5,
                        "restarts": 0,
                        "random_draws": 1,
                    },
                    "test_slices": [],
                    "models": {"fbp143": {"rho_hats": [1.0]}},
                    "image_domain": {},
                }
            }
        )


def test_undefined_figures_are_null_and_the_file_is_strict_json(tmp_path: Path):
    iterate = ImageIterate(
        iteration=-1, reached=False, r_norm=math.nan, r_norm_relative=math.inf, error=math.nan
    )
    path = tmp_path / "m.json"
    atomic_write_json(path, iterate.model_dump(mode="json"))
    assert json.loads(path.read_text())["error"] is None
    with pytest.raises(ValueError):
        atomic_write_json(path, {"x": math.nan})
