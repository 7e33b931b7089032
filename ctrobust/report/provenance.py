"""Header facts, the input series, and the export/de-identification section.

Patient identifiers and series UIDs are not printed: patients appear as P1, P2, ... and
series as S1, S2, ... with their description, so the report can circulate.
"""

from __future__ import annotations

import time
from pathlib import Path

from ctrobust.results import DataResult

from .html import Markup, Section, esc, facts, fmt, paragraph, table
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

    def series_label(self, key: str) -> str:
        """The verdict's 'patient:series-tail' -> 'P1 S1' ('?' for what the run did not list)."""
        patient, _, tail = key.partition(":")
        series = next((v for k, v in self.series.items() if k.endswith(tail)), "?")
        return f"{self.patients.get(patient, '?')} {series}"

    def slice_label(self, label: str) -> str:
        """'series:slice' or the attack's 'patient:series-tail:slice' -> 'P1 S1 slice 12'.

        Identifiers never reach the page: an unknown patient or series prints as '?'.
        """
        parts = label.split(":")
        if len(parts) == 2:
            series, index = parts
            return f"{self.series.get(series, '?')} slice {index}"
        if len(parts) == 3:
            patient, tail, index = parts
            series = next((v for k, v in self.series.items() if k.endswith(tail)), "?")
            if index.startswith("IN"):  # 'IN<InstanceNumber> z=<z>mm' (ctrobust.selection)
                number, _, z = index[2:].partition(" z=")
                where = f"InstanceNumber {number}" + (
                    f", z = {z.removesuffix('mm')} mm" if z else ""
                )
            else:
                where = f"slice {index}"
            return f"{self.patients.get(patient, '?')} {series} {where}"
        return label


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


def _split_text(d: DataResult, names: Pseudonyms) -> str:
    parts = []
    for split in ("train", "val", "test"):
        if split not in d.slices:
            continue
        patients = d.patients.get(split, [])
        who = ", ".join(names.patients.get(str(p), str(p)) for p in patients)
        parts.append(f"{split}: {d.slices[split]} slices" + (f" ({who})" if who else ""))
    shared = sorted(
        {
            p
            for i, a in enumerate(d.patients)
            for b in list(d.patients)[i + 1 :]
            for p in set(d.patients[a]) & set(d.patients[b])
        }
    )
    if d.split_by == "slice block":
        how = "by slice block: one patient, contiguous blocks of slices per split"
    elif shared:
        who = ", ".join(names.patients.get(p, p) for p in shared)
        how = f"by patient; {who} contribute(s) slices to more than one split"
    else:
        how = f"by {d.split_by}: no patient contributes slices to more than one split"
    return f"Split {how}. " + "; ".join(parts) + "."


def header_section(data: RunData, names: Pseudonyms) -> Section:
    """Run name, date, acquisition model, split, versions and stage status."""
    d = data.metrics.data
    rows: list[tuple[str, object]] = [
        ("Run", data.run_dir.name),
        ("Config", data.name),
        ("Run date", run_date(data)),
        ("Report built", time.strftime("%Y-%m-%d %H:%M:%S")),
        ("Run folder", str(data.run_dir.resolve())),
    ]
    if d is not None:
        grid = f"{d.n} × {d.n} pixels, pixel {fmt(d.pixel_mm[0], 3)}–{fmt(d.pixel_mm[1], 3)} mm"
        rows += [
            ("Image grid", grid),
            (
                "Measured views",
                f"{d.views} parallel-beam views uniform in [0°, 180°), {d.n_det} detector pixels",
            ),
            ("Ground truth", f"FBP of a noise-free {d.gt_views}-view sinogram"),
            (
                "Dose model",
                f"Poisson noise, I₀ = {fmt(d.i0, 3)} photons per detector pixel"
                if d.i0
                else "noise-free measurements",
            ),
            ("Data split", _split_text(d, names)),
        ]
    rows.append(("Seed / device", f"{data.run.get('seed', '–')} / {data.run.get('device', '–')}"))
    versions = data.run.get("versions", {})
    if versions:
        rows.append(("Versions", ", ".join(f"{k} {v}" for k, v in versions.items())))
    body = [paragraph(SIMULATED_NOTICE, "banner"), facts(rows)]
    body.append(_methods_table(data))
    body.append(_series_table(data, names))
    body.append(_stage_table(data))
    return Section("run", "Run, data and method", Markup("".join(body)))


def _weights_file(data: RunData, path: str | None) -> str:
    """A weights file relative to the run folder when the run wrote it, else as declared."""
    if not path:
        return "–"
    try:
        return str(Path(path).resolve().relative_to(data.run_dir.resolve()))
    except ValueError:
        return path


def _methods_table(data: RunData) -> Markup:
    """Every reconstructor under test with its provenance and the weights' SHA-256."""
    methods = data.metrics.methods or {}
    if not methods:
        return Markup("")
    rows = [
        [
            name,
            str(info.kind),
            info.what,
            _weights_file(data, info.weights),
            Markup(f'<code style="word-break: break-all">{esc(info.sha256)}</code>')
            if info.sha256
            else "–",
        ]
        for name, info in methods.items()
    ]
    return table(
        ["Method", "Kind", "What it is", "Weights", "SHA-256 of the weights"],
        rows,
        table_id="methods-table",
        caption="Reconstructors under test and where they come from (run.json lists the "
        "external models' files with the same checksums).",
    )


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


def _status(name: str, stage: dict) -> str:
    """A stage's status; the report stage, still running while it writes this page, says so."""
    status = str(stage.get("status", "–"))
    return "writing this report" if name == "report" and status == "running" else status


def _stage_table(data: RunData) -> Markup:
    stages = data.run.get("stages", {})
    if not stages:
        return Markup("")
    rows = [
        [name, _status(name, s), fmt(s.get("seconds"), 4), s.get("finished", "–")]
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
    export = data.metrics.export
    if export is None:
        return None
    body = [
        paragraph(
            "Derived DICOM series carry new Series and SOP Instance UIDs, ImageType "
            "DERIVED\\SECONDARY and a description saying they are simulated (and, where "
            "attacked, adversarially perturbed) research reconstructions."
        ),
        paragraph(f"De-identification: {export.deidentification}."),
    ]
    places = [
        f"{label}: {_where(data, path)}"
        for path, label in ((export.dicom, "DICOM"), (export.nifti, "NIfTI"))
        if path
    ]
    if places:
        body.append(paragraph("Written to " + "; ".join(places) + " (in the run folder)."))
    if export.series:
        rows = [
            [
                folder,
                names.series.get(info.source_series, "–"),
                f"{len(info.slices)} ({', '.join(map(str, info.slices))})",
                ", ".join(info.kinds),
            ]
            for folder, info in export.series.items()
        ]
        body.append(
            table(
                ["Exported series", "Source series", "Slices", "Kinds"],
                rows,
                table_id="export-series",
                caption="Derived series written by the export stage.",
            )
        )
    return Section("export", "Export and de-identification", Markup("".join(body)))
