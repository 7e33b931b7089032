"""The HTML report: built from a synthetic run folder laid out as docs/run_folder.md says.

The run folder is fabricated (no training, no attack) so the test checks the report alone:
it is self-contained, its tables print the numbers of metrics.json, sections follow the
stages that ran, and headless Chromium renders every image.
"""

from __future__ import annotations

import base64
import io
import json
import math
import re
import shutil
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
import torch
from PIL import Image

from ctrobust.report import browser_check, browser_unavailable_reason, build_report
from ctrobust.report.browser import pdf_page_fill
from ctrobust.runfiles import atomic_write_json, save_tensors
from ctrobust.verdict import MethodFigures, NoiseLevelAttack, series_verdicts

EPS = (0.01, 0.03)
SCHEMES = {"plain": "plain", "adv": "adversarial"}


def phantom(n: int, shift: float, gen: torch.Generator) -> torch.Tensor:
    """A chest-like slice in relative attenuation: body, two lungs, spine, a vessel."""
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, n), torch.linspace(-1, 1, n), indexing="ij")
    x = torch.zeros(n, n)
    x[(xx / 0.9) ** 2 + (yy / 0.7) ** 2 < 1] = 1.04
    for side in (-1, 1):
        x[((xx - side * 0.4) / 0.3) ** 2 + ((yy + shift) / 0.45) ** 2 < 1] = 0.18
    x[(xx**2 + (yy - 0.5) ** 2) < 0.012] = 1.9
    x[((xx - 0.05) ** 2 + (yy + 0.05) ** 2) < 0.006] = 1.3
    return x + 0.01 * torch.randn(n, n, generator=gen)


def make_run_folder(root: Path, n: int = 32, views: int = 24, eps: tuple[float, ...] = EPS) -> Path:
    """A finished run folder with every stage's files (docs/run_folder.md), fabricated."""
    eps = list(eps)
    gen = torch.Generator().manual_seed(0)
    n_det = 2 * math.ceil(n * 1.415 / 2) + 1
    slices, meta = 6, []
    x_true = torch.stack([phantom(n, 0.05 * s, gen) for s in range(slices)])[:, None]
    x_gt = x_true + 0.005 * torch.randn(x_true.shape, generator=gen)
    fbp = x_gt + 0.04 * torch.randn(x_true.shape, generator=gen)
    y = torch.rand(slices, 1, views, n_det, generator=gen) * n
    for s in range(slices):
        meta.append({"series": f"1.2.3.{s // 3}", "patient": f"PAT{s // 3}", "slice": s % 3})
    split = {"train": [0, 1, 2], "val": [], "test": [3, 4]}
    sim = {"x_true": x_true, "x_gt": x_gt, "y": y, "fbp": fbp}
    sim |= {"pixel_mm": torch.full((slices,), 0.8), "meta": meta}
    cache = root / "cache"
    save_tensors(cache / "simulate" / "data.pt", {"slices": sim, "split": split})
    save_tensors(
        cache / "ingest" / "slices.pt",
        {
            "slices": [
                {"hu": 1000 * (x_true[s, 0] - 1), "spacing": [0.8, 0.8], **meta[s]}
                for s in range(slices)
            ]
        },
    )
    atomic_write_json(
        cache / "ingest" / "ingest.json",
        {
            "folder": "/data/demo",
            "series": [
                {
                    "uid": f"1.2.3.{k}",
                    "description": f"CHEST {k}",
                    "patient_id": f"PAT{k}",
                    "study_uid": f"9.{k}",
                    "slices": 3,
                    "matrix": [n, n],
                    "spacing": [2.0, 0.8, 0.8],
                    "hu_range": [-1000.0, 1200.0],
                    "folder": "/d",
                    "warnings": [],
                }
                for k in range(2)
            ],
            "skipped": [{"path": "/data/demo/readme.txt", "reason": "not DICOM"}],
        },
    )
    test = split["test"]
    fbp_name = f"fbp{views}"
    recons = {fbp_name: fbp[test]}
    for k, scheme in enumerate(SCHEMES):
        recons[scheme] = x_gt[test] + (0.01 + 0.005 * k) * torch.randn(
            len(test), 1, n, n, generator=gen
        )
    save_tensors(cache / "evaluate" / "test_recons.pt", recons)

    labels = [f"{meta[i]['series']}:{meta[i]['slice']}" for i in test]
    attack_cache: dict[str, Any] = {"slices": labels, "eps": eps, "models": {}}
    attack_models: dict[str, Any] = {}
    for k, method in enumerate(recons):
        gain = [3.0, 0.8, 0.3][k]
        attacked, delta = [], []
        for e in eps:
            d = torch.randn(len(test), 1, views, n_det, generator=gen)
            delta.append(d * e * 50 / d.flatten(1).norm(dim=1).view(-1, 1, 1, 1))
            blob = torch.zeros(n, n)
            blob[n // 3 : n // 2, n // 3 : n // 2] = gain * e * 10
            attacked.append(recons[method] + blob)
        eps_abs = torch.tensor([[e * 50.0] * len(test) for e in eps])
        attack_cache["models"][method] = {
            "delta": torch.stack(delta),
            "attacked": torch.stack(attacked),
            "eps_abs": eps_abs,
        }
        rho = [0.8 + gain * 40 * e + 0.01 * k for e in eps]
        attack_models[method] = {
            "eps": eps,
            "eps_abs_mean": [e * 50.0 + 1e-3 * k for e in eps],
            "eps_over_noise": [e * 50.0 / 0.4 for e in eps],
            "rho_hat": rho,
            "rho_hat_random": [0.8 + 2 * e for e in eps],
            "rho_hat_source": [r + 0.2 for r in rho],
            "psnr": [31.234 - 40 * gain * e for e in eps],
            "ssim": [0.9123 - gain * e for e in eps],
            "delta_max_per_slice": [[r - 0.05, r + 0.05] for r in rho],
            "seconds_per_slice": 0.5,
            "iterations_per_slice": [[40, 31] for _ in eps],
        }
        if method.startswith("fbp"):  # linear: the certified worst case beside PGA
            attack_models[method]["certificate"] = {
                "attained": [r + 0.01 for r in rho],
                "upper": [r + 0.011 for r in rho],
                "pga_over_upper": [r / (r + 0.011) for r in rho],
                "pga_over_upper_min": [r / (r + 0.02) for r in rho],
                "sigma_max": 0.13,
                "ritz_pairs": 16,
                "lanczos_residual": 1e-8,
                "seconds": 2.0,
            }
    image_domain_cache, image_domain = {}, {}
    for scheme in SCHEMES:
        r = torch.stack([s * 0.01 * torch.randn(1, n, n, generator=gen) for s in (1, 2, 3)])
        image_domain_cache[scheme] = {
            "r": r,
            "recon": recons[scheme][:1] + 3 * r,
            "x_gt": x_gt[3:4],
        }
        image_domain[scheme] = {
            "slice": labels[0],
            "lam": 0.01,
            "n_iter": 60,
            "levels": [0.01, 0.02, 0.04],
            "clean_error": 0.9,
            "iterates": [
                {
                    "iteration": it,
                    "reached": True,
                    "r_norm": 0.1 * j,
                    "r_norm_relative": 0.004 * j,
                    "error": 0.9 + 0.5 * j,
                }
                for j, it in enumerate((10, 30, 60), start=1)
            ],
            "gaussian_control": {
                "noise_norm": 0.025,
                "error_r1": 1.4,
                "error_r1_plus_noise": 1.41,
                "error_noise_only": 0.91,
            },
        }
    attack_cache["image_domain"] = image_domain_cache
    save_tensors(cache / "attack" / "results.pt", attack_cache)

    detail = torch.zeros(2, 1, n, n)
    detail[0, 0, n // 2 : n // 2 + 4, n // 2 : n // 2 + 6] = 0.1
    detail[1, 0, n // 4 : n // 4 + 3, n // 2 : n // 2 + 8] = 0.1
    save_tensors(
        cache / "instability" / "results.pt",
        {
            "details": {
                "names": ["spades", "CAN U SEE IT"],
                "x": x_gt[3:4] + detail,
                "detail": detail,
                "recons": {m: recons[m][:1] + 0.5 * detail for m in recons},
            }
        },
    )

    def stats(mean: float) -> dict[str, float]:
        return {"mean": mean, "std": 0.5, "min": mean - 1, "max": mean + 1}

    clean: dict[str, Any] = {"note": "against the 120-view FBP; PSNR/SSIM over a fixed 2000 HU"}
    for split_name, base in (("train", 33.0), ("test", 31.0)):
        clean[split_name] = {
            m: {
                "psnr": stats(base + k),
                "ssim": stats(0.8 + 0.05 * k),
                "psnr_source": stats(base + k - 1.5),
                "ssim_source": stats(0.78 + 0.05 * k),
            }
            for k, m in enumerate(recons)
        }
    for k, m in enumerate(recons):
        clean["test"][m]["psnr_per_slice"] = [30.5 + k, 31.5 + k]
    metrics = {
        "methods": {
            m: {
                "kind": "fbp" if m == fbp_name else "network",
                "label": f"FBP, {views} views" if m == fbp_name else f"{m} (network)",
                "n": n,
                "views": views,
                "n_det": n_det,
                "differentiable": True,
                "what": "fabricated",
            }
            for m in recons
        },
        "data": {
            "n": n,
            "views": views,
            "gt_views": 120,
            "n_det": n_det,
            "i0": 1e5,
            "pixel_mm": [0.8, 0.8],
            "slices": {"train": 3, "val": 0, "test": 2},
            "patients": {"train": ["PAT0"], "val": [], "test": ["PAT1"]},
            "split_by": "patient",
        },
        "training": {
            s: {
                "epochs": 2,
                "resumed_from_epoch": 0,
                "final": {
                    "epoch": 2,
                    "loss": 1e-3,
                    "loss_clean": 1e-3,
                    "val_psnr": 32.1,
                    "val_ssim": 0.85,
                },
            }
            for s in SCHEMES
        },
        "clean": clean,
        "attack": {
            "note": "PGA on ||delta||_2 <= eps ||y||_2; error against the ground truth",
            "settings": {
                "eps": eps,
                "relative": True,
                "center": "nominal",
                "n_iter": 40,
                "rel_tol": 1e-4,
                "patience": 20,
                "start": "cold",
                "step": 0.1,
                "momentum": 0.9,
                "restarts": 0,
                "random_draws": 4,
            },
            "noise_norm_per_slice": [0.4, 0.41],
            "noise_relative_mean": 0.0083,
            "test_slices": labels,
            "models": attack_models,
            "image_domain": image_domain,
        },
        "instability": {
            "slices": 1,
            "more_views": {
                "views": [12, 24, 48, 96],
                "note": "same slices at each view count",
                "methods": {
                    m: {
                        "psnr": [25 + k, 28 + k, 30 + k / 2, 31 + k / 3],
                        "ssim": [0.6, 0.7, 0.75, 0.8],
                        "max_psnr_drop_db": 0.0,
                    }
                    for k, m in enumerate(recons)
                },
            },
            "details": {
                "names": ["spades", "CAN U SEE IT"],
                "size_mm": 20.0,
                "contrast_hu": 100.0,
                "note": "recovery score",
                "methods": {
                    m: {"score": [0.9 - 0.2 * k, 0.8 - 0.2 * k], "psnr_box": [30.0 - k, 28.0 - k]}
                    for k, m in enumerate(recons)
                },
            },
            "tv": {
                "lam": 0.003,
                "candidates": [
                    {
                        "lam": lam,
                        "psnr_mean": 30.0 + k,
                        "psnr": [30.0 + k],
                        "iterations": 50,
                        "gap": 0.005,
                        "converged": True,
                        "data_range": "2000 HU",
                    }
                    for k, lam in enumerate((0.001, 0.003, 0.01))
                ],
                "chosen_on": "val split",
                "at_edge_of_grid": False,
                "stopping": "relative primal-dual gap < 0.01",
                "view_rule": "the same weight at every view count",
                "test_weights": [0.003],
            },
            "sirt": {"iterations": 3, "psnr_by_iteration": [20.0, 22.0, 21.0], "chosen_on": "t"},
            "controls": {
                "eps": 0.005,
                "fbp_amplification": 13.0,
                "thresholds": {"amplification_max": 26.0, "score_min": 0.5, "drop_max_db": 0.5},
                "methods": {
                    "control_cgls": {
                        "label": "CGLS (positive control)",
                        "role": "positive control",
                        "amplification": 60.0,
                        "score_min": 0.9,
                        "drop_db": 0.0,
                        "flagged": {
                            "tiny_perturbation": True,
                            "structural_change": False,
                            "more_samples": False,
                        },
                    }
                },
                "available": {"tiny_perturbation": "positive: CGLS"},
                "note": "controls",
            },
            "seconds": {"weights": 1.0},
        },
        "export": {
            "series": {
                "s02_3_1": {
                    "source_series": "1.2.3.1",
                    "slices": [0, 1],
                    "kinds": ["plain_clean", "plain_attacked_eps0.01"],
                }
            },
            "dicom": str(root / "dicom"),
            "nifti": str(root / "nifti"),
            "deidentification": "enabled, dates shifted",
        },
    }
    atomic_write_json(root / "metrics.json", metrics)
    stages = ["ingest", "simulate", "train", "evaluate", "attack", "instability", "export"]
    atomic_write_json(
        root / "run.json",
        {
            "config": {
                "name": "synthetic",
                "physics": {"views": views, "gt_views": 120},
                "train": {"schemes": [{"name": k, "scheme": v} for k, v in SCHEMES.items()]},
                "instability": {"details": {"size_mm": 20.0, "contrast_hu": 100.0}},
            },
            "versions": {"ctrobust": "0.1.0", "torch": torch.__version__},
            "seed": 0,
            "device": "cpu",
            "stages": {
                s: {
                    "status": "done",
                    "fingerprint": "0" * 16,
                    "seconds": 1.0,
                    "started": "2025-01-01T10:00:00",
                    "finished": "2025-01-01T10:01:00",
                    "summary": {},
                }
                for s in stages
            },
        },
    )
    return root


class _Page(HTMLParser):
    """Images, links and the cells of every table with an id."""

    def __init__(self) -> None:
        super().__init__()
        self.images: list[str] = []
        self.urls: list[str] = []
        self.tables: dict[str, list[list[str]]] = {}
        self.ids: set[str] = set()
        self._table: str | None = None
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if a.get("id"):
            self.ids.add(a["id"])  # type: ignore[arg-type]
        self.urls += [v for k, v in attrs if k in {"src", "href"} and v]
        if tag == "img":
            self.images.append(a.get("src") or "")
        if tag == "table":
            self._table = a.get("id")
            if self._table:
                self.tables[self._table] = []
        if self._table and tag == "tr":
            self.tables[self._table].append([])
        if self._table and tag == "td":
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag == "td" and self._cell is not None and self._table:
            self.tables[self._table][-1].append("".join(self._cell).strip())
            self._cell = None
        if tag == "table":
            self._table = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)


def parse(html_text: str) -> _Page:
    page = _Page()
    page.feed(html_text)
    return page


def printed_equal(cell: str, value: float) -> bool:
    """Whether a printed number equals ``value`` at the precision it was printed with."""
    mantissa, _, exponent = cell.partition("e")
    decimals = len(mantissa.partition(".")[2])
    tol = 0.5 * 10.0 ** (-decimals) * 10.0 ** (int(exponent) if exponent else 0)
    return abs(float(cell) - value) <= tol * (1 + 1e-9)


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> tuple[Path, Path]:
    run = make_run_folder(tmp_path_factory.mktemp("run"))
    return run, build_report(run)


def test_report_is_self_contained(report):
    run, html_path = report
    assert html_path == run / "report" / "index.html"
    text = html_path.read_text()
    page = parse(text)
    assert re.search(r"https?://", text) is None
    assert not [u for u in page.urls if u.startswith("//")]
    assert len(page.images) >= 10
    for src in page.images:
        if src.startswith("data:"):
            assert src.startswith("data:image/png;base64,")
            image = Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1])))
            assert image.width > 100 and image.height > 100
        else:
            assert (html_path.parent / src).is_file(), src
    assert len(text) < 3_000_000, "the synthetic report should be well under 3 MB"


def test_rho_tables_match_metrics(report):
    run, html_path = report
    metrics = json.loads((run / "metrics.json").read_text())
    page = parse(html_path.read_text())
    n = metrics["data"]["n"]
    models = metrics["attack"]["models"]
    assert set(models) == {"fbp24", "plain", "adv"}
    for method, m in models.items():
        rows = page.tables[f"rho-{method}"][1:]
        assert len(rows) == len(m["eps"])
        for k, row in enumerate(rows):
            expected = [
                100 * m["eps"][k],
                m["eps_abs_mean"][k],
                m["eps_over_noise"][k],
                m["rho_hat"][k],
                m["rho_hat_random"][k],
                m["rho_hat_source"][k],
                1000 * m["rho_hat"][k] / n,
                m["psnr"][k],
                m["ssim"][k],
                sum(m["iterations_per_slice"][k]) / len(m["iterations_per_slice"][k]),
            ]
            if cert := m.get("certificate"):
                expected += [
                    cert["upper"][k],
                    cert["pga_over_upper"][k],
                    cert["pga_over_upper_min"][k],
                ]
            assert len(row) == len(expected)
            for cell, value in zip(row, expected, strict=True):
                assert printed_equal(cell, value), (method, k, cell, value)


def test_clean_table_and_sections(report):
    run, html_path = report
    metrics = json.loads((run / "metrics.json").read_text())
    text = html_path.read_text()
    page = parse(text)
    rows = page.tables["clean-table"][1:]
    assert len(rows) == 6
    first = metrics["clean"]["train"]["fbp24"]["psnr"]
    assert rows[0][2] == f"{first['mean']:.2f} ± {first['std']:.2f}"
    for anchor in (
        "run",
        "summary",
        "slices",
        "slice-1",
        "slice-2",
        "instability",
        "iterates",
        "details",
        "more-views-section",
        "export",
        "guide",
    ):
        assert anchor in page.ids, anchor
    assert "simulated research reconstructions" in text
    assert "PAT0" not in text and "1.2.3.0" not in text, "identifiers must be pseudonymised"
    assert "Written to DICOM: dicom/; NIfTI: nifti/" in text
    assert page.tables["export-series"][1][:3] == ["s02_3_1", "S2", "2 (0, 1)"]
    iterates = page.tables["iterates-plain"][1:]
    assert [r[1] for r in iterates] == ["10", "30", "60"]


def test_report_without_attack_and_instability(tmp_path):
    run = make_run_folder(tmp_path)
    metrics = json.loads((run / "metrics.json").read_text())
    for key in ("attack", "instability", "export"):
        del metrics[key]
    atomic_write_json(run / "metrics.json", metrics)
    shutil.rmtree(run / "cache" / "attack")
    shutil.rmtree(run / "cache" / "instability")
    page = parse(build_report(run).read_text())
    assert {"run", "summary", "slices", "slice-1"} <= page.ids
    assert not {"instability", "export", "robustness"} & page.ids
    assert not [t for t in page.tables if t.startswith("rho-")]
    assert len(page.images) == 2 * 4  # per test slice: three windows and the error map


def test_missing_run_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="metrics.json"):
        build_report(tmp_path)


@pytest.fixture
def browser():
    reason = browser_unavailable_reason()
    if reason:
        pytest.skip(f"headless browser checks: {reason}")


@pytest.mark.slow
def test_report_renders_in_chromium(report, browser, tmp_path):
    _, html_path = report
    result = browser_check(html_path, screenshot=tmp_path / "shot.png")
    assert result["images"] == len(parse(html_path.read_text()).images)
    assert result["broken"] == []
    assert result["external"] == []
    assert result["page_height"] > 3000
    assert result["screenshot_std"] > 20, "the rendered page looks blank"
    assert result["nonwhite_fraction"] > 0.05
    assert (tmp_path / "shot.png").stat().st_size > 10_000


@pytest.mark.slow
def test_pdf(tmp_path):
    run = make_run_folder(tmp_path)
    build_report(run, pdf=True)
    pdf = run / "report" / "index.pdf"
    reason = browser_unavailable_reason(need_selenium=False)
    if reason:
        assert not pdf.exists(), "without Chromium the report is written and the PDF skipped"
        pytest.skip(f"PDF printing: {reason}")
    assert pdf.read_bytes()[:5] == b"%PDF-"
    assert pdf.stat().st_size > 100_000


def test_report_from_metrics_only(tmp_path):
    """A run stopped after evaluate, caches deleted: tables only, no image sections."""
    run = make_run_folder(tmp_path)
    metrics = json.loads((run / "metrics.json").read_text())
    kept = ("methods", "data", "clean")  # what a run stopped after evaluate has
    atomic_write_json(run / "metrics.json", {k: metrics[k] for k in kept})
    (run / "run.json").unlink()
    shutil.rmtree(run / "cache")
    page = parse(build_report(run).read_text())
    assert {"run", "summary", "clean-table"} <= page.ids
    assert not {"slices", "instability"} & page.ids
    assert page.images == []
    rows = page.tables["clean-table"][1:]
    assert [r[1] for r in rows[:3]] == ["FBP, 24 views", "plain (network)", "adv (network)"]


@pytest.mark.slow
def test_demo_run_report_in_chromium(tiny_config, tmp_path):
    """The report of a real (tiny) demo-data run: tables match metrics.json, images load."""
    from pipelines.cli import main

    run = tmp_path / "run"
    assert main(["run", str(tiny_config), "--out", str(run), "--quiet"]) == 0
    metrics = json.loads((run / "metrics.json").read_text())
    html_path = run / "report" / "index.html"
    page = parse(html_path.read_text())
    n = metrics["data"]["n"]
    for method, m in metrics["attack"]["models"].items():
        rows = page.tables[f"rho-{method}"][1:]
        assert len(rows) == len(m["eps"])
        for k, row in enumerate(rows):
            assert printed_equal(row[3], m["rho_hat"][k]), (method, k, row)
            assert printed_equal(row[5], m["rho_hat_source"][k]), (method, k, row)
            assert printed_equal(row[6], 1000 * m["rho_hat"][k] / n), (method, k, row)
    reason = browser_unavailable_reason()
    if reason:
        pytest.skip(reason)
    shots = {"verdict": ("#verdict", tmp_path / "verdict.png")}
    result = browser_check(html_path, screenshot=tmp_path / "shot.png", elements=shots)
    assert result["images"] > 5
    assert result["broken"] == []
    assert result["external"] == []
    assert result["screenshot_std"] > 20
    assert Image.open(tmp_path / "verdict.png").width > 300
    _verdicts_match_metrics(result["verdicts"], metrics["verdict"])
    _diffmap_limits_fit_each_eps(result["diffmap_limits"], run, metrics)
    build_report(run, pdf=True)
    fills = pdf_page_fill(run / "report" / "index.pdf")
    assert len(fills) > 3
    blank = [k + 1 for k, fill in enumerate(fills[:-1]) if fill < 0.25]
    assert blank == [], f"mostly blank PDF pages {blank} (fraction of rows inked: {fills})"


def _verdicts_match_metrics(shown: dict[str, str], verdict: dict[str, Any]) -> None:
    """Every verdict of metrics.json has its sentence in the page, with its figures and word."""
    assert len(shown) == len(verdict["series"]) > 0
    for k, v in enumerate(verdict["series"]):
        text = shown[str(k)]
        assert ("PASSES" if v["passed"] else "FAILS") in text, text
        assert f"reaches {v['ratio']:.2f} x" in text and f"reaches {v['rms_hu']:.1f} HU" in text
        assert f"limit {verdict['k_ratio']:g})" in text
        assert f"limit {verdict['max_rms_hu']:g} HU" in text
        assert v["series"] not in text, "the page names series by pseudonym only"


def _diffmap_limits_fit_each_eps(limits: list[list[float]], run: Path, metrics: dict) -> None:
    """One colour limit per column (clean error, then each eps), each just above that
    column's own 99.9th percentile of |difference| in HU, recomputed from the caches."""
    eps = metrics["attack"]["settings"]["eps"]
    assert limits and all(len(row) == len(eps) + 1 for row in limits)
    results = torch.load(run / "cache/attack/results.pt", weights_only=True)
    recons = torch.load(run / "cache/evaluate/test_recons.pt", weights_only=True)
    data = torch.load(run / "cache/simulate/data.pt", weights_only=True)
    position = {row: i for i, row in enumerate(data["split"]["test"])}
    for t, row in enumerate(limits):  # the report shows the first attacked slices in order
        p = position[results["rows"][t]]
        for e in range(len(eps)):
            change = [
                1000 * (results["models"][m]["attacked"][e, t, 0] - recons[m][p, 0]).abs()
                for m in results["models"]
            ]
            top = max(float(torch.quantile(c.flatten().double(), 0.999)) for c in change)
            assert 0.999 * top <= row[e + 1] <= 2.0 * top + 1e-9, (t, e, top, row)


def test_verdict_table_and_sentences_follow_metrics(tmp_path):
    """Without a browser: the verdict table prints metrics.verdict, names series by pseudonym,
    and links each worst slice to its panel."""
    run = make_run_folder(tmp_path)
    metrics = json.loads((run / "metrics.json").read_text())
    labels = metrics["attack"]["test_slices"]
    figures = {
        method: MethodFigures(
            label=method,
            psnr=[30.0] * len(labels),
            ssim=[0.9] * len(labels),
            error_per_eps=m["delta_max_per_slice"],
            at_noise=NoiseLevelAttack(
                eps_abs=[1.0] * len(labels),
                error=[1.0 + 0.4 * k * (i + 1) for i in range(len(labels))],
                random_error=[1.0] * len(labels),
                rms_change_hu=[10.0 + 8 * k] * len(labels),
            ),
        )
        for k, (method, m) in enumerate(metrics["attack"]["models"].items())
    }
    series = "PAT1:1.2.3.1"
    verdict = series_verdicts(
        [series] * len(labels),
        labels,
        {},
        figures,
        metrics["attack"]["settings"]["eps"],
        k_ratio=1.5,
        max_rms_hu=25,
    )
    assert {v.passed for v in verdict.series} == {True, False}
    atomic_write_json(run / "metrics.json", {**metrics, "verdict": verdict.model_dump(mode="json")})
    text = build_report(run).read_text()
    page = parse(text)
    rows = page.tables["verdict-table"][1:]
    assert len(rows) == len(verdict.series)
    for row, v in zip(rows, verdict.series, strict=True):
        assert row[-1] == ("PASS" if v.passed else "FAIL")
        assert printed_equal(row[-4], v.ratio) and printed_equal(row[-3], v.rms_hu)
        assert row[1] not in (series, "?") and series not in text
    assert "verdict.k_ratio = 1.5" in text and text.count('class="verdict"') == len(rows)
