"""The ``crewtrain-nb`` command line."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from . import __version__
from .demo import write_demo
from .errors import StoreError
from .store import CrewTrainingHandler

__all__ = ["main"]


def _summarize(path: Path) -> str:
    data: Any = CrewTrainingHandler(path).load()
    size = path.stat().st_size if path.exists() else 0
    if not isinstance(data, dict):
        return f"{path}: {type(data).__name__}, {size:,} bytes"
    records = sum(len(value) for value in data.values() if isinstance(value, dict))
    return f"{path}: {len(data)} agents, {records} entries, {size:,} bytes"


def _cmd_demo(args: argparse.Namespace) -> int:
    for path in write_demo(args.directory).values():
        print(f"wrote {path}")
    return 0


def _cmd_info(args: argparse.Namespace) -> int:
    path = Path(args.path)
    if not path.exists():
        raise StoreError(f"{path}: no such file; give the path of a .pkl store", path=str(path))
    print(_summarize(path))
    return 0


def _cmd_quickstart(args: argparse.Namespace) -> int:
    paths = write_demo(args.output)
    print(f"demo stores written to {os.path.abspath(args.output)}")
    for path in paths.values():
        print("  " + _summarize(path))
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="crewtrain-nb",
        description="Look into CrewAI training stores (training_data.pkl, trained_agents_data.pkl).",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    demo = commands.add_parser("demo", help="write the demo stores into a directory")
    demo.add_argument("directory", help="where to write training_data.pkl, trained_agents_data.pkl, metrics.pkl")
    demo.set_defaults(run=_cmd_demo)

    info = commands.add_parser("info", help="summarize a store file")
    info.add_argument("path", help="a .pkl store")
    info.set_defaults(run=_cmd_info)

    quickstart = commands.add_parser("quickstart", help="the main job on the built-in demo stores")
    quickstart.add_argument("output", nargs="?", default="demo-output", help="output folder (default: demo-output)")
    quickstart.set_defaults(run=_cmd_quickstart)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit code."""
    args = _parser().parse_args(argv)
    try:
        return int(args.run(args))
    except StoreError as exc:
        print(f"crewtrain-nb: error: {exc}", file=sys.stderr)
        return 2
    except (OSError, ValueError) as exc:
        print(f"crewtrain-nb: error: {exc}", file=sys.stderr)
        return 2
