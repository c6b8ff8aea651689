"""``tito book build [--with-solutions] [--out DIR] [--allow-warnings]``: the course book.

Stages the book into ``DIR/_build/src`` from ``book/`` (intro, milestones page, configuration)
and ``modules/manifest.toml``: one chapter per module whose notebook exists, in manifest order
(a module with several notebooks: its main notebook is the chapter, the others its sections),
plus the milestones' results from ``milestones/results/*.json``. Then runs ``jupyter-book build``
(Jupyter Book 1.x) and prints the path of ``index.html``.

Every chapter shows the outputs and figures of its REFERENCE notebook: before staging, each notebook
is run top to bottom (with the solutions) on a Jupyter kernel, two at a time (TITO_BOOK_WORKERS),
and cached in book/_build/executed/ under a hash of the notebook, the tinytorch package, the data and
requirements.lock, so an unchanged book rebuilds without running anything. A cell that raises fails
the build. ``--no-execute`` builds without outputs.

By default the chapters are the STUDENT version, stubbed exactly as ``tito release`` does:
every ``### BEGIN SOLUTION`` ... ``### END SOLUTION`` block becomes ``raise
NotImplementedError("Exercise: ...")``. ``--with-solutions`` builds the instructor version
(default DIR: book/_build/instructor, so it never overwrites the student book in
book/_build/html).

Mathematics is rendered by MathJax 2 copied from Debian's libjs-mathjax into the book: no page
loads anything from the network (``bash scripts/system-deps.sh`` installs it).

Fails (exit 1) when jupyter-book or MathJax is missing, the build reports an error or a warning
(``--allow-warnings`` lets warnings pass), or a page would load a script from the network.
"""

from __future__ import annotations

from . import add_command


def register(sub):
    p = add_command(sub, "book", "build the course book (Jupyter Book) from the notebooks", __doc__)
    bsub = p.add_subparsers(dest="book_command", metavar="ACTION")
    bsub.required = True
    b = add_command(bsub, "build", "stage and build the book into DIR/_build/html", __doc__)
    b.add_argument("--with-solutions", action="store_true",
                   help="the instructor version: keep the solution blocks")
    b.add_argument("--out", metavar="DIR",
                   help="build into DIR/_build (default: book/, or book/_build/instructor "
                        "with --with-solutions)")
    b.add_argument("--allow-warnings", action="store_true",
                   help="do not fail on Sphinx/MyST warnings (errors still fail)")
    b.add_argument("--no-execute", action="store_true",
                   help="do not run the reference notebooks: the chapters show no outputs")
    b.set_defaults(func=run)


def run(args, ctx) -> int:
    from ..book import build_book

    res = build_book(ctx.manifest, out=args.out, with_solutions=args.with_solutions,
                     allow_warnings=args.allow_warnings, execute=not args.no_execute)
    ran = ("" if res.execute_seconds is None
           else f", of which {res.execute_seconds:.1f} s running or reading the notebooks")
    print(f"built the book in {res.seconds:.1f} s{ran} "
          f"({len(res.staged.chapters)} chapters, {len(res.warnings)} warnings)")
    print(res.index_html)
    return 0
