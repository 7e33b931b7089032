"""``python -m ctrobust.linear_theory CONFIG.yaml [OUT.json]``: run Sec. 4.5 without the pipeline.

Validates the YAML file as a run config, then writes the result of ``run_linear_theory`` on
its ``linear_theory`` section (defaults if absent) and top-level ``seed`` as JSON to OUT.json
or stdout.
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

from ctrobust.config import ConfigError, load_config
from ctrobust.linear_theory.run import run_linear_theory


def main(argv: list[str]) -> int:
    if len(argv) not in (1, 2):
        print(__doc__.splitlines()[0], file=sys.stderr)
        return 2
    try:
        cfg = load_config(Path(argv[0]))
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    logging.getLogger("ctrobust").setLevel(logging.INFO)
    text = json.dumps(
        run_linear_theory(cfg.linear_theory, seed=cfg.seed), indent=1, allow_nan=False
    )
    if len(argv) == 2:
        Path(argv[1]).write_text(text)
    else:
        print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
