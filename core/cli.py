"""The `segexplain` command line: a thin dispatcher over `core.commands.*`.

Each command module exposes `HELP` (one line), `configure(parser)` and
`run(args, progress) -> dict`. Heavy imports (torch, sklearn) live inside `run`, so
`segexplain --help` and `segexplain info` stay fast.
"""

from __future__ import annotations

import argparse
import importlib
import signal
import sys
from types import ModuleType

from . import __version__
from .errors import CancelledError, SegexplainError
from .progress import Progress

#: command name -> module under core.commands
COMMANDS = {
    "sample-data": "sample_data",
    "train": "train",
    "export-onnx": "export_onnx",
    "analyze": "analyze",
    "estimate": "estimate",
    "export-tasks": "export_tasks",
    "info": "info",
    "check-env": "check_env",
}


def _load(name: str) -> ModuleType | None:
    try:
        return importlib.import_module(f"{__package__}.commands.{COMMANDS[name]}")
    except ModuleNotFoundError as exc:
        if exc.name and exc.name.endswith(f"commands.{COMMANDS[name]}"):
            return None  # command not built into this version
        raise


def build_parser() -> argparse.ArgumentParser:
    """The full parser with every available sub-command."""
    parser = argparse.ArgumentParser(
        prog="segexplain",
        description="Explain a U-Net building-segmentation model on aerial imagery.")
    parser.add_argument("--version", action="version", version=f"segexplain {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        mod = _load(name)
        if mod is None:
            continue
        p = sub.add_parser(name, help=mod.HELP, description=mod.HELP)
        mod.configure(p)
        p.add_argument("--progress", choices=("bar", "jsonl", "none"), default="bar",
                       help="progress for people (bar, on stderr) or programs (jsonl, on stdout)")
        p.add_argument("--debug", action="store_true", help="show tracebacks on errors")
        p.set_defaults(_module=mod)
    return parser


def _on_sigterm(signum: int, frame: object) -> None:
    raise CancelledError("the run was cancelled (SIGTERM); nothing was left half-written")


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit status (0 only on success)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return 2
    progress = Progress(args.progress)
    signal.signal(signal.SIGTERM, _on_sigterm)
    sigbreak = getattr(signal, "SIGBREAK", None)  # Windows: the plugin's CTRL_BREAK_EVENT
    if sigbreak is not None:
        signal.signal(sigbreak, _on_sigterm)
    try:
        result = args._module.run(args, progress)
    except KeyboardInterrupt:
        progress.fail(CancelledError("interrupted; nothing was left half-written"))
        return 130
    except CancelledError as exc:
        progress.fail(exc)
        return 130
    except SegexplainError as exc:
        if args.debug:
            raise
        progress.fail(exc)
        return 2
    except Exception as exc:  # the one boundary where unexpected errors become one line
        if args.debug:
            raise
        progress.fail(RuntimeError(
            f"unexpected {type(exc).__name__}: {exc} (run again with --debug for the traceback)"))
        return 1
    progress.finish(result or {})
    return 0


if __name__ == "__main__":
    sys.exit(main())
