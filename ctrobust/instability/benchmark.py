"""Measure the classical references and the instability tests on the Shepp-Logan head.

    python -m ctrobust.instability.benchmark --n 64 --views 50 [--device cuda] [--json out.json]

Training split: the phantom flipped left-right and up-down (used only to choose the TV weight);
test split: the phantom itself. Prints one JSON document with every figure; docs/instability.md
quotes its output.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable

import torch

from ctrobust.metrics import DATA_RANGE_NOTE, psnr_per_slice, ssim_per_slice
from ctrobust.physics import ParallelBeam2D
from ctrobust.physics.units import add_poisson_noise
from ctrobust.reconstructors import FBP, SIRT, TV

from .detail_score import evaluate_detail
from .details import insert_detail, render_symbols, render_text
from .more_views import more_views_sweep
from .phantom import shepp_logan_head
from .sirt import sirt_reconstruct
from .tv import default_step_ratio, tv_reconstruct
from .tv_weight import choose_tv_weight

LAM_CANDIDATES = (0.03, 0.1, 0.3, 1.0, 3.0, 10.0)


def _timed(fn: Callable[[], object], device: torch.device) -> tuple[object, float]:
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    out = fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return out, time.perf_counter() - start


def _quality(rec: torch.Tensor, x: torch.Tensor) -> dict[str, float]:
    return {
        "psnr": float(psnr_per_slice(rec, x).mean()),
        "ssim": float(ssim_per_slice(rec, x).mean()),
    }


def _max_rise(history: torch.Tensor) -> float:
    """Largest relative rise of the objective between consecutive iterations (0: monotone)."""
    rise = (history[1:] - history[:-1]) / history[:-1].abs()
    return float(rise.clamp_min(0).max()) if rise.numel() else 0.0


def references(op, x, y, lam, n_iter_max, tol, device) -> dict[str, object]:
    """FBP, SIRT and converged TV on the test slice: quality, iterations, time."""
    fbp, t_fbp = _timed(lambda: op.fbp(y), device)
    (sirt, sirt_info), t_sirt = _timed(lambda: sirt_reconstruct(op, y, n_iter=500), device)
    (tv, tv_info), t_tv = _timed(lambda: tv_reconstruct(op, y, lam, n_iter_max, tol), device)
    return {
        "fbp": {**_quality(fbp, x), "seconds": t_fbp},
        "sirt": {**_quality(sirt, x), "iterations": sirt_info.iterations, "seconds": t_sirt},
        "tv": {
            **_quality(tv, x),
            "lam": lam,
            "iterations": tv_info.iterations,
            "converged": bool(tv_info.converged.all()),
            "seconds": t_tv,
            "seconds_per_iteration": t_tv / max(tv_info.iterations, 1),
            "objective_first_last": [float(v) for v in tv_info.objective[[0, -1], 0]],
            "max_relative_objective_rise": _max_rise(tv_info.objective[:, 0]),
        },
    }


def step_ratios(op, x, y, lam, ratios, n_iter_max, tol) -> list[dict[str, object]]:
    """Iterations to ``tol`` and monotonicity of TV for several primal/dual step ratios."""
    rows = []
    for ratio in ratios:
        for start in ("fbp", "zeros"):
            x0 = None if start == "fbp" else torch.zeros_like(x)
            rec, info = tv_reconstruct(op, y, lam, n_iter_max, tol, x0=x0, step_ratio=ratio)
            rows.append(
                {
                    "step_ratio": ratio,
                    "start": start,
                    "iterations": info.iterations,
                    "final_objective": float(info.objective[-1, 0]),
                    "max_relative_objective_rise": _max_rise(info.objective[:, 0]),
                    "psnr": float(psnr_per_slice(rec, x)),
                }
            )
    return rows


def unrolled_gap(op, x, y, lam, converged, iterations) -> list[dict[str, float]]:
    """How far K TV iterations (no stopping rule) are from a tightly converged solution."""
    rows = []
    for k in iterations:
        with torch.no_grad():
            rec, _ = tv_reconstruct(op, y, lam, n_iter_max=k, tol=0)
        rows.append(
            {
                "n_iter": k,
                "relative_distance_to_converged": float(
                    (rec - converged).norm() / converged.norm()
                ),
                "psnr": float(psnr_per_slice(rec, x)),
            }
        )
    return rows


def details(op, x, lam, n_iter_max, tol, contrast_hu) -> dict[str, object]:
    """Recovery score of the card symbols and of "CAN U SEE IT" (noise-free, Antun's setting)."""
    n = x.shape[-1]
    methods = {
        "fbp": FBP(op),
        "sirt": SIRT(op, n_iter=500, tol=1e-5),
        "tv": TV(op, lam, n_iter=n_iter_max, tol=tol),
    }
    out = {}
    for name, mask in (
        ("symbols", render_symbols(n, height=n / 12)),
        ("text", render_text("CAN U SEE IT", n, height=n / 16)),
    ):
        ins = insert_detail(x, mask.to(x.device), contrast_hu)
        result = evaluate_detail(methods, op, x, ins)
        out[name] = {
            "box": ins.boxes[0],
            "contrast_hu": contrast_hu,
            **{method: r.summary() for method, r in result.items()},
        }
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=64)
    parser.add_argument("--views", type=int, default=50)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--i0", type=float, default=1e5, help="photons per detector bin")
    parser.add_argument("--fov-mm", type=float, default=250.0, help="image width in mm")
    parser.add_argument("--n-iter-max", type=int, default=1000)
    parser.add_argument("--tol", type=float, default=1e-2, help="TV relative primal-dual gap")
    parser.add_argument("--contrast-hu", type=float, default=300.0)
    parser.add_argument("--sweep", type=int, nargs="*", default=[25, 50, 100, 143, 200, 500])
    parser.add_argument("--step-ratios", type=float, nargs="*", default=[0.05, 0.1, 0.2, 1.0])
    parser.add_argument(
        "--sweep-tol", type=float, default=1e-3, help="TV gap tolerance in the more-views sweep"
    )
    parser.add_argument("--unrolled", type=int, nargs="*", default=[25, 50, 100, 200])
    parser.add_argument("--json", help="also write the document to this file")
    args = parser.parse_args(argv)

    device = torch.device(args.device)
    x = shepp_logan_head(args.n).to(device)
    x_train = torch.cat([x.flip(-1), x.flip(-2)])
    op = ParallelBeam2D(args.n, args.views, device=device)
    pixel_mm = args.fov_mm / args.n
    gen = torch.Generator(device=device).manual_seed(0)
    y_clean, y_train_clean = op.A(x), op.A(x_train)
    y = add_poisson_noise(y_clean, args.i0, pixel_mm, generator=gen)
    y_train = add_poisson_noise(y_train_clean, args.i0, pixel_mm, generator=gen)

    solver = {"n_iter_max": args.n_iter_max, "tol": args.tol}
    lam_noisy, table_noisy = choose_tv_weight(op, y_train, x_train, LAM_CANDIDATES, **solver)
    lam_clean, table_clean = choose_tv_weight(op, y_train_clean, x_train, LAM_CANDIDATES, **solver)
    ref_noisy = references(op, x, y, lam_noisy, args.n_iter_max, args.tol, device)
    ref_clean = references(op, x, y_clean, lam_clean, args.n_iter_max, args.tol, device)
    converged, _ = tv_reconstruct(op, y, lam_noisy, 20 * args.n_iter_max, args.tol / 100)
    sweep = more_views_sweep(
        {
            "fbp": FBP(op),
            "sirt": SIRT(op, n_iter=500, tol=1e-5),
            "tv": TV(
                op,
                lam_clean,
                n_iter=10 * args.n_iter_max,
                tol=args.sweep_tol,
            ),
        },
        x,
        views=args.sweep,
    )
    doc = {
        "setup": {
            **{k: v for k, v in vars(args).items() if k != "json"},
            "torch": torch.__version__,
            "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
            "pixel_mm": pixel_mm,
            "data_range": DATA_RANGE_NOTE,
            "n_det": op.n_det,
            "default_step_ratio": default_step_ratio(args.n),
            "operator_norm": op.norm(),
        },
        "tv_weight": {"noisy": table_noisy, "clean": table_clean},
        "references_noisy": ref_noisy,
        "references_clean": ref_clean,
        "step_ratios": step_ratios(
            op, x, y, lam_noisy, args.step_ratios, args.n_iter_max, args.tol
        ),
        "unrolled_tv": unrolled_gap(op, x, y, lam_noisy, converged, args.unrolled),
        "details": details(op, x, lam_clean, args.n_iter_max, args.tol, args.contrast_hu),
        "more_views": sweep,
    }
    text = json.dumps(doc, indent=1, allow_nan=False)
    print(text)
    if args.json:
        with open(args.json, "w") as fh:
            fh.write(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
