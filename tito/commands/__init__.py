"""tito subcommands. Each module here defines ``register(subparsers)``, which adds its parser
and sets ``func=run``; ``run(args, ctx)`` returns the exit code. To add a command (release,
grade, module complete, milestone, bench, book), write ``tito/commands/<name>.py`` and list it
below."""

COMMANDS = ["export", "test", "status", "release", "module", "grade"]
COMMANDS.append("book")          # tito/commands/book.py: the course book
COMMANDS.append("milestone")     # tito/commands/milestone.py: list and run milestones/
COMMANDS.append("bench")         # tito/commands/bench.py: benchmarks/run_all.py, one table
COMMANDS.append("experiment")    # tito/commands/experiment.py: module 20's pruning experiment on a TinyGPT


def add_command(sub, name: str, help: str, doc: str):
    """The parser of one (sub)command: `help` in the command list, and the text of `doc` (the
    command module's docstring) after its first paragraph as the description, line breaks kept."""
    import argparse
    return sub.add_parser(name, help=help, description=doc.split("\n\n", 1)[1],
                          formatter_class=argparse.RawDescriptionHelpFormatter)


def add_module_selection(parser, what: str) -> None:
    """The shared `NN [NN ...] | --all` arguments."""
    parser.add_argument("modules", nargs="*", metavar="NN",
                        help=f"module number(s) to {what}, e.g. 1 or 01")
    parser.add_argument("--all", action="store_true", help=f"{what} every module")


def selected_modules(args, ctx):
    from ..errors import TitoError
    if args.all and args.modules:
        raise TitoError("give module numbers or --all, not both", exit_code=2)
    if not args.all and not args.modules:
        raise TitoError(f"give a module number (valid: {ctx.manifest.valid_range()}) or --all",
                        exit_code=2)
    return ctx.manifest.select(args.modules, all_=args.all)
