"""Reconstruction networks (FBPConvNet) and perturbation generators."""

from ctrobust.models.fbpconvnet import FBPConvNet, ResidualUNet, build_residual_unet

__all__ = ["FBPConvNet", "ResidualUNet", "build_residual_unet"]
