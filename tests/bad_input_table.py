"""Print the bad-input corpus of test_bad_inputs.py as a table: kind, slices kept, outcome.

    CTROBUST_SHARED_DATA=../shared/data .venv/bin/python tests/bad_input_table.py

Each kind is built exactly as the test builds it (six reduced clinical slices plus the
bad file, in a temporary folder) and scanned; the outcome is the bad file's skip reason,
or "kept" with the series' last warning.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

sys.path[:0] = [str(Path(__file__).parent), str(Path(__file__).parents[1])]

import test_bad_inputs as corpus  # noqa: E402
from conftest import shared_data  # noqa: E402

from dicom_io import scan_folder  # noqa: E402

BAD_NAMES = {"bad.dcm", "zz_bad.dcm", "bad", ".bad"}


def main() -> None:
    source = shared_data() / "abdomen_ct_pancreas"
    print("| # | kind | good slices kept (of 6) | outcome |\n| --- | --- | --- | --- |")
    with tempfile.TemporaryDirectory() as tmp:
        clinical = Path(tmp) / "clinical"
        clinical.mkdir()
        for name in corpus.SOURCE_SLICES:
            corpus.reduced_slice(source / name, clinical / name)
        for k, (name, kind) in enumerate(corpus.KINDS.items(), 1):
            folder = Path(tmp) / f"k{k}"
            shutil.copytree(clinical, folder)
            good = sorted(folder.glob("1-*.dcm"))
            kind.make(folder, good)
            report = scan_folder(folder)
            kept_names = {p.name for s in report.series for p in s.source_paths}
            kept = sum(p.name in kept_names for p in good)
            bad = [s for s in report.skipped if s.path.name in BAD_NAMES]
            if bad:
                outcome = f"skipped: {bad[0].reason}"
            else:
                warnings = report.series[0].warnings if report.series else []
                outcome = "kept" + (f"; warning: {warnings[-1]}" if warnings else "")
            print(f"| {k} | {name} | {kept} | {outcome.replace('|', '/')} |")


if __name__ == "__main__":
    main()
