"""The ``ctrobust`` command line: run pipelines, write demo data, inspect folders, rebuild reports.

User errors end with one clear line on stderr and a non-zero exit code; a
traceback is shown only with ``--debug``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from ctrobust.config import ConfigError
from pipelines.config_cli import add_config_parser
from pipelines.errors import explain
from pipelines.pacs_cli import add_pacs_parser

EXIT_INTERRUPTED = 130


def cmd_run(args: argparse.Namespace) -> int:
    from ctrobust.config import load_config
    from pipelines.config_cli import resolve_config_path
    from pipelines.run import run_pipeline

    cfg = load_config(resolve_config_path(args.config), args.set)
    run_dir = Path(args.out) if args.out else Path("runs") / cfg.name
    if run_dir.exists() and not run_dir.is_dir():
        raise ConfigError(f"--out '{run_dir}' is a file; a run folder must be a folder")
    debug = getattr(args, "debug", False)
    metrics = run_pipeline(
        cfg, run_dir, quiet=args.quiet, debug=debug, nproc_per_node=args.nproc_per_node
    )
    if not args.quiet:
        print(f"run folder: {run_dir}")
        from pipelines.summary import format_summary

        print(format_summary(metrics))
    return 0


def cmd_demo_data(args: argparse.Namespace) -> int:
    from ctrobust.demo_data import write_demo_folder

    dest = Path(args.dir)
    if dest.exists() and any(dest.iterdir()):
        raise ConfigError(f"demo-data: '{dest}' exists and is not empty; choose a new folder")
    write_demo_folder(dest)
    print(f"wrote the synthetic demo folder to {dest}")
    return 0


def cmd_ingest(args: argparse.Namespace) -> int:
    from dicom_io import format_ingest_report, ingest_report_to_dict, scan_folder

    folder = Path(args.folder)
    if not folder.is_dir():
        raise ConfigError(f"ingest: '{folder}' is not a folder")
    report = scan_folder(folder, allow_lossy=args.allow_lossy)
    print(
        json.dumps(ingest_report_to_dict(report), indent=2, allow_nan=False)
        if args.json
        else format_ingest_report(report)
    )
    if not report.series:
        print(f"ingest: no usable axial CT series in '{folder}'", file=sys.stderr)
        return 1
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from ctrobust.report import build_report

    run_dir = Path(args.run_dir)
    if not run_dir.is_dir():
        raise ConfigError(f"report: '{run_dir}' is not a run folder")
    html = build_report(run_dir, pdf=args.pdf, max_slices=args.max_slices)
    print(f"report: {html}")
    if args.pdf:
        pdf = html.with_suffix(".pdf")
        fresh = pdf.exists() and pdf.stat().st_mtime >= html.stat().st_mtime
        print(f"pdf: {pdf}" if fresh else "pdf: not written (see the warning above)")
    if args.screenshots:
        from ctrobust.report.browser import report_screenshots

        for name, path in report_screenshots(html, html.parent / "screenshots").items():
            print(f"screenshot {name}: {path}")
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ctrobust",
        description="Tell whether a deep-learning CT reconstructor can be trusted, "
        "and make it more robust.",
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks and debug logs")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser(
        "run",
        help="run a pipeline config (re-running resumes and recomputes nothing that is done)",
        description="Run the stages of a YAML config. Re-running the same command skips finished "
        "stages; a changed config recomputes only the stages it affects.",
    )
    run.add_argument(
        "config", help="a shipped config by name (ctrobust config list), e.g. demo, or a YAML file"
    )
    run.add_argument("--out", help="run folder (default: runs/<config name>)")
    run.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY.PATH=VALUE",
        help="override a config value, e.g. --set data.folder=/path/to/dicom (repeatable)",
    )
    run.add_argument(
        "--quiet",
        action="store_true",
        help="warnings only (progress bars are shown only when stderr is a terminal)",
    )
    run.add_argument(
        "--nproc-per-node",
        type=int,
        default=None,
        metavar="N",
        help="run training and attacks in N processes (gloo on CPU, nccl on GPUs); "
        "under torchrun the process group comes from its environment",
    )
    run.add_argument(
        "--debug",
        action="store_true",
        default=argparse.SUPPRESS,
        help="show tracebacks and debug logs",
    )
    run.set_defaults(func=cmd_run)

    demo = sub.add_parser(
        "demo-data",
        help="write the embedded synthetic clinical folder (DICOM) to DIR",
        description="Write the project's own synthetic patients as DICOM CT series.",
    )
    demo.add_argument("dir", help="destination folder (must be new or empty)")
    demo.set_defaults(func=cmd_demo_data)

    ingest = sub.add_parser(
        "ingest",
        help="list the CT series found in FOLDER and every skipped file with its reason",
        description="Scan a clinical folder recursively: usable axial CT series and skipped files.",
    )
    ingest.add_argument("folder", help="folder of DICOM files (searched recursively)")
    ingest.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    ingest.add_argument(
        "--allow-lossy",
        action="store_true",
        help="accept lossy-compressed slices (refused by default, like data.allow_lossy)",
    )
    ingest.set_defaults(func=cmd_ingest)

    report = sub.add_parser(
        "report",
        help="rebuild RUN_DIR/report/index.html from a run folder, recomputing nothing",
        description="Rebuild the self-contained HTML report of a finished (or partial) run.",
    )
    report.add_argument("run_dir", help="a folder written by `ctrobust run`")
    report.add_argument("--pdf", action="store_true", help="also print index.pdf (needs Chromium)")
    report.add_argument(
        "--max-slices", type=int, default=3, help="test slices shown in detail (default 3)"
    )
    report.add_argument(
        "--screenshots",
        action="store_true",
        help="also save PNG screenshots of the verdict and of one slice's panels in "
        "RUN_DIR/report/screenshots/ (needs Chromium)",
    )
    report.set_defaults(func=cmd_report)
    add_config_parser(sub)
    add_pacs_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``ctrobust`` console script."""
    args = _parser().parse_args(argv)
    debug = bool(getattr(args, "debug", False))
    handler: Callable[[argparse.Namespace], int] = args.func
    try:
        return handler(args)
    except BrokenPipeError:
        # Output piped into e.g. `head`, which closed early: not an error. Point stdout at
        # devnull so the interpreter's final flush does not raise again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except KeyboardInterrupt:
        print("ctrobust: interrupted; re-run the same command to resume", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as error:
        explained = explain(error)
        if debug or explained is None:
            raise
        message, code = explained
        print(f"ctrobust: error: {message}", file=sys.stderr)
        return code


if __name__ == "__main__":
    sys.exit(main())
