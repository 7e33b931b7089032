"""``python -m ctrobust.linear_theory CONFIG.yaml [OUT.json]``: run Sec. 4.5 without the pipeline.

Reads the ``linear_theory`` section (and the top-level ``seed``) of the YAML file and
writes the result of ``run_linear_theory`` as JSON to OUT.json or stdout.
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import yaml

from ctrobust.linear_theory.run import run_linear_theory


def main(argv: list[str]) -> int:
    if len(argv) not in (1, 2):
        print(__doc__.splitlines()[0], file=sys.stderr)
        return 2
    tree = yaml.safe_load(Path(argv[0]).read_text()) or {}
    section = {**tree.get("linear_theory", {}), "seed": tree.get("seed", 0)}
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    logging.getLogger("ctrobust").setLevel(logging.INFO)
    text = json.dumps(run_linear_theory(section), indent=1)
    if len(argv) == 2:
        Path(argv[1]).write_text(text)
    else:
        print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
