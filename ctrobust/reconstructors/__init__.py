"""The reconstructors under test: one type for FBP, TV, SIRT, trained and external networks.

External models (``reconstructors.external``) are imported from there: loading them pulls in
the config and, for ONNX, onnx2torch.
"""

from .base import Geometry, MethodId, MethodKind, Provenance, Reconstructor, sha256_of
from .classical import FBP, SIRT, TV
from .networks import NetworkOnFBP, trained_network

__all__ = [
    "FBP",
    "SIRT",
    "TV",
    "Geometry",
    "MethodId",
    "MethodKind",
    "NetworkOnFBP",
    "Provenance",
    "Reconstructor",
    "sha256_of",
    "trained_network",
]
