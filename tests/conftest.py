"""Shared fixtures: the clinical folders, and a tiny pipeline config for end-to-end tests."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]

# hermetic: the tests' projector matrices go to a folder of their own, not the user's cache
os.environ.setdefault("CTROBUST_MATRIX_CACHE", tempfile.mkdtemp(prefix="ctrobust-test-matrices-"))

TINY_CONFIG = """
name: tiny
seed: 0
data:
  n: 32
  slices_per_series: 4
  test_fraction: 0.34
  val_fraction: 0.2
physics:
  views: 24
  gt_views: 120
  i0: 1.0e5
model:
  channels: [4, 8]
  num_res_units: 0
train:
  epochs: 2
  batch_size: 4
attack:
  eps: [0.01, 0.05]
  n_iter: 5
  random_draws: 2
  max_slices: 2
  image_domain:
    n_iter: 60
    step: 0.05
instability:
  views: [12, 24, 48]
  tv_weights: [1.0, 10.0]
  tv_iter: 30
  max_slices: 1
  details:
    symbols: [hearts]
    text: ""
    size_mm: 60
"""


def shared_data() -> Path:
    """The clinical folders: $CTROBUST_SHARED_DATA, else ../shared/data beside the repo."""
    return Path(os.environ.get("CTROBUST_SHARED_DATA", REPO.parent / "shared" / "data"))


def shared_folder(name: str) -> Path:
    """One clinical folder by name; skips the calling test when it is not there."""
    folder = shared_data() / name
    if not folder.is_dir():
        pytest.skip(f"clinical folder {folder} not found (set CTROBUST_SHARED_DATA)")
    return folder


@pytest.fixture
def tiny_config(tmp_path: Path) -> Path:
    """A pipeline config small enough to run end to end in seconds."""
    path = tmp_path / "tiny.yaml"
    path.write_text(TINY_CONFIG)
    return path


@pytest.fixture
def device() -> torch.device:
    """Where device-agnostic tests run: $CTROBUST_TEST_DEVICE, else the CPU."""
    return torch.device(os.environ.get("CTROBUST_TEST_DEVICE", "cpu"))


@pytest.fixture
def rng() -> torch.Generator:
    """A CPU torch generator seeded with 0, fresh for every test."""
    return torch.Generator().manual_seed(0)
