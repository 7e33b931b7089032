"""The reconstructor under test: one type for every sinogram -> image map ctrobust evaluates.

FBP at any view count, TV and SIRT (plain and unrolled), the FBPConvNets ctrobust trains and
external models are all a :class:`Reconstructor`: a ``torch.nn.Module`` mapping sinograms
(B, 1, V, D) to images (B, 1, N, N) that carries its typed method id, the geometry it expects,
whether gradients flow through it, and the provenance a report needs. Attack, evaluate,
instability, export and report take a list of these and never branch on a name.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from torch import Tensor, nn


class MethodKind(StrEnum):
    """What family a method belongs to; the report groups and describes methods by it."""

    FBP = "fbp"
    TV = "tv"
    SIRT = "sirt"
    NETWORK = "network"
    EXTERNAL = "external"
    CONTROL = "control"


@dataclass(frozen=True)
class MethodId:
    """A method's typed identity; ``str(id)`` is its key in metrics.json and the report."""

    kind: MethodKind
    name: str

    def __str__(self) -> str:
        return self.name

    @classmethod
    def fbp(cls, views: int) -> MethodId:
        """FBP of ``views`` views, keyed ``fbp<views>``."""
        return cls(MethodKind.FBP, f"fbp{views}")


@dataclass(frozen=True)
class Geometry:
    """The parallel-beam geometry a reconstructor expects: n x n images, views x n_det sinograms."""

    n: int
    views: int
    n_det: int

    @classmethod
    def of(cls, op) -> Geometry:
        """The geometry of a ``ParallelBeam2D``-like operator."""
        return cls(n=int(op.n), views=int(op.n_views), n_det=int(op.n_det))


@dataclass(frozen=True)
class Provenance:
    """Where a method comes from: a phrase, the weights' location and their SHA-256."""

    what: str
    weights: str | None = None
    sha256: str | None = None


def sha256_of(path: Path) -> str:
    """SHA-256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class Reconstructor(nn.Module):
    """A sinogram -> image map under test, with its identity, geometry and provenance.

    Subclasses implement :meth:`forward` and, when the same method can run at another
    view count (FBP, TV, a network on FBP), :meth:`for_operator`.
    """

    differentiable: bool = True

    def __init__(self, method: MethodId, label: str, operator, provenance: Provenance) -> None:
        super().__init__()
        self.method = method
        self.label = label
        self.operator = operator
        self.provenance = provenance

    @property
    def name(self) -> str:
        """The method id's key, e.g. ``fbp143`` or a scheme name."""
        return str(self.method)

    @property
    def geometry(self) -> Geometry:
        return Geometry.of(self.operator)

    @property
    def fixed_geometry(self) -> bool:
        """Whether :meth:`for_operator` refuses: the method runs only at its own geometry."""
        return type(self).for_operator is Reconstructor.for_operator

    def forward(self, y: Tensor) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def for_operator(self, operator) -> Reconstructor:
        """The same method for another geometry (more views); fixed-geometry methods refuse."""
        raise ValueError(
            f"reconstructor '{self.name}' runs only at its own geometry {self.geometry}"
        )
