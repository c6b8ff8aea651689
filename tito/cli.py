"""``tito``: the course's command line.

    tito export 01 | --all [--lib-path DIR] [--nbs-path DIR] [--no-clean]
    tito test 01 [02 ...] | --all [--lib-path DIR] [-- PYTEST_ARGS...]
    tito status

Global option ``--root DIR`` (or ``TITO_ROOT``) picks the project; by default it is found from
the current directory. Each subcommand lives in ``tito/commands/<name>.py`` and is listed in
``tito.commands.COMMANDS``; a new one (release, grade, module complete, milestone, bench,
book) is a new module there with ``register(subparsers)`` and a ``run(args, ctx)``.

Exit codes: 0 success, 1 failure (tests failed, export failed), 2 usage error (bad arguments,
unknown module number, broken manifest).
"""

from __future__ import annotations

import argparse
import importlib
import sys
from functools import cached_property
from pathlib import Path

from . import __version__
from .errors import TitoError


class Context:
    """What every command gets: the project root and its manifest (loaded on first use)."""

    def __init__(self, root_arg: str | None = None):
        self.root_arg = root_arg

    @cached_property
    def root(self) -> Path:
        from .manifest import find_root
        return find_root(self.root_arg) if self.root_arg else find_root()

    @cached_property
    def manifest(self):
        from .manifest import load_manifest
        return load_manifest(self.root)

    @property
    def settings(self):
        return self.manifest.settings


def build_parser() -> argparse.ArgumentParser:
    from .commands import COMMANDS
    parser = argparse.ArgumentParser(
        prog="tito", description="tinytorch course tool: export notebooks, run module tests, "
                                 "show progress.")
    parser.add_argument("--version", action="version", version=f"tito {__version__}")
    parser.add_argument("--root", metavar="DIR",
                        help="project root (default: found from the current directory, "
                             "or $TITO_ROOT)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in COMMANDS:
        importlib.import_module(f".commands.{name}", __package__).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run tito with ``argv`` (default ``sys.argv[1:]``); returns the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    passthrough: list[str] = []
    if "--" in argv:                     # everything after `--` goes to the tool (pytest)
        i = argv.index("--")
        argv, passthrough = argv[:i], argv[i + 1:]
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:              # argparse: --help exits 0, usage errors exit 2
        return int(e.code or 0)
    if passthrough and not getattr(args, "accepts_passthrough", False):
        parser.print_usage(sys.stderr)
        print(f"tito {args.command}: error: arguments after '--' are not accepted: "
              f"{' '.join(passthrough)}", file=sys.stderr)
        return 2
    args.passthrough = passthrough
    ctx = Context(args.root)
    try:
        return int(args.func(args, ctx) or 0)
    except TitoError as e:
        sys.stdout.flush()
        print(f"tito {args.command}: error: {e}", file=sys.stderr)
        return e.exit_code
    except BrokenPipeError:              # e.g. `tito status | head`
        import os
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except KeyboardInterrupt:
        print("tito: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
