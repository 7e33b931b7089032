"""The paper's two problem sizes (Raj et al. Sec. 4) and a config resolved against them.

small is MNIST's: 28 x 28 images, m = 100, f with 4 convolutions + 3 transposed
convolutions, G with 5 fully connected layers, lam1 = 1, lam2 = -0.1, trained at eps = 2 and
evaluated at eps 0, 1, 2, 3. large is CelebA's shape on one grey channel: 64 x 64 images and
m = 333, keeping CelebA's ratio m / n = 1000 / 12288; 6 + 4 layers, G with 6, lam1 = 3,
lam2 = -1, eps = 3, evaluated at 0, 2, 5, 10.
"""

from __future__ import annotations

from dataclasses import dataclass

from ctrobust.config import CSConditioningConfig


@dataclass(frozen=True)
class CSSize:
    """Everything that depends on the size, after the config's overrides."""

    name: str
    patch: int
    m: int
    conv_layers: int
    transposed_layers: int
    g_layers: int
    width: int
    lam1: float
    lam2: float
    train_eps: float
    eval_eps: tuple[float, ...]
    grid: int
    stride: int

    @property
    def n(self) -> int:
        """Pixels of one image: the columns of A."""
        return self.patch * self.patch


PAPER_SIZES = {
    "small": dict(
        patch=28, m=100, conv_layers=4, transposed_layers=3, g_layers=5, width=32,
        lam1=1.0, lam2=-0.1, train_eps=2.0, eval_eps=(0.0, 1.0, 2.0, 3.0),
    ),
    "large": dict(
        patch=64, m=333, conv_layers=6, transposed_layers=4, g_layers=6, width=64,
        lam1=3.0, lam2=-1.0, train_eps=3.0, eval_eps=(0.0, 2.0, 5.0, 10.0),
    ),
}  # fmt: skip


def resolve_size(cfg: CSConditioningConfig) -> CSSize:
    """The paper's values for ``cfg.size`` with every key the config sets taken from it.

    Slices are resampled to 4 patches across by default (a 28 x 28 patch spans a quarter of
    the field of view, so it holds anatomy, not a whole body), and patches overlap by 3/4.
    """
    paper = PAPER_SIZES[cfg.size]
    patch = int(paper["patch"])
    overrides = {
        "width": cfg.width,
        "lam1": cfg.lam1,
        "lam2": cfg.lam2,
        "train_eps": cfg.train_eps,
        "eval_eps": tuple(cfg.eval_eps) if cfg.eval_eps is not None else None,
    }
    chosen = {**paper, **{k: v for k, v in overrides.items() if v is not None}}
    return CSSize(
        name=cfg.size,
        grid=cfg.grid or 4 * patch,
        stride=cfg.stride or patch // 4,
        **chosen,  # type: ignore[arg-type]
    )
