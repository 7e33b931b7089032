"""Header facts, the input series, and the export/de-identification section.

Patient identifiers and series UIDs are not printed: patients appear as P1, P2, ... and
series as S1, S2, ... with their description, so the report can circulate.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from .html import Markup, Section, facts, fmt, paragraph, table
from .rundata import RunData

SIMULATED_NOTICE = (
    "All images in this report are simulated research reconstructions from a computer "
    "model of a parallel-beam CT scanner, not clinical images. They must not be used for "
    "diagnosis. Attacked images show what a deliberately crafted, small change to the "
    "measured data can do to each reconstruction method."
)


class Pseudonyms:
    """Stable short names for series (S1, S2, ...) and patients (P1, P2, ...)."""

    def __init__(self, data: RunData) -> None:
        self.series: dict[str, str] = {}
        self.patients: dict[str, str] = {}
        for s in data.ingest.get("series", []):
            self._add(self.series, str(s.get("uid")), "S")
            self._add(self.patients, str(s.get("patient_id") or s.get("study_uid")), "P")
        if data.simulated is not None:
            for meta in data.simulated["slices"]["meta"]:
                self._add(self.series, str(meta["series"]), "S")
                self._add(self.patients, str(meta["patient"]), "P")

    @staticmethod
    def _add(names: dict[str, str], key: str, prefix: str) -> None:
        names.setdefault(key, f"{prefix}{len(names) + 1}")

    def slice_label(self, label: str) -> str:
        """'series:slice' -> 'S1 slice 12'."""
        series, _, index = label.rpartition(":")
        return f"{self.series.get(series, series)} slice {index}" if series else label


def run_date(data: RunData) -> str:
    """When the run last finished a stage (or when metrics.json was written)."""
    stamps = [
        str(s.get("finished"))
        for s in data.run.get("stages", {}).values()
        if isinstance(s, dict) and s.get("finished")
    ]
    if stamps:
        return max(stamps).replace("T", " ")
    mtime = (data.run_dir / "metrics.json").stat().st_mtime
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(mtime))


def _split_text(d: dict[str, Any], names: Pseudonyms) -> str:
    by = d.get("split_by", "unknown")
    counts = d.get("slices", {})
    parts = []
    for split in ("train", "val", "test"):
        if split not in counts:
            continue
        patients = d.get("patients", {}).get(split, [])
        who = ", ".join(names.patients.get(str(p), str(p)) for p in patients)
        parts.append(f"{split}: {counts[split]} slices" + (f" ({who})" if who else ""))
    how = (
        "by patient: no patient contributes slices to more than one split"
        if by == "patient"
        else "by slice block: one patient, contiguous blocks of slices per split"
        if by == "slice block"
        else f"by {by}"
    )
    return f"Split {how}. " + "; ".join(parts) + "."


def header_section(data: RunData, names: Pseudonyms) -> Section:
    """Run name, date, acquisition model, split, versions and stage status."""
    d = data.metrics.get("data", {})
    cfg = data.config
    physics = cfg.get("physics", {})
    views = d.get("views", physics.get("views"))
    gt_views = d.get("gt_views", physics.get("gt_views"))
    i0 = d.get("i0", physics.get("i0"))
    pixel = d.get("pixel_mm")
    rows: list[tuple[str, object]] = [
        ("Run", data.name),
        ("Run date", run_date(data)),
        ("Report built", time.strftime("%Y-%m-%d %H:%M:%S")),
        ("Run folder", str(data.run_dir.resolve())),
    ]
    if d.get("n") or cfg.get("data", {}).get("n"):
        n = d.get("n", cfg.get("data", {}).get("n"))
        grid = f"{n} × {n} pixels"
        if pixel:
            grid += f", pixel {fmt(pixel[0], 3)}–{fmt(pixel[1], 3)} mm"
        rows.append(("Image grid", grid))
    if views:
        det = f", {d['n_det']} detector pixels" if d.get("n_det") else ""
        rows.append(("Measured views", f"{views} parallel-beam views uniform in [0°, 180°){det}"))
    if gt_views:
        rows.append(("Ground truth", f"FBP of a noise-free {gt_views}-view sinogram"))
    rows.append(
        (
            "Dose model",
            f"Poisson noise, I₀ = {fmt(i0, 3)} photons per detector pixel"
            if i0
            else "noise-free measurements",
        )
    )
    if d:
        rows.append(("Data split", _split_text(d, names)))
    rows.append(("Seed / device", f"{data.run.get('seed', '–')} / {data.run.get('device', '–')}"))
    versions = data.run.get("versions", {})
    if versions:
        rows.append(("Versions", ", ".join(f"{k} {v}" for k, v in versions.items())))
    body = [paragraph(SIMULATED_NOTICE, "banner"), facts(rows)]
    body.append(_series_table(data, names))
    body.append(_stage_table(data))
    return Section("run", "Run, data and method", Markup("".join(body)))


def _series_table(data: RunData, names: Pseudonyms) -> Markup:
    series = data.ingest.get("series", [])
    if not series:
        return Markup("")
    rows = []
    for s in series:
        spacing = s.get("spacing") or []
        matrix = s.get("matrix") or []
        rows.append(
            [
                names.series.get(str(s.get("uid")), "?"),
                s.get("description") or "(no description)",
                names.patients.get(str(s.get("patient_id") or s.get("study_uid")), "?"),
                str(s.get("slices", "–")),
                " × ".join(str(v) for v in matrix) or "–",
                " × ".join(fmt(v, 3) for v in spacing) or "–",
            ]
        )
    skipped = len(data.ingest.get("skipped", []))
    caption = f"Input CT series ({skipped} file(s) in the input folder were skipped at ingest)."
    return table(
        ["Series", "Description", "Patient", "Slices", "Matrix", "Spacing z × y × x (mm)"],
        rows,
        caption=caption,
    )


def _stage_table(data: RunData) -> Markup:
    stages = data.run.get("stages", {})
    if not stages:
        return Markup("")
    rows = [
        [name, s.get("status", "–"), fmt(s.get("seconds"), 4), s.get("finished", "–")]
        for name, s in stages.items()
    ]
    return table(
        ["Stage", "Status", "Time (s)", "Finished"],
        rows,
        caption="Pipeline stages (disabled stages have no section in this report).",
    )


def _compact(value: object) -> str:
    if isinstance(value, dict):
        return ", ".join(f"{k} {_compact(v)}" for k, v in value.items())
    if isinstance(value, list):
        return ", ".join(_compact(v) for v in value)
    return str(value)


def _where(data: RunData, path: object) -> str:
    """A path written by the run, relative to the run folder when it lies inside it."""
    try:
        return str(Path(str(path)).resolve().relative_to(data.run_dir.resolve())) + "/"
    except ValueError:
        return str(path)


def export_section(data: RunData, names: Pseudonyms) -> Section | None:
    """Which derived series were written, where, and the de-identification applied."""
    export = data.metrics.get("export")
    if not export:
        return None
    body = [
        paragraph(
            "Derived DICOM series carry new Series and SOP Instance UIDs, ImageType "
            "DERIVED\\SECONDARY and a description saying they are simulated (and, where "
            "attacked, adversarially perturbed) research reconstructions."
        )
    ]
    deid = export.get("deidentification")
    body.append(
        paragraph(f"De-identification: {deid}." if deid else "De-identification: not recorded.")
    )
    places = [
        f"{label}: {_where(data, export[key])}"
        for key, label in (("dicom", "DICOM"), ("nifti", "NIfTI"))
        if export.get(key)
    ]
    if places:
        body.append(paragraph("Written to " + "; ".join(places) + " (in the run folder)."))
    if export.get("kinds"):
        body.append(paragraph("Kinds written: " + ", ".join(map(str, export["kinds"])) + "."))
    series = export.get("series", {})
    if isinstance(series, dict) and series:
        rows = []
        for folder, info in series.items():
            info = info if isinstance(info, dict) else {"written": info}
            source = str(info.get("source_series", ""))
            slices = info.get("slices")
            count = (
                f"{len(slices)} ({', '.join(map(str, slices))})"
                if isinstance(slices, list)
                else _compact(slices)
                if slices is not None
                else "–"
            )
            rest = {k: v for k, v in info.items() if k not in {"source_series", "slices", "kinds"}}
            rows.append(
                [
                    folder,
                    names.series.get(source, "–") if source else "–",
                    count,
                    _compact(info.get("kinds", "–")),
                    _compact(rest) or "–",
                ]
            )
        body.append(
            table(
                ["Exported series", "Source series", "Slices", "Kinds", "Other"],
                rows,
                table_id="export-series",
                caption="Derived series written by the export stage.",
            )
        )
    return Section("export", "Export and de-identification", Markup("".join(body)))
