"""The course book: staged from the manifest, built with Jupyter Book 1.x.

``book/`` holds only hand-written sources (``_config.yml``, ``intro.md``, ``milestones.md``).
Everything else is generated at build time into ``<out>/_build/src``::

    _toc.yml               one chapter per manifest module whose notebook exists, in manifest order;
                           the other notebooks of a module that has several are sections of its
                           chapter (``sections:`` under the main notebook)
    NN_name*.ipynb         the module notebooks, student version by default (solutions stubbed),
                           with the outputs and figures of the reference notebooks' run
                           (tito/book_execute.py: executed at build time, cached)
    intro.md               book/intro.md with the chapter table filled in
    milestones.md          book/milestones.md with milestones/results/*.json as a table
    _extra/_static/mathjax MathJax 2 copied from Debian's libjs-mathjax (the book loads no CDN)

``jupyter-book build`` then writes ``<out>/_build/html``. Nothing here hard-codes the module list.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from .errors import TitoError

# --------------------------------------------------------------------------------------------
# Chapter copies: the student version by default
# --------------------------------------------------------------------------------------------

def _cell_source(cell) -> str:
    src = cell.get("source", "")
    return "".join(src) if isinstance(src, list) else str(src)


def _is_hidden(cell) -> bool:
    """nbdev's ``#| hide``: not shown in the docs (nor in this book)."""
    return any(re.match(r"^#\|\s*hide\s*$", ln.strip())
               for ln in _cell_source(cell).splitlines())


def book_notebook(nb: dict, where: str, module_label: str, with_solutions: bool = False,
                  executed: dict | None = None) -> dict:
    """The chapter copy of a notebook: ``#| hide`` code cells dropped and, unless
    ``with_solutions``, the solution blocks stubbed exactly as ``tito release`` does for students
    (:func:`tito.release.strip_notebook`: ``raise NotImplementedError("Exercise: ...")`` in code,
    *Your answer here.* in markdown). Each code cell's outputs are those of the same cell in
    ``executed`` (the run of the reference notebook ``nb``), or none without it: the student
    reads the stubbed code next to what the finished code prints and draws."""
    from .book_execute import merge_outputs
    from .release import strip_notebook

    if with_solutions:
        nb = json.loads(json.dumps(nb))     # deep copy
        for cell in nb.get("cells", []):
            if cell.get("cell_type") == "code":
                cell["outputs"] = []
                cell["execution_count"] = None
    else:
        nb = strip_notebook(nb, where, module_label, clear_outputs=True).notebook
    if executed is not None:
        nb = merge_outputs(nb, executed, where)
    nb["cells"] = [c for c in nb.get("cells", [])
                   if not (c.get("cell_type") == "code" and _is_hidden(c))]
    return nb


def first_heading(nb: dict) -> str | None:
    """The text of the notebook's first ``# `` heading (markdown cells), or None."""
    for cell in nb.get("cells", []):
        if cell.get("cell_type") != "markdown":
            continue
        for ln in _cell_source(cell).splitlines():
            if ln.startswith("# "):
                return ln[2:].strip()
    return None


def normalize_title(text: str) -> str:
    """For comparing titles: markdown emphasis/code marks dropped, spaces collapsed, lower case."""
    text = re.sub(r"[`*_]", "", text)
    return " ".join(text.split()).casefold()


# --------------------------------------------------------------------------------------------
# MathJax (served from the build, never from a CDN)
# --------------------------------------------------------------------------------------------

MATHJAX_CANDIDATES = (Path("/usr/share/javascript/mathjax"), Path("/usr/share/mathjax"))
# What the configuration in book/_config.yml loads (TeX input, CommonHTML output, TeX fonts):
# about 2 MB instead of the package's 54 MB.
MATHJAX_PARTS = ("MathJax.js", "jax/input/TeX", "jax/output/CommonHTML", "jax/element",
                 "extensions", "fonts/HTML-CSS/TeX/woff", "fonts/HTML-CSS/TeX/otf",
                 "localization/en")


def find_mathjax() -> Path:
    """The MathJax 2 directory of Debian's ``libjs-mathjax`` (or ``$TITO_MATHJAX_DIR``)."""
    env = os.environ.get("TITO_MATHJAX_DIR")
    candidates = [Path(env)] if env else list(MATHJAX_CANDIDATES)
    for d in candidates:
        if (d / "MathJax.js").is_file() and (d / "jax" / "output" / "CommonHTML").is_dir():
            return d
    where = " or ".join(str(d) for d in candidates)
    raise TitoError(f"MathJax 2 not found in {where}: the book serves MathJax from disk. "
                    "Install it with `bash scripts/system-deps.sh` (Debian's libjs-mathjax)")


def copy_mathjax(dest: Path, source: Path | None = None) -> Path:
    source = source or find_mathjax()
    for part in MATHJAX_PARTS:
        src = source / part
        if not src.exists():
            raise TitoError(f"MathJax at {source} lacks {part}: reinstall libjs-mathjax")
        dst = dest / part
        dst.parent.mkdir(parents=True, exist_ok=True)
        if src.is_dir():
            shutil.copytree(src, dst, dirs_exist_ok=True)
        else:
            shutil.copy2(src, dst)
    return dest


# --------------------------------------------------------------------------------------------
# Generated markdown: chapter table, milestone results
# --------------------------------------------------------------------------------------------

CHAPTERS_MARKER = "<!-- tito:chapters -->"
MILESTONES_MARKER = "<!-- tito:milestone-results -->"
TORCH_PROGRAMS_MARKER = "<!-- tito:torch-programs -->"
NO_MILESTONES_TEXT = ("No milestone has been run yet. Run one with `tito milestone run NAME`; "
                      "its results appear here the next time the book is built.")

_MD_SPECIAL = {c: f"&#{ord(c)};" for c in "\\`*_[]<>|$#~!&"}


def md_text(value) -> str:
    """``value`` as literal text inside markdown (a table cell): every character markdown, MyST
    math or a table could read as syntax becomes an HTML entity; newlines become spaces."""
    s = " ".join(str(value).split())
    return "".join(_MD_SPECIAL.get(c, c) for c in s)


def chapters_markdown(modules, included) -> str:
    """A table of every manifest module: linked when its chapter is in the book."""
    present = {m.folder for m in included}
    rows = ["| # | chapter | exports to |", "|---|---|---|"]
    for m in modules:
        title = md_text(m.title)
        cell = f"[{title}]({m.folder}.ipynb)" if m.folder in present else f"{title} (coming soon)"
        exports = ", ".join(f"`{x}`" for x in m.exports)
        rows.append(f"| {m.nn} | {cell} | {exports} |")
    return "\n".join(rows) + "\n"


@dataclass
class MilestoneResult:
    """One ``milestones/results/NAME.json``, as the milestone scripts write it
    (``milestones/_common.py``: name, title, fast, seconds, metrics, gates, passed); other
    layouts are read leniently (flat metrics, ``milestone``/``description``/``timestamp``)."""
    name: str
    file: str
    title: str = ""
    when: str = ""
    metrics: dict = field(default_factory=dict)
    gates: list = field(default_factory=list)       # [(description, passed)]
    passed: bool | None = None
    seconds: float | None = None
    fast: bool = False
    plot: Path | None = None                        # NAME.png next to the JSON, if any
    error: str = ""


_META_KEYS = {"name", "milestone", "title", "description", "timestamp", "date", "time",
              "finished", "finished_at", "created", "created_at", "metrics", "gates", "passed",
              "seconds", "fast"}


def _flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flatten(v, key + "."))
        elif isinstance(v, (bool, int, float, str)) or v is None:
            out[key] = v
        elif isinstance(v, list) and len(v) <= 6 and all(
                isinstance(x, (int, float, str, bool)) for x in v):
            out[key] = v
    return out


def format_value(v) -> str:
    if isinstance(v, bool) or v is None:
        return str(v)
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, list):
        return "[" + ", ".join(format_value(x) for x in v) + "]"
    s = str(v)
    return s if len(s) <= 120 else s[:117] + "..."


def _number(v):
    return v if isinstance(v, (int, float)) and not isinstance(v, bool) else None


def load_milestone_results(results_dir: Path) -> list[MilestoneResult]:
    """One entry per ``results_dir/*.json`` (sorted by file name). A file that cannot be read
    gives an entry with ``error`` set rather than stopping the build."""
    out = []
    if not results_dir.is_dir():
        return out
    for p in sorted(results_dir.glob("*.json")):
        try:
            data = json.loads(p.read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            out.append(MilestoneResult(name=p.stem, file=p.name, error=f"unreadable: {e}"))
            continue
        if not isinstance(data, dict):
            out.append(MilestoneResult(name=p.stem, file=p.name,
                                       error="unreadable: not a JSON object"))
            continue
        name = data.get("name") or data.get("milestone") or p.stem
        title = data.get("title") or data.get("description") or ""
        when = next((str(data[k]) for k in ("timestamp", "finished_at", "finished", "date",
                                             "created_at", "created", "time")
                     if k in data and not isinstance(data[k], (dict, list))), "")
        if isinstance(data.get("metrics"), dict):
            metrics = _flatten(data["metrics"])
        else:
            metrics = _flatten({k: v for k, v in data.items() if k not in _META_KEYS})
        gates = [(str(g.get("gate", "?")), bool(g.get("passed")))
                 for g in data.get("gates") or [] if isinstance(g, dict)]
        passed = data.get("passed") if isinstance(data.get("passed"), bool) else None
        plot = p.with_suffix(".png")
        out.append(MilestoneResult(name=str(name), file=p.name, title=str(title), when=when,
                                   metrics=metrics, gates=gates, passed=passed,
                                   seconds=_number(data.get("seconds")),
                                   fast=data.get("fast") is True,
                                   plot=plot if plot.is_file() else None))
    return out


def _gates_cell(r: MilestoneResult) -> str:
    if not r.gates and r.passed is None:
        return "-"
    n_ok = sum(ok for _, ok in r.gates)
    passed = r.passed if r.passed is not None else n_ok == len(r.gates)
    cell = ("**PASS**" if passed else "**FAIL**") + (f" ({n_ok}/{len(r.gates)})" if r.gates else "")
    failed = [g for g, ok in r.gates if not ok]
    if failed:
        cell += "<br>failed: " + "; ".join(md_text(g) for g in failed)
    return cell


def _run_cell(r: MilestoneResult) -> str:
    parts = []
    if r.seconds is not None:
        parts.append(f"{r.seconds:.1f}&nbsp;s")
    if r.fast:
        parts.append("fast mode")
    if r.when:
        parts.append(md_text(r.when))
    return "<br>".join(parts) or "-"


def milestones_markdown(results: list[MilestoneResult], plots: dict | None = None) -> str:
    """The results table (and the plots: ``{file name: path relative to the page}``)."""
    if not results:
        return NO_MILESTONES_TEXT + "\n"
    rows = ["| milestone | results | gates | run |", "|---|---|---|---|"]
    for r in results:
        name = f"**{md_text(r.name)}**" + (f"<br>{md_text(r.title)}" if r.title else "")
        if r.error:
            res = md_text(f"{r.file}: {r.error}")
        elif r.metrics:
            res = "<br>".join(f"{md_text(k)}&nbsp;=&nbsp;{md_text(format_value(v))}"
                              for k, v in r.metrics.items())
        else:
            res = "(no metrics recorded)"
        rows.append(f"| {name} | {res} | {_gates_cell(r)} | {_run_cell(r)} |")
    n = len(results)
    text = (f"{n} milestone result{'s' if n != 1 else ''} "
            f"(from `milestones/results/`):\n\n" + "\n".join(rows) + "\n")
    for r in results:
        if plots and r.file in plots:
            text += (f"\n## {md_text(r.name)}\n\n"
                     f"![{md_text(r.title or r.name)}]({plots[r.file]})\n")
    return text


# --------------------------------------------------------------------------------------------
# Staging and building
# --------------------------------------------------------------------------------------------

GENERATED = ("_toc.yml", "_extra", "milestone_plots")
# html_extra_path of book/_config.yml: copied as is into the HTML root (html/_static/mathjax)
MATHJAX_STAGE = Path("_extra") / "_static" / "mathjax"
INSTRUCTOR_NOTE = (":::{important}\nThis is the **instructor version** of the book: the "
                   "solutions are shown. Do not publish it to students.\n:::\n\n")


@dataclass
class StagedBook:
    src: Path
    chapters: list = field(default_factory=list)      # ModuleInfo with a notebook, in order
    missing: list = field(default_factory=list)       # ModuleInfo without a notebook yet
    sections: dict = field(default_factory=dict)      # folder -> stems of its other notebooks
    missing_sections: dict = field(default_factory=dict)   # folder -> stems not written yet
    milestones: list = field(default_factory=list)    # MilestoneResult
    notes: list = field(default_factory=list)


def stage_book(manifest, src: Path, with_solutions: bool = False,
               book_dir: Path | None = None, results_dir: Path | None = None,
               executed: dict | None = None) -> StagedBook:
    """Write the complete Jupyter Book source tree for ``manifest`` into ``src`` (emptied
    first). ``executed``: ``{stem: executed reference notebook}`` whose outputs the chapters show
    (:func:`tito.book_execute.execute_notebooks`); a notebook not in it has no outputs."""
    root = manifest.root
    book_dir = Path(book_dir or root / "book")
    results_dir = Path(results_dir or root / "milestones" / "results")
    _copy_book_sources(book_dir, src)
    staged = StagedBook(src=src)
    for m in manifest:
        _stage_module(m, root, src, with_solutions, executed, staged)
    _write_intro(src, manifest, staged, with_solutions)
    _stage_milestones(src, results_dir, staged)
    has_from_pytorch = _stage_from_pytorch(src, root)
    _write_toc(src, staged, has_from_pytorch)
    copy_mathjax(src / MATHJAX_STAGE)
    return staged


def _copy_book_sources(book_dir: Path, src: Path) -> None:
    "The hand-written sources (and any images or _static files next to them) into a fresh ``src``."
    for name in ("_config.yml", "intro.md"):
        if not (book_dir / name).is_file():
            raise TitoError(f"{book_dir / name} not found: the book needs it")
    for name in GENERATED:
        if (book_dir / name).exists():
            raise TitoError(f"{book_dir / name} is generated from modules/manifest.toml at "
                            "build time: delete it from book/")
    if src.exists():
        shutil.rmtree(src)
    shutil.copytree(book_dir, src, ignore=shutil.ignore_patterns(
        "_build", ".ipynb_checkpoints", "__pycache__", "*.ipynb"))


def _stage_module(m, root: Path, src: Path, with_solutions: bool, executed: dict | None,
                  staged: StagedBook) -> None:
    """One chapter per module: its main notebook; the module's other notebooks (if it has
    several) are sections of that chapter."""
    nb_path = m.notebook
    if not nb_path.is_file():
        staged.missing.append(m)
        extra = [p.name for p in m.notebooks[1:] if p.is_file()]
        if extra:
            staged.notes.append(f"{m.folder}: the main notebook {nb_path.name} is not written "
                                f"yet, so {', '.join(extra)} is left out too")
        return
    chapter = _stage_notebook(nb_path, root, m, src, with_solutions, executed)
    heading = first_heading(chapter)
    if heading is None:
        staged.notes.append(f"{m.folder}: the notebook has no '# ' title heading")
    elif normalize_title(m.title) not in normalize_title(heading):
        staged.notes.append(f"{m.folder}: its title heading {heading!r} does not contain the "
                            f"manifest title {m.title!r}")
    staged.chapters.append(m)
    for path in m.notebooks[1:]:
        if not path.is_file():
            staged.missing_sections.setdefault(m.folder, []).append(path.stem)
            continue
        section = _stage_notebook(path, root, m, src, with_solutions, executed)
        if first_heading(section) is None:
            staged.notes.append(f"{path.stem}: the notebook has no '# ' title heading")
        staged.sections.setdefault(m.folder, []).append(path.stem)
    absent = staged.missing_sections.get(m.folder)
    if absent:
        staged.notes.append(f"{m.folder}: not written yet (left out of its chapter): "
                            + ", ".join(f"{stem}.ipynb" for stem in absent))


def _write_intro(src: Path, manifest, staged: StagedBook, with_solutions: bool) -> None:
    "The intro page with its chapter table (and the instructor note under the title)."
    intro = (src / "intro.md").read_text(encoding="utf-8")
    intro = intro.replace(CHAPTERS_MARKER, chapters_markdown(list(manifest), staged.chapters))
    if with_solutions:
        lines = intro.split("\n", 1)        # the note goes under the title
        intro = lines[0] + "\n\n" + INSTRUCTOR_NOTE + (lines[1] if len(lines) > 1 else "")
    (src / "intro.md").write_text(intro, encoding="utf-8")


def _stage_milestones(src: Path, results_dir: Path, staged: StagedBook) -> None:
    "The milestones page: every result file of ``results_dir``, with its plot."
    staged.milestones = load_milestone_results(results_dir)
    plots = {}
    for r in staged.milestones:
        if r.plot is not None:
            (src / "milestone_plots").mkdir(exist_ok=True)
            shutil.copy2(r.plot, src / "milestone_plots" / r.plot.name)
            plots[r.file] = f"milestone_plots/{r.plot.name}"
    ms_path = src / "milestones.md"
    template = (ms_path.read_text(encoding="utf-8") if ms_path.is_file()
                else f"# Milestones: results\n\n{MILESTONES_MARKER}\n")
    if MILESTONES_MARKER not in template:
        template += "\n" + MILESTONES_MARKER + "\n"
    ms_path.write_text(template.replace(MILESTONES_MARKER,
                                        milestones_markdown(staged.milestones, plots)),
                       encoding="utf-8")
    for r in staged.milestones:
        if r.error:
            staged.notes.append(f"milestones/results/{r.file}: {r.error}")


def _stage_from_pytorch(src: Path, root: Path) -> bool:
    """The "From PyTorch" page (when the book has one): its table comes from
    benchmarks/torch_programs.py when it has been run. True when the page exists."""
    fp = src / "from_pytorch.md"
    if not fp.is_file():
        return False
    res = root / "benchmarks" / "results" / "torch_programs.md"
    table = res.read_text(encoding="utf-8") if res.is_file() else (
        "*(Run `python benchmarks/torch_programs.py`; its table appears here the next time the book is built.)*\n")
    fp.write_text(fp.read_text(encoding="utf-8").replace(TORCH_PROGRAMS_MARKER, table), encoding="utf-8")
    return True


def _write_toc(src: Path, staged: StagedBook, has_from_pytorch: bool) -> None:
    import yaml
    parts = []
    if staged.chapters:
        chapters = []
        for m in staged.chapters:
            entry = {"file": m.folder, "title": f"{m.nn}. {m.title}"}
            if staged.sections.get(m.folder):
                entry["sections"] = [{"file": stem} for stem in staged.sections[m.folder]]
            chapters.append(entry)
        parts.append({"caption": "Modules", "chapters": chapters})
    parts.append({"caption": "Results", "chapters": [{"file": "milestones"}]
                  + ([{"file": "from_pytorch"}] if has_from_pytorch else [])})
    toc = {"format": "jb-book", "root": "intro", "parts": parts}
    (src / "_toc.yml").write_text(
        "# GENERATED by `tito book build` from modules/manifest.toml: do not edit\n"
        + yaml.safe_dump(toc, sort_keys=False, allow_unicode=True), encoding="utf-8")


def book_sources(manifest) -> list[tuple[str, Path]]:
    """``(stem, path)`` of every notebook the book shows: each module's notebooks that exist, as
    long as its main notebook does (what :func:`stage_book` stages)."""
    return [(p.stem, p) for m in manifest if m.notebook.is_file()
            for p in m.notebooks if p.is_file()]


def _stage_notebook(nb_path: Path, root: Path, m, src: Path, with_solutions: bool,
                    executed: dict | None = None) -> dict:
    """Write the book's copy of one notebook of module ``m`` as ``src/<stem>.ipynb``."""
    try:
        nb = json.loads(nb_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise TitoError(f"{nb_path}: not a readable notebook: {e}") from None
    rel = nb_path.relative_to(root) if nb_path.is_relative_to(root) else nb_path
    ran = None
    if executed is not None:
        ran = executed.get(nb_path.stem)
        if ran is None:
            raise TitoError(f"{rel}: no executed copy of the notebook to take the outputs from")
    page = book_notebook(nb, str(rel), f"module {m.nn}", with_solutions=with_solutions,
                         executed=ran)
    if not with_solutions:
        from .release import is_begin, is_end
        leaked = [ln for c in page.get("cells", []) for ln in _cell_source(c).splitlines()
                  if is_begin(ln) or is_end(ln)]
        if leaked:
            raise TitoError(f"{rel}: solution markers left in the student chapter: {leaked[0]!r}")
    (src / f"{nb_path.stem}.ipynb").write_text(
        json.dumps(page, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    return page


def staged_pages(staged: StagedBook) -> list[tuple]:
    """``(module, stem)`` of every staged notebook page, in the book's order."""
    return [(m, stem) for m in staged.chapters
            for stem in [m.folder, *staged.sections.get(m.folder, [])]]


def jupyter_book_command() -> list[str]:
    """How to run this Python's jupyter-book, or a clear error when it is not installed."""
    if importlib.util.find_spec("jupyter_book") is None:
        raise TitoError(
            f"jupyter-book is not installed in this Python ({sys.executable}). Install the "
            "pinned requirements: `source scripts/env.sh` (or `pip install -r requirements.lock`)")
    return [sys.executable, "-c",
            "import sys; from jupyter_book.cli.main import main; sys.exit(main())"]


_SCRIPT_SRC_RE = re.compile(r"<script\b[^>]*\bsrc\s*=\s*[\"']([^\"']+)[\"']", re.I)
_LINK_HREF_RE = re.compile(r"<link\b[^>]*\bhref\s*=\s*[\"']([^\"']+)[\"'][^>]*>", re.I)


def external_assets(html_dir: Path) -> dict[str, list[str]]:
    """``{page: [url, ...]}`` of every script or stylesheet a built page loads from the network
    (``http:``, ``https:`` or protocol-relative ``//``)."""
    out = {}
    for page in sorted(html_dir.rglob("*.html")):
        text = page.read_text(encoding="utf-8", errors="replace")
        urls = _SCRIPT_SRC_RE.findall(text)
        urls += [m.group(1) for m in _LINK_HREF_RE.finditer(text)
                 if re.search(r"rel\s*=\s*[\"']?(stylesheet|preload|modulepreload)",
                              m.group(0), re.I)]
        bad = [u for u in urls if re.match(r"^(https?:)?//", u.strip(), re.I)]
        if bad:
            out[str(page.relative_to(html_dir))] = bad
    return out


_ANSI_RE = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_DIAG_RE = re.compile(r"\b(WARNING|ERROR|CRITICAL|SEVERE)\b[:/]")


@dataclass
class BookBuild:
    out: Path
    html_dir: Path
    index_html: Path
    staged: StagedBook
    seconds: float
    warnings: list = field(default_factory=list)
    log: Path | None = None
    execute_seconds: float | None = None      # running (or reading from the cache) the notebooks


def default_out(root: Path, with_solutions: bool) -> Path:
    """Student book: ``book/`` (HTML in book/_build/html). Instructor book: its own folder,
    so a published student book never holds solutions."""
    return root / "book" / ("_build/instructor" if with_solutions else "")


def build_book(manifest, out: Path | None = None, with_solutions: bool = False,
               allow_warnings: bool = False, echo=print, execute: bool = True,
               cache_dir: Path | None = None) -> BookBuild:
    """Run the reference notebooks (``execute``; cached in ``cache_dir``, default
    book/_build/executed), stage the book with their outputs into ``<out>/_build/src`` and build
    ``<out>/_build/html`` with jupyter-book. Raises :class:`TitoError` when a notebook fails to
    run, the build fails, reports errors, or (unless ``allow_warnings``) warnings, or when a page
    would load a script from the network."""
    root = manifest.root
    out = Path(out).resolve() if out else default_out(root, with_solutions).resolve()
    build = out / "_build"
    cmd = jupyter_book_command()
    t0 = time.monotonic()
    for d in ("html", ".doctrees", "jupyter_execute", ".jupyter_cache", "src"):
        if (build / d).exists():
            shutil.rmtree(build / d)
    build.mkdir(parents=True, exist_ok=True)
    executed, t_exec = None, time.monotonic()
    if execute:
        from .book_execute import execute_notebooks
        executed = execute_notebooks(root, book_sources(manifest), cache_dir=cache_dir, echo=echo)
    t_exec = time.monotonic() - t_exec
    staged = stage_book(manifest, build / "src", with_solutions=with_solutions, executed=executed)
    _echo_staged(staged, with_solutions, t_exec if execute else None, echo)
    echo(f"  running jupyter-book build (log: {build / 'book-build.log'})")
    proc, log_text, log = _run_jupyter_book(cmd, build, out, staged)
    warnings = _check_build(proc, log_text, log, staged, build / "html", allow_warnings)
    for w in warnings:
        echo(f"  warning: {w}")
    return BookBuild(out=out, html_dir=build / "html", index_html=build / "html" / "index.html",
                     staged=staged, seconds=time.monotonic() - t0, warnings=warnings, log=log,
                     execute_seconds=t_exec if execute else None)


def _echo_staged(staged: StagedBook, with_solutions: bool, t_exec: float | None, echo) -> None:
    "What the book holds; ``t_exec`` None when the notebooks were not run."
    version = "instructor version, WITH SOLUTIONS" if with_solutions else "student version"
    echo(f"book: {len(staged.chapters)} chapter(s) ({version}): "
         + (", ".join(m.folder + (f" (+ sections {', '.join(staged.sections[m.folder])})"
                                  if staged.sections.get(m.folder) else "")
                      for m in staged.chapters) or "none"))
    if staged.missing:
        echo(f"  not written yet (left out): {', '.join(m.folder for m in staged.missing)}")
    echo(f"  milestones: {len(staged.milestones)} result file(s)")
    echo(f"  outputs: from the reference notebooks (run or cached in {t_exec:.1f} s)"
         if t_exec is not None else "  outputs: none (--no-execute)")
    for note in staged.notes:
        echo(f"  note: {note}")


def _run_jupyter_book(cmd: list, build: Path, out: Path, staged: StagedBook) -> tuple:
    """Run jupyter-book on the staged sources; (process, log text, log file). The log names the
    files authors edit, not their staged copies."""
    cmd = cmd + ["build", str(build / "src"), "--path-output", str(out), "--all"]
    env = dict(os.environ, PYTHONUNBUFFERED="1", NO_COLOR="1", PYDEVD_DISABLE_FILE_VALIDATION="1")
    proc = subprocess.run(cmd, cwd=out, capture_output=True, text=True, env=env,
                          stdin=subprocess.DEVNULL)
    log_text = _ANSI_RE.sub("", proc.stdout + ("\n" + proc.stderr if proc.stderr else ""))
    src_dir = str(build / "src") + os.sep
    for m, stem in staged_pages(staged):
        log_text = log_text.replace(f"{src_dir}{stem}.ipynb", f"modules/{m.folder}/{stem}.ipynb")
    log_text = log_text.replace(src_dir, "book/")
    log = build / "book-build.log"
    log.write_text(log_text, encoding="utf-8")
    return proc, log_text, log


def _check_build(proc, log_text: str, log: Path, staged: StagedBook, html_dir: Path,
                 allow_warnings: bool) -> list:
    """Raise TitoError when the build failed, reported errors (or warnings, unless allowed), left
    a page out or loads anything from the network; returns the warnings."""
    diags = [ln.strip() for ln in log_text.splitlines() if _DIAG_RE.search(ln)]
    errors = [d for d in diags if not re.search(r"\bWARNING\b", d)]
    warnings = [d for d in diags if re.search(r"\bWARNING\b", d)]
    index = html_dir / "index.html"

    def fail(msg, show_log=True):
        if not show_log:
            raise TitoError(f"{msg}\n(full log: {log})")
        tail = "\n".join(log_text.rstrip().splitlines()[-25:])
        raise TitoError(f"{msg}\n--- last lines of {log} ---\n{tail}")

    if proc.returncode != 0:
        fail(f"jupyter-book build failed (exit {proc.returncode})")
    if errors:
        fail(f"the book build reported {len(errors)} error(s):\n  " + "\n  ".join(errors))
    if warnings and not allow_warnings:
        fail(f"the book build reported {len(warnings)} warning(s) (fix them, or pass "
             "--allow-warnings):\n  " + "\n  ".join(warnings), show_log=False)
    if not index.is_file():
        fail(f"jupyter-book finished but wrote no {index}")
    missing_pages = [stem for _, stem in staged_pages(staged)
                     if not (html_dir / f"{stem}.html").is_file()]
    if missing_pages:
        fail(f"no HTML page was written for: {', '.join(missing_pages)}")
    ext = external_assets(html_dir)
    if ext:
        raise TitoError("the built book loads scripts or styles from the network (it must work "
                        "offline):\n  " + "\n  ".join(f"{p}: {', '.join(u)}"
                                                       for p, u in ext.items()))
    return warnings
