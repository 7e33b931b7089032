"""Operator overhead of the sinogram attack: one PGA iteration vs the network alone.

Requirement: the time of one PGA iteration on a batch is at most ``--max-ratio`` (1.3) times the
time of one forward + backward pass of the network alone on the same batch. Both are measured
side by side in one process, repetitions interleaved so that load from other processes hits
both alike, after ``--warmup`` rounds. Each figure is given as the minimum and the median over
``--repeats``; the verdict uses the minima (the usual estimator under background load, as
``timeit`` recommends: other processes only ever add time), and both ratios are printed:

- network alone: x0 = FBP images (precomputed), g = d/dx0 1/2 ||N(x0) - x||^2 (autograd.grad
  w.r.t. the input, as the attack needs it);
- one PGA iteration: the library's own ``measurement_pga`` (fbp -> N -> loss -> backward through
  fbp, i.e. H A -> normalised momentum step -> ball projection), as
  (T(n_iter = 1 + ``--iters``) - T(n_iter = 1)) / ``--iters``, which removes its fixed cost (clean
  and final forward passes) and leaves exactly the per-iteration cost; the minimum (median) is
  the difference of the two calls' minima (medians).

The network is FBPConvNet's image part: a MONAI UNet with a global residual, in eval mode. When
the ratio exceeds the limit, the FBP forward, its backward (H A) and the ball/momentum arithmetic
are timed alone to show where the time goes (always with ``--breakdown``).

    .venv/bin/python benchmarks/bench_attack.py [--n 128] [--views 143] [--batch 8] [--device cuda]

Exits with status 1 when the ratio exceeds ``--max-ratio``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable

import torch
from monai.networks.nets import UNet
from torch import nn

from ctrobust.attacks import measurement_pga
from ctrobust.attacks._ball import project_l2_ball, sample_norms
from ctrobust.physics import ParallelBeam2D


class ResidualUNet(nn.Module):
    """x0 + UNet(x0): the image-domain network of FBPConvNet."""

    def __init__(self, channels: tuple[int, ...], num_res_units: int) -> None:
        super().__init__()
        self.unet = UNet(
            spatial_dims=2,
            in_channels=1,
            out_channels=1,
            channels=channels,
            strides=(2,) * (len(channels) - 1),
            num_res_units=num_res_units,
        )

    def forward(self, x0: torch.Tensor) -> torch.Tensor:
        return x0 + self.unet(x0)


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=128, help="image side N")
    p.add_argument("--views", type=int, default=143, help="number of views V")
    p.add_argument("--batch", type=int, default=8, help="slices per batch")
    p.add_argument("--channels", default="16,32,64", help="UNet channels, comma separated")
    p.add_argument("--res-units", type=int, default=1, help="UNet residual units per level")
    p.add_argument("--iters", type=int, default=8, help="PGA iterations per timed difference")
    p.add_argument("--repeats", type=int, default=7, help="timed repetitions (median reported)")
    p.add_argument("--warmup", type=int, default=2, help="untimed rounds first")
    p.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--max-ratio", type=float, default=1.3, help="allowed PGA / network ratio")
    p.add_argument("--breakdown", action="store_true", help="always show where the time goes")
    return p.parse_args()


def timer(device: torch.device) -> Callable[[Callable[[], object]], float]:
    """Wall time of a call, synchronising the device's queue before and after."""

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    def run(fn: Callable[[], object]) -> float:
        sync()
        start = time.perf_counter()
        fn()
        sync()
        return time.perf_counter() - start

    return run


def main() -> int:
    args = parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    start = time.perf_counter()
    op = ParallelBeam2D(args.n, args.views, device=device)
    build_s = time.perf_counter() - start
    torch.manual_seed(0)
    channels = tuple(int(c) for c in args.channels.split(","))
    net = ResidualUNet(channels, args.res_units).to(device).eval()
    f = lambda y: net(op.fbp(y))  # noqa: E731

    gen = torch.Generator().manual_seed(0)
    x = torch.rand(args.batch, 1, args.n, args.n, generator=gen).to(device)
    y = op.A(x)
    x0 = op.fbp(y).detach()
    clock = timer(device)

    def network_alone() -> None:
        inp = x0.clone().requires_grad_(True)
        loss = 0.5 * (net(inp) - x).pow(2).sum()
        torch.autograd.grad(loss, inp)

    def pga(n_iter: int) -> Callable[[], object]:
        return lambda: measurement_pga(f, y, x, 0.01, relative=True, n_iter=n_iter)

    base, more = pga(1), pga(1 + args.iters)
    for _ in range(args.warmup):
        network_alone()
        base()
        more()
    net_s, base_s, more_s = [], [], []
    for _ in range(args.repeats):
        net_s.append(clock(network_alone))
        base_s.append(clock(base))
        more_s.append(clock(more))
    t_net, t_pga = min(net_s), (min(more_s) - min(base_s)) / args.iters
    ratio = t_pga / t_net
    med_net = statistics.median(net_s)
    med_pga = (statistics.median(more_s) - statistics.median(base_s)) / args.iters

    print(
        f"device {device} ({torch.get_num_threads()} CPU threads), N={args.n}, V={args.views}, "
        f"D={op.n_det}, batch {args.batch}, UNet channels {channels}, "
        f"res units {args.res_units}, operator backend {op.backend} (built in {build_s:.1f} s)"
    )
    print(f"over {args.repeats} repeats:                 min        median")
    print(f"network forward+backward alone: {1e3 * t_net:8.2f} ms  {1e3 * med_net:8.2f} ms")
    print(f"one PGA iteration:              {1e3 * t_pga:8.2f} ms  {1e3 * med_pga:8.2f} ms")
    print(
        f"ratio PGA / network:            {ratio:8.3f}     {med_pga / med_net:8.3f}"
        f"     (limit {args.max_ratio}, on the minima)"
    )

    over = ratio > args.max_ratio
    if over or args.breakdown:
        grad_out = torch.randn_like(x0)

        def fbp_backward() -> None:
            yy = y.clone().requires_grad_(True)
            op.fbp(yy).backward(grad_out)

        radius = 0.01 * sample_norms(y)

        def ball_step() -> None:
            d = y * 1e-3
            project_l2_ball(d + d / sample_norms(d).reshape(-1, 1, 1, 1), radius)

        parts = {"fbp forward": lambda: op.fbp(y), "fbp fwd+bwd (H A)": fbp_backward}
        parts["ball/momentum arithmetic"] = ball_step
        remainder = t_pga - t_net
        for name, fn in parts.items():
            fn()
            t = min(clock(fn) for _ in range(args.repeats))
            remainder -= 0.0 if name == "fbp forward" else t
            print(f"  {name:26s} {1e3 * t:8.2f} ms  ({100 * t / t_pga:4.0f} % of a PGA iteration)")
        print(
            f"  {'rest (autograd, best-iterate bookkeeping, noise)':26s} {1e3 * remainder:8.2f} ms "
            f"= PGA - network - fbp fwd+bwd - arithmetic"
        )
    return 1 if over else 0


if __name__ == "__main__":
    sys.exit(main())
