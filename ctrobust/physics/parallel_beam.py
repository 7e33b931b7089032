"""2D parallel-beam CT operator: forward projection A, back projection A^T, ramp filter H, FBP.

Every method is batched over leading dimensions, ``(..., N, N) <-> (..., V, D)``, and
differentiable through custom ``autograd.Function``s whose backward is the matching adjoint
(A <-> A^T, H <-> H, R = c A^T H <-> R^T = c H A), so no sparse autograd is involved and the
gradients of attacks and training losses are exact adjoints, not approximations. The FBP
constant c is folded into the filter response, so R and R^T cost one filter and one sparse
product each and no extra pass over the data.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from typing import Literal

import numpy as np
import torch
from torch import nn

from ctrobust.physics.astra_projector import AstraProjector
from ctrobust.physics.ramp import apply_ramp, ramp_response
from ctrobust.physics.sparse_projector import (
    adjoint_columns,
    csr_matmul,
    matrix_bytes,
    relabel_adjoint_columns,
    system_matrices,
    view_angles,
)

Backend = Literal["matrix", "astra", "auto"]
DEFAULT_MAX_MATRIX_BYTES = 2 * 1024**3


def default_n_det(n: int) -> int:
    """``ceil(sqrt(2) n)`` rounded up to odd: covers the image diagonal, centre pixel on axis."""
    d = math.ceil(math.sqrt(2) * n)
    return d if d % 2 == 1 else d + 1


def power_norm(
    forward: Callable[[torch.Tensor], torch.Tensor],
    adjoint: Callable[[torch.Tensor], torch.Tensor],
    x0: torch.Tensor,
    n_iter: int = 50,
) -> float:
    """Power-iteration estimate of the spectral norm ``||F||_2`` from ``F`` and ``F^T``."""
    with torch.no_grad():
        x = x0 / torch.linalg.vector_norm(x0)
        sigma2 = 0.0
        for _ in range(n_iter):
            z = adjoint(forward(x))
            sigma2 = torch.linalg.vector_norm(z).item()
            x = z / sigma2
    return math.sqrt(sigma2)


class _Project(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, op: ParallelBeam2D) -> torch.Tensor:
        ctx.op = op
        return op._forward(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        return ctx.op.A_adjoint(grad), None


class _Backproject(torch.autograd.Function):
    @staticmethod
    def forward(ctx, y: torch.Tensor, op: ParallelBeam2D) -> torch.Tensor:
        ctx.op = op
        return op._adjoint(y)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        return ctx.op.A(grad), None


class _Ramp(torch.autograd.Function):
    @staticmethod
    def forward(ctx, y: torch.Tensor, op: ParallelBeam2D) -> torch.Tensor:
        ctx.op = op
        return apply_ramp(y, op.ramp_response)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        return ctx.op.ramp(grad), None  # H is symmetric


class _FBP(torch.autograd.Function):
    @staticmethod
    def forward(ctx, y: torch.Tensor, op: ParallelBeam2D) -> torch.Tensor:
        ctx.op = op
        return op._adjoint(apply_ramp(y, op.fbp_response))

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        return ctx.op.fbp_adjoint(grad), None  # (c A^T H)^T = c H A


class _FBPAdjoint(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, op: ParallelBeam2D) -> torch.Tensor:
        ctx.op = op
        return apply_ramp(op._forward(x), op.fbp_response)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        return ctx.op.fbp(grad), None


class ParallelBeam2D(nn.Module):
    """Parallel-beam geometry on an N x N image of unit pixels, built on ASTRA's 'linear' projector.

    Args:
        n: image side N (pixels).
        n_views: V views uniform in [0, pi).
        n_det: D detector pixels of unit width, centred on the rotation axis; default
            :func:`default_n_det`.
        device: where the operator's tensors live; ``.to(device)`` moves it later.
        dtype: float32 or float64; inputs must have this dtype.
        backend: ``"matrix"`` (ASTRA's sparse matrix applied by torch, batched, CPU or CUDA),
            ``"astra"`` (ASTRA's CPU projector, one slice at a time, float32 inside) or
            ``"auto"`` (matrix unless W and W^T would exceed ``max_matrix_bytes``).
        window: ramp filter window, one of :data:`ctrobust.physics.ramp.WINDOWS`.
        max_matrix_bytes: memory budget for the matrix backend under ``"auto"``.
        cache_dir: optional folder where built matrices are saved and reloaded across processes.

    The sparse matrices are non-persistent buffers: ``.to()`` moves them, ``state_dict``
    leaves them out, and operators of one geometry share one in-process copy on the CPU.
    ``adjoint_columns`` says how W^T labels the sinogram entries it reads on its device
    (:func:`~ctrobust.physics.sparse_projector.adjoint_columns`); a move relabels them.
    """

    def __init__(
        self,
        n: int,
        n_views: int,
        n_det: int | None = None,
        device: str | torch.device = "cpu",
        dtype: torch.dtype = torch.float32,
        backend: Backend = "auto",
        window: str = "ram-lak",
        max_matrix_bytes: int = DEFAULT_MAX_MATRIX_BYTES,
        cache_dir: str | None = None,
    ) -> None:
        super().__init__()
        if dtype not in (torch.float32, torch.float64):
            raise ValueError(f"dtype must be float32 or float64, got {dtype}")
        self.n = n
        self.n_views = n_views
        self.n_det = default_n_det(n) if n_det is None else n_det
        self.angles = view_angles(n_views)
        self.angles.setflags(write=False)
        self.window = window
        self.fbp_scale = math.pi / n_views
        if backend == "auto":
            too_big = matrix_bytes(n, self.angles, self.n_det) > max_matrix_bytes
            backend = "astra" if too_big else "matrix"
        if backend not in ("matrix", "astra"):
            raise ValueError(f"backend must be 'matrix', 'astra' or 'auto', got {backend!r}")
        self.backend = backend
        w = wt = None
        if backend == "matrix":
            w, wt = system_matrices(n, n_views, self.n_det, cache_dir)
        self.adjoint_columns = adjoint_columns(n, n_views, torch.device("cpu"))
        self._astra = AstraProjector(n, self.angles, self.n_det) if backend == "astra" else None
        self.register_buffer("weights", w, persistent=False)
        self.register_buffer("weights_t", wt, persistent=False)
        response = torch.from_numpy(ramp_response(self.n_det, window))
        self.register_buffer("ramp_response", response, persistent=False)
        self.register_buffer("fbp_response", self.fbp_scale * response, persistent=False)
        self.to(device=device, dtype=dtype)

    def _apply(self, fn, recurse: bool = True) -> ParallelBeam2D:
        """Move or cast as ``nn.Module`` does, then relabel W^T's columns for its new device."""
        super()._apply(fn, recurse)
        if self.weights_t is not None:
            wanted = adjoint_columns(self.n, self.n_views, self.weights_t.device)
            if wanted != self.adjoint_columns:
                self.weights_t = relabel_adjoint_columns(
                    self.weights_t, self.n_views, self.n_det, wanted
                )
                self.adjoint_columns = wanted
        return self

    def __deepcopy__(self, memo: dict) -> ParallelBeam2D:
        """Share the (never mutated) matrices: torch cannot deep-copy sparse CSR tensors, and a
        model holding this operator must stay copyable. ``.to()`` on the copy leaves ``self``
        untouched because the copy gets its own buffer table."""
        clone = copy.copy(self)
        clone._buffers = dict(self._buffers)
        clone._non_persistent_buffers_set = set(self._non_persistent_buffers_set)
        clone._astra = copy.deepcopy(self._astra, memo)
        memo[id(self)] = clone
        return clone

    def with_window(self, window: str) -> ParallelBeam2D:
        """The same geometry, backend and matrices (shared, never rebuilt) with another FBP
        window: a rebuilt twin of the 512 x 1000-view operator would hold a second 7.6 GB."""
        twin = copy.deepcopy(self)
        twin.window = window
        response = torch.from_numpy(ramp_response(self.n_det, window))
        twin.ramp_response = response.to(device=self.device, dtype=self.dtype)
        twin.fbp_response = self.fbp_scale * twin.ramp_response
        return twin

    @property
    def device(self) -> torch.device:
        return self.ramp_response.device

    @property
    def dtype(self) -> torch.dtype:
        return self.ramp_response.dtype

    def extra_repr(self) -> str:
        return (
            f"n={self.n}, n_views={self.n_views}, n_det={self.n_det}, backend={self.backend!r}, "
            f"window={self.window!r}"
        )

    # public, differentiable -------------------------------------------------------------
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Same as :meth:`A`."""
        return self.A(x)

    def A(self, x: torch.Tensor) -> torch.Tensor:
        """Sinograms ``(..., V, D)`` of images ``(..., N, N)``: line integrals in pixel units."""
        self._check(x, (self.n, self.n), "image")
        return _Project.apply(x, self)

    def A_adjoint(self, y: torch.Tensor) -> torch.Tensor:
        """Back projection ``A^T y``: images ``(..., N, N)`` of sinograms ``(..., V, D)``."""
        self._check(y, (self.n_views, self.n_det), "sinogram")
        return _Backproject.apply(y, self)

    def ramp(self, y: torch.Tensor) -> torch.Tensor:
        """Ramp filter H along the detector axis (self-adjoint)."""
        self._check(y, (self.n_views, self.n_det), "sinogram")
        return _Ramp.apply(y, self).contiguous()

    def fbp(self, y: torch.Tensor) -> torch.Tensor:
        """Filtered back projection ``R y = (pi / V) A^T H y``, so ``fbp(A(x)) ~ x``."""
        self._check(y, (self.n_views, self.n_det), "sinogram")
        return _FBP.apply(y, self)

    def fbp_adjoint(self, x: torch.Tensor) -> torch.Tensor:
        """``R^T x = (pi / V) H A x``: what a sinogram-domain gradient of an image loss costs."""
        self._check(x, (self.n, self.n), "image")
        return _FBPAdjoint.apply(x, self)

    def norm(self, n_iter: int = 50, seed: int = 0) -> float:
        """Power-iteration estimate of ``||A||_2`` (deterministic given ``seed``)."""
        gen = torch.Generator().manual_seed(seed)
        x0 = torch.rand(1, 1, self.n, self.n, generator=gen, dtype=self.dtype).to(self.device)
        return power_norm(self.A, self.A_adjoint, x0, n_iter)

    # raw linear maps (no autograd bookkeeping) -------------------------------------------
    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        lead = x.shape[:-2]
        flat = x.reshape(-1, self.n, self.n)
        if self.weights is not None:
            out = csr_matmul(self.weights, flat)
        else:
            out = self._via_astra(self._astra.forward, flat, (self.n, self.n))
        return out.reshape(*lead, self.n_views, self.n_det)

    def _adjoint(self, y: torch.Tensor) -> torch.Tensor:
        lead = y.shape[:-2]
        flat = y.reshape(-1, self.n_views, self.n_det)
        if self.weights_t is not None:
            if self.adjoint_columns == "detector":
                flat = flat.transpose(1, 2)  # W^T reads entry (k, d) at d V + k
            out = csr_matmul(self.weights_t, flat)
        else:
            out = self._via_astra(self._astra.adjoint, flat, (self.n_views, self.n_det))
        return out.reshape(*lead, self.n, self.n)

    def _via_astra(
        self, fn: Callable[[np.ndarray], np.ndarray], flat: torch.Tensor, shape: tuple[int, int]
    ) -> torch.Tensor:
        stack = flat.detach().reshape(-1, *shape).to("cpu", torch.float32).contiguous().numpy()
        out = torch.from_numpy(fn(stack)).reshape(flat.shape[0], -1)
        return out.to(device=flat.device, dtype=flat.dtype)

    def _check(self, t: torch.Tensor, last: tuple[int, int], what: str) -> None:
        if t.dim() < 2 or tuple(t.shape[-2:]) != last:
            expected = f"(..., {last[0]}, {last[1]})"
            raise ValueError(f"expected a {what} of shape {expected}, got {tuple(t.shape)}")
        if t.dtype != self.dtype:
            raise TypeError(f"{what} is {t.dtype} but the operator is {self.dtype}; use .to()")
