"""Factories that tests/test_external.py names in ``format: python`` reconstructors."""

from __future__ import annotations

from torch import nn

from ctrobust.models import build_residual_unet


def tiny_fbpconvnet() -> nn.Module:
    """The image network of tests/conftest.py's TINY_CONFIG (channels [4, 8], no residual units)."""
    return build_residual_unet([4, 8], num_res_units=0)


def not_a_module() -> str:
    """A factory that breaks the contract: it returns no nn.Module."""
    return "a string"
