"""The course book: `tito book build` stages it from the manifest and builds it with Jupyter Book.

- The real book is built once (module fixture, into a temp dir): every manifest module whose
  notebook exists is a chapter, in manifest order; the other notebooks of a module that has
  several (``notebooks = [...]`` in the manifest) are sections of its chapter, present whenever
  they exist; every page is the student version (no solution line from any notebook survives);
  MathJax is served from the book itself.
- Every chapter page shows the outputs of its reference notebook's run (tito/book_execute.py) next
  to the student's stubbed code: printed output and at least one figure.
- Every page (intro, each chapter, milestones) is opened in headless Chromium with DNS disabled:
  its title is in the rendered article, there is no error node, no JavaScript error and no
  resource that failed to load, every formula was typeset by MathJax, every chapter page has
  printed outputs and at least one figure that the browser really decoded (a PNG file of
  non-trivial size), and screenshots are saved to book/_build/screenshots/ (the top of each page,
  and NAME-figure.png around a chapter's first figure; the test prints the folder).
- A one-notebook throwaway project checks the instructor build, the milestones table, that
  warnings, broken solution markers and a cell that raises fail the build, and the run cache; a two-notebook one checks that the second
  notebook is a section of its module's chapter (and is left out, with a note, until written).

Chromium comes from Debian (scripts/system-deps.sh installs it): its absence is a failure.
"""

from __future__ import annotations

import base64
import json
import re
import shutil
import subprocess
import sys
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from html.parser import HTMLParser
from pathlib import Path

import pytest
import yaml

from tito.errors import TitoError
from tito.manifest import load_manifest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from chromium_driver import WINDOW, Chromium  # noqa: E402  (tests/book/chromium_driver.py)

ROOT = Path(__file__).resolve().parents[2]
MIN_FIGURE_BYTES = 5_000          # a rendered figure's PNG; an empty axes alone is about 4 KB
SCREENSHOTS = ROOT / "book" / "_build" / "screenshots"
CHROMIUM_TABS = 3                 # pages rendered at once, in one browser
BEGIN, END = "### BEGIN SOLUTION", "### END SOLUTION"

# classes of elements that mean a page did not render right: docutils/Sphinx problems, error
# outputs of notebook cells, MathJax 2/3 formula errors
ERROR_CLASSES = {"problematic", "system-message", "system-messages", "traceback",
                 "mjx-merror", "merror", "MathJax_Error", "noError"}
ERROR_TEXTS = ("Traceback (most recent call last)", "Math Processing Error", "Math input error",
               "Unknown directive type", "Unknown interpreted text role")


def tito(*args, timeout=600):
    return subprocess.run([sys.executable, "-m", "tito.cli", *map(str, args)], cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)


def norm(text: str) -> str:
    """Whitespace collapsed, markdown code/emphasis marks dropped, case folded."""
    return " ".join(re.sub(r"[`*]", "", text).split()).casefold()


def first_h1(markdown: str) -> str:
    m = re.search(r"^# (.+)$", markdown, re.M)
    assert m, "no '# ' heading found"
    return m.group(1).strip()


class Page(HTMLParser):
    """What a test needs from an HTML page: the article's visible text (scripts and styles
    left out), every element's classes and ids, and the sidebar's links in order."""

    VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta",
            "source", "track", "wbr"}

    def __init__(self, text: str):
        super().__init__(convert_charrefs=True)
        self.classes: Counter = Counter()
        self.ids: list[str] = []
        self.nav_links: list[str] = []
        self._stack: list[tuple[str, bool, bool, bool]] = []  # tag, article, nav, skip
        self._article: list[str] = []
        self._body: list[str] = []
        self.feed(text)
        self.close()
        self.article_text = " ".join("".join(self._article).split())
        self.body_text = " ".join("".join(self._body).split())

    def _flags(self):
        return self._stack[-1][1:] if self._stack else (False, False, False)

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        cls = (a.get("class") or "").split()
        self.classes.update(cls)
        if a.get("id"):
            self.ids.append(a["id"])
        article, nav, skip = self._flags()
        article = article or (tag == "article" and "bd-article" in cls)
        nav = nav or (tag == "nav" and "bd-docs-nav" in cls)
        skip = skip or tag in ("script", "style", "template")
        if nav and tag == "a" and a.get("href"):
            self.nav_links.append(a["href"])
        if tag not in self.VOID:
            self._stack.append((tag, article, nav, skip))

    def handle_startendtag(self, tag, attrs):
        self.handle_starttag(tag, attrs)
        if tag not in self.VOID and self._stack:
            self._stack.pop()

    def handle_endtag(self, tag):
        for i in range(len(self._stack) - 1, -1, -1):
            if self._stack[i][0] == tag:
                del self._stack[i:]
                break

    def handle_data(self, data):
        article, _nav, skip = self._flags()
        if skip:
            return
        self._body.append(data)
        if article:
            self._article.append(data)


def solution_blocks(nb: dict) -> tuple[list[list[str]], list[str]]:
    """(the solution blocks of the code cells, as lists of lines; every line outside them)."""
    blocks, outside = [], []
    for cell in nb["cells"]:
        src = "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
        cur = None
        for ln in src.splitlines():
            s = ln.strip()
            if cell["cell_type"] == "code" and s.startswith(BEGIN):
                cur = []
            elif cell["cell_type"] == "code" and s.startswith(END) and cur is not None:
                blocks.append(cur)
                cur = None
            elif cur is not None:
                cur.append(ln)
            else:
                outside.append(ln)
    return blocks, outside


# ---------------------------------------------------------------------------------------------
# the real book, built once
# ---------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def book(tmp_path_factory):
    manifest = load_manifest(ROOT)
    present = [m for m in manifest if m.notebook.is_file()]
    assert present, "no module notebook exists: there is no book to build"
    # folder -> the stems of the module's other notebooks that exist (its chapter's sections)
    sections = {m.folder: [p.stem for p in m.notebooks[1:] if p.is_file()] for m in present}
    # every page of a module, in book order: (module, stem)
    pages = [(m, stem) for m in present for stem in [m.folder, *sections[m.folder]]]
    notebooks = {stem: json.loads((m.nbs_path / m.folder / f"{stem}.ipynb")
                                  .read_text(encoding="utf-8")) for m, stem in pages}
    out = tmp_path_factory.mktemp("book")
    t0 = time.monotonic()
    r = tito("book", "build", "--out", out, timeout=1800)
    assert r.returncode == 0, f"tito book build failed:\n{r.stdout}\n{r.stderr}"
    print(f"\ntito book build: {time.monotonic() - t0:.1f} s; " + r.stdout.strip().splitlines()[-2])
    index = Path(r.stdout.strip().splitlines()[-1])
    html = out / "_build" / "html"
    assert index == html / "index.html" and index.is_file(), r.stdout
    return {"manifest": manifest, "present": present, "notebooks": notebooks, "out": out,
            "sections": sections, "pages": pages,
            "html": html, "src": out / "_build" / "src", "stdout": r.stdout}


def test_every_written_module_is_a_chapter_in_manifest_order(book):
    folders = [m.folder for m in book["present"]]
    page_stems = [stem for _, stem in book["pages"]]
    html = book["html"]
    for stem in page_stems:
        assert (html / f"{stem}.html").is_file(), f"no page for {stem}"
    for m in book["manifest"]:
        if m not in book["present"]:
            for stem in m.stems:
                assert not (html / f"{stem}.html").exists(), f"{m.folder} has no notebook"

    toc = yaml.safe_load((book["src"] / "_toc.yml").read_text(encoding="utf-8"))
    chapters = [c for part in toc["parts"] for c in part["chapters"]]
    toc_files = [c["file"] for c in chapters]
    assert toc["root"] == "intro"
    assert toc_files == folders + ["milestones", "from_pytorch"]
    # a module's other notebooks are the sections of its chapter, whenever they exist
    for c in chapters[:-2]:
        assert [s["file"] for s in c.get("sections", [])] == book["sections"][c["file"]], c

    # the sidebar every reader sees: chapters in manifest order (each followed by its
    # sections), then the milestones page
    known = {stem for m in book["manifest"] for stem in m.stems} | {"milestones", "from_pytorch"}
    nav = Page((html / "intro.html").read_text(encoding="utf-8")).nav_links
    stems = [Path(h.split("#")[0]).stem for h in nav]
    order = [s for s in stems if s in known]
    assert order == page_stems + ["milestones", "from_pytorch"], f"sidebar order {order}"

    # the intro's chapter table lists every manifest module, linking those that exist
    intro = Page((html / "intro.html").read_text(encoding="utf-8"))
    for m in book["manifest"]:
        assert norm(m.title) in norm(intro.article_text), f"intro lacks {m.title!r}"
    assert (html / "index.html").read_text(encoding="utf-8").count("intro.html") >= 1


def test_chapters_are_the_student_version(book):
    total_blocks = 0
    for m, stem in book["pages"]:                 # every notebook of every module
        nb = book["notebooks"][stem]
        blocks, outside = solution_blocks(nb)
        total_blocks += len(blocks)
        text = norm(Page((book["html"] / f"{stem}.html").read_text(encoding="utf-8"))
                    .article_text)
        outside_text = norm("\n".join(outside))
        leaked = []
        for block in blocks:
            for ln in block:
                s = norm(ln)
                if len(s) >= 16 and s not in outside_text and s in text:
                    leaked.append(ln.strip())
        assert not leaked, f"{stem}: solution lines in the student book: {leaked[:5]}"
        n_stubs = text.count(norm('raise NotImplementedError("Exercise'))
        assert n_stubs >= len(blocks), (f"{stem}: {len(blocks)} solution blocks but "
                                        f"{n_stubs} exercise stubs on the page")
        # the text extraction does see highlighted code: a long line outside the solutions
        code_outside = [norm(ln) for c in nb["cells"] if c["cell_type"] == "code"
                        for ln in solution_blocks({"cells": [c]})[1]
                        if len(norm(ln)) >= 16 and not ln.lstrip().startswith("#")]
        if code_outside:
            probe = max(code_outside, key=len)
            assert probe in text, f"{stem}: code line {probe!r} missing from its page"
    assert total_blocks > 0, "no notebook has a solution block: the check would be vacuous"


def test_chapters_show_the_outputs_of_the_reference_run(book):
    """Each chapter is the stubbed student code with, cell by cell, the outputs that the reference
    notebook's run (the cache in book/_build/executed) produced: printed text and a figure."""
    cache = ROOT / "book" / "_build" / "executed"
    for m, stem in book["pages"]:
        staged = json.loads((book["src"] / f"{stem}.ipynb").read_text(encoding="utf-8"))
        runs = list(cache.glob(f"{stem}-*.ipynb"))
        assert len(runs) == 1, f"{stem}: expected one cached run, found {[r.name for r in runs]}"
        ran = {c["id"]: c for c in json.loads(runs[0].read_text(encoding="utf-8"))["cells"]}
        code = [c for c in staged["cells"] if c["cell_type"] == "code"]
        for c in code:
            assert c["outputs"] == ran[c["id"]]["outputs"], f"{stem}: cell {c['id']} outputs differ"
        kinds = [o.get("output_type") for c in code for o in c["outputs"]]
        assert "error" not in kinds, f"{stem}: an error output"
        pngs = [o for c in code for o in c["outputs"] if "image/png" in o.get("data", {})]
        assert pngs, f"{stem}: no figure among the outputs"
        streams = ["".join(o["text"]) for c in code for o in c["outputs"]
                   if o.get("output_type") == "stream" and o.get("name") == "stdout"]
        assert streams, f"{stem}: no printed output"
        page = norm(Page((book["html"] / f"{stem}.html").read_text(encoding="utf-8")).article_text)
        line = next(ln for text in streams for ln in text.splitlines() if len(ln.strip()) >= 8)
        assert norm(line) in page, f"{stem}: printed line {line!r} not on the page"


def test_mathjax_is_served_by_the_book_itself(book):
    html = book["html"]
    mj = html / "_static" / "mathjax" / "MathJax.js"
    assert mj.is_file() and mj.stat().st_size > 10_000
    assert (html / "_static" / "mathjax" / "jax" / "output" / "CommonHTML" / "jax.js").is_file()
    pages = sorted(html.glob("*.html"))
    assert len(pages) >= len(book["pages"]) + 2
    script_re = re.compile(r"<script\b([^>]*)>(.*?)</script>", re.S | re.I)
    for page in pages:
        text = page.read_text(encoding="utf-8")
        for attrs, body in script_re.findall(text):
            assert not re.search(r"(https?:)?//[a-z0-9.-]+\.[a-z]{2,}", attrs + body, re.I), \
                f"{page.name}: a script refers to the network: {(attrs + body)[:200]}"
        for href in re.findall(r"<link\b[^>]*href=\"([^\"]+)\"", text):
            assert not re.match(r"(https?:)?//", href), f"{page.name}: loads {href}"
        assert not re.search(r"cdn\.jsdelivr|cdnjs|unpkg\.com|mathjax\.org", text, re.I), page
    intro = (html / "intro.html").read_text(encoding="utf-8")
    assert re.search(r'<script[^>]+src="_static/mathjax/MathJax\.js(\?v=[0-9a-f]+)?"', intro)
    assert 'type="text/x-mathjax-config"' in intro


def test_milestones_page(book):
    page = Page((book["html"] / "milestones.html").read_text(encoding="utf-8"))
    results = sorted((ROOT / "milestones" / "results").glob("*.json"))
    if results:
        for p in results:
            name = json.loads(p.read_text(encoding="utf-8")).get("name") or p.stem
            assert norm(str(name)) in norm(page.article_text), f"milestones page lacks {name}"
    else:
        assert "No milestone has been run yet" in page.article_text
        assert "tito milestone run NAME" in page.article_text


# ---------------------------------------------------------------------------------------------
# every page in headless Chromium
# ---------------------------------------------------------------------------------------------

def chapter_output_problems(name: str, dom: Page, images: list, html: Path) -> list[str]:
    """What is wrong with a chapter page's outputs as rendered: no printed output, no figure, a
    figure the browser could not decode, or a figure file too small to hold a plot."""
    problems = []
    printed = dom.classes["stream"] + dom.classes["text_plain"]
    if printed < 1:
        problems.append(f"{name}: no printed output (stream or text) in the page")
    if not images:
        problems.append(f"{name}: no figure in the page's cell outputs")
    for img in images:
        src = img["src"] or ""
        if src.startswith("data:image/png"):
            size = len(base64.b64decode(src.split(",", 1)[1]))
        else:
            f = html / src
            size = f.stat().st_size if f.is_file() else 0
        if img["width"] < 200 or img["height"] < 100:
            problems.append(f"{name}: figure {src[:60]} decoded as {img['width']}x{img['height']}")
        if size < MIN_FIGURE_BYTES:
            problems.append(f"{name}: figure {src[:60]} has {size} bytes")
    return problems


def test_every_page_renders_in_chromium(book, capsys, tmp_path):
    from PIL import Image

    html = book["html"]
    pages = [("intro", first_h1((ROOT / "book" / "intro.md").read_text(encoding="utf-8")))]
    pages += [(m.folder, m.title) for m in book["present"]]
    # the sections (a module's other notebooks): their own first heading is their title
    from tito.book import first_heading
    for m, stem in book["pages"]:
        if stem != m.folder:
            title = first_heading(book["notebooks"][stem])
            assert title, f"{stem}: the notebook has no '# ' title heading"
            pages.append((stem, title))
    pages += [("milestones", first_h1((ROOT / "book" / "milestones.md")
                                      .read_text(encoding="utf-8")))]
    chapters = {stem for _, stem in book["pages"]}
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    for old in SCREENSHOTS.glob("*.png"):
        old.unlink()

    browser = Chromium(tmp_path / "profile", tmp_path / "chromium.log")
    try:
        def render(name):
            return browser.render((html / f"{name}.html").as_uri(), SCREENSHOTS / f"{name}.png")
        with ThreadPoolExecutor(CHROMIUM_TABS) as pool:
            rendered = dict(zip([p for p, _ in pages], pool.map(render, [p for p, _ in pages])))
    finally:
        browser.close()

    problems = []
    for name, title in pages:
        dom_text, page_errors, images = rendered[name]
        problems += [f"{name}: {e}" for e in page_errors]
        dom = Page(dom_text)
        if name in chapters:
            problems += chapter_output_problems(name, dom, images, html)
        if norm(title) not in norm(dom.article_text):
            problems.append(f"{name}: title {title!r} not in the rendered article")
        bad = sorted(c for c in ERROR_CLASSES if dom.classes[c])
        if bad:
            problems.append(f"{name}: error elements in the page: {bad}")
        for t in ERROR_TEXTS:
            if t in dom.body_text:
                problems.append(f"{name}: {t!r} in the page")
        static = (html / f"{name}.html").read_text(encoding="utf-8")
        n_math = len(re.findall(r'class="math notranslate nohighlight"', static))
        n_typeset = sum(bool(re.fullmatch(r"MathJax-Element-\d+-Frame", i)) for i in dom.ids)
        if n_typeset != n_math:
            problems.append(f"{name}: {n_math} formulas but MathJax typeset {n_typeset}")
        if name == "intro" and (n_math < 2 or not dom.classes["MJXc-display"]):
            problems.append(f"intro: expected inline and display math, found {n_math} formulas")
        png = SCREENSHOTS / f"{name}.png"
        if not png.is_file() or png.stat().st_size == 0:
            problems.append(f"{name}: no screenshot written")
            continue
        with Image.open(png) as im:
            colors = im.convert("RGB").getcolors(1 << 20)
            if im.size != WINDOW or colors is None or len(colors) < 50:
                problems.append(f"{name}: screenshot {im.size} with "
                                f"{len(colors) if colors else 'many'} colours looks blank")
    for name in chapters:
        shot = SCREENSHOTS / f"{name}-figure.png"
        if not shot.is_file():
            problems.append(f"{name}: no screenshot of its first figure")
            continue
        with Image.open(shot) as im:
            colors = im.convert("RGB").getcolors(1 << 20)
            if colors is not None and len(colors) < 50:
                problems.append(f"{name}: the figure screenshot looks blank ({len(colors)} colours)")
    with capsys.disabled():
        print(f"\nbook screenshots ({len(pages)} pages, {len(chapters)} figure close-ups): {SCREENSHOTS}")
    assert not problems, "\n".join(problems)


# ---------------------------------------------------------------------------------------------
# a throwaway one-notebook project: instructor build, milestones table, failures
# ---------------------------------------------------------------------------------------------

SOLUTION_LINE = "return a + b  # the reference solution, shown to instructors only"


def _nb(cells):
    return {"cells": [{"cell_type": t, "id": f"c{i}", "metadata": {}, "source": s,
                       **({"outputs": [], "execution_count": None} if t == "code" else {})}
                      for i, (t, s) in enumerate(cells)],
            "metadata": {"kernelspec": {"display_name": "python3", "language": "python",
                                        "name": "python3"}},
            "nbformat": 4, "nbformat_minor": 5}


@pytest.fixture
def mini(tmp_path):
    """A project with the real settings, manifest and book sources and one small notebook."""
    root = tmp_path / "proj"
    (root / "modules").mkdir(parents=True)
    shutil.copy2(ROOT / "settings.ini", root / "settings.ini")
    shutil.copy2(ROOT / "modules" / "manifest.toml", root / "modules" / "manifest.toml")
    shutil.copytree(ROOT / "book", root / "book", ignore=shutil.ignore_patterns("_build"))
    first = load_manifest(root).modules[0]

    def write(extra_markdown="", code=None):
        nb = _nb([("markdown", f"# Module {first.nn} — {first.title}\n\nThe norm "
                               "$\\|x\\|_2 = \\sqrt{\\sum_i x_i^2}$.\n\n$$a^2 + b^2 = c^2$$\n"
                               + extra_markdown),
                  ("code", code if code is not None else
                   f"def add(a, b):\n    {BEGIN}\n    {SOLUTION_LINE}\n    {END}\n")])
        nb_path = root / "modules" / first.folder / f"{first.folder}.ipynb"
        nb_path.parent.mkdir(parents=True, exist_ok=True)
        nb_path.write_text(json.dumps(nb, indent=1), encoding="utf-8")
        return nb_path
    return root, first, write


BROKEN_REFERENCE = "\nSee {doc}`no_such_chapter`.\n"      # a Sphinx warning: unknown document


def test_instructor_version_milestones_table_and_allowed_warnings(mini):
    root, first, write = mini
    write(extra_markdown=BROKEN_REFERENCE)
    results = root / "milestones" / "results"
    results.mkdir(parents=True)
    # the layout milestones/_common.py writes, with a plot beside it
    (results / "1957_perceptron.json").write_text(json.dumps(
        {"name": "1957_perceptron", "title": "Perceptron | 1957", "fast": True, "seconds": 1.26,
         "metrics": {"held-out accuracy": 0.953412, "epochs": 20},
         "gates": [{"gate": "held-out accuracy >= 0.9", "passed": True},
                   {"gate": "converges in 50 epochs", "passed": False}],
         "passed": False}), encoding="utf-8")
    from PIL import Image
    Image.new("RGB", (64, 48), (200, 30, 30)).save(results / "1957_perceptron.png")
    (results / "broken.json").write_text("{not json", encoding="utf-8")
    out = root / "out"
    r = tito("--root", root, "book", "build", "--with-solutions", "--allow-warnings",
             "--out", out)
    assert r.returncode == 0, r.stdout + r.stderr
    assert re.search(r"warning: .*no_such_chapter", r.stdout), r.stdout
    html = out / "_build" / "html"
    assert r.stdout.strip().splitlines()[-1] == str(html / "index.html")
    chapter = Page((html / f"{first.folder}.html").read_text(encoding="utf-8")).article_text
    assert norm(SOLUTION_LINE) in norm(chapter)
    assert "NotImplementedError" not in chapter
    assert "instructor version" in Page((html / "intro.html").read_text(encoding="utf-8")
                                        ).article_text
    ms_html = (html / "milestones.html").read_text(encoding="utf-8")
    ms = " ".join(Page(ms_html).article_text.split())
    assert "<table" in ms_html
    assert "1957_perceptron" in ms and "Perceptron | 1957" in ms
    assert "held-out accuracy = 0.9534" in ms and "epochs = 20" in ms
    assert "FAIL (1/2)" in ms and "failed: converges in 50 epochs" in ms
    assert "1.3 s" in ms and "fast mode" in ms
    assert "broken.json: unreadable" in ms
    assert "No milestone has been run yet" not in ms
    img = re.search(r'<img[^>]+src="([^"]*1957_perceptron\.png)"', ms_html)
    assert img and (html / img.group(1)).is_file(), "the milestone's plot is not in the page"


def test_student_chapter_shows_the_reference_run_and_the_run_is_cached(mini):
    root, first, write = mini
    write(code=f"def add(a, b):\n    {BEGIN}\n    {SOLUTION_LINE}\n    {END}\n\n"
               "print('the reference says', add(2, 3))\n")
    out = root / "out"
    r = tito("--root", root, "book", "build", "--out", out)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "executing 1 reference notebook(s)" in r.stdout, r.stdout
    page = Page((out / "_build" / "html" / f"{first.folder}.html").read_text(encoding="utf-8"))
    assert "the reference says 5" in page.article_text              # the solution's output...
    assert 'raise NotImplementedError("Exercise' in page.article_text  # ...under the stubbed code
    assert norm(SOLUTION_LINE) not in norm(page.body_text)
    cached = list((root / "book" / "_build" / "executed").glob(f"{first.folder}-*.ipynb"))
    assert len(cached) == 1
    r = tito("--root", root, "book", "build", "--out", out)           # unchanged: from the cache
    assert r.returncode == 0, r.stdout + r.stderr
    assert "outputs of all 1 notebook(s) from the cache" in r.stdout, r.stdout
    write(code=f"def add(a, b):\n    {BEGIN}\n    {SOLUTION_LINE}\n    {END}\n\n"
               "print('the reference now says', add(20, 3))\n")
    r = tito("--root", root, "book", "build", "--out", out)           # changed: run again
    assert r.returncode == 0, r.stdout + r.stderr
    assert "executing 1 reference notebook(s)" in r.stdout, r.stdout
    page = Page((out / "_build" / "html" / f"{first.folder}.html").read_text(encoding="utf-8"))
    assert "the reference now says 23" in page.article_text
    assert [p.name for p in (root / "book" / "_build" / "executed").glob("*.ipynb")] != [cached[0].name]
    r = tito("--root", root, "book", "build", "--no-execute", "--out", root / "bare")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "outputs: none (--no-execute)" in r.stdout
    bare = Page((root / "bare" / "_build" / "html" / f"{first.folder}.html").read_text(encoding="utf-8"))
    assert "the reference now says 23" not in bare.article_text


def test_a_cell_that_raises_fails_the_build(mini):
    root, first, write = mini
    write(code=f"def add(a, b):\n    {BEGIN}\n    {SOLUTION_LINE}\n    {END}\n\nadd(1, 2) / 0\n")
    r = tito("--root", root, "book", "build", "--out", root / "out")
    assert r.returncode == 1, r.stdout + r.stderr
    assert f"{first.folder}.ipynb" in r.stderr and "cell 1 " in r.stderr, r.stderr
    assert "ZeroDivisionError" in r.stderr, r.stderr
    assert not (root / "out" / "_build" / "html").exists()


def test_warnings_fail_the_build(mini):
    root, first, write = mini
    write(extra_markdown=BROKEN_REFERENCE)
    r = tito("--root", root, "book", "build", "--out", root / "out")
    assert r.returncode == 1, r.stdout + r.stderr
    assert "warning" in r.stderr and "no_such_chapter" in r.stderr, r.stderr
    assert "--allow-warnings" in r.stderr


def test_broken_solution_markers_fail_the_build(mini):
    root, first, write = mini
    write(code=f"def add(a, b):\n    {BEGIN}\n    return a + b\n")     # never closed
    r = tito("--root", root, "book", "build", "--out", root / "out")
    assert r.returncode == 1, r.stdout + r.stderr
    assert f"{first.folder}.ipynb" in r.stderr and "never closed" in r.stderr, r.stderr
    assert not (root / "out" / "_build" / "html").exists()


def test_a_hand_written_toc_is_refused(mini):
    root, first, write = mini
    write()
    (root / "book" / "_toc.yml").write_text("format: jb-book\nroot: intro\n", encoding="utf-8")
    r = tito("--root", root, "book", "build", "--out", root / "out")
    assert r.returncode == 1
    assert "_toc.yml is generated" in r.stderr, r.stderr


def test_missing_jupyter_book_is_a_clear_error(monkeypatch):
    import importlib.util

    from tito import book as tbook
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "jupyter_book" else real(name, *a))
    with pytest.raises(TitoError, match="jupyter-book is not installed"):
        tbook.jupyter_book_command()


def test_milestone_cells_are_escaped():
    from tito.book import MilestoneResult, milestones_markdown, NO_MILESTONES_TEXT
    assert milestones_markdown([]) == NO_MILESTONES_TEXT + "\n"
    md = milestones_markdown([MilestoneResult(name="a|b", file="a.json",
                                              metrics={"cost $": 1.23456789, "ok": True})])
    rows = [ln for ln in md.splitlines() if ln.startswith("|")]
    assert len(rows) == 3 and all(ln.count("|") == 5 for ln in rows), md
    assert "a&#124;b" in md and "cost &#36;&nbsp;=&nbsp;1.235" in md and "ok&nbsp;=&nbsp;True" in md


# ---------------------------------------------------------------------------------------------
# a throwaway two-notebook module: the second notebook is a section of the module's chapter
# ---------------------------------------------------------------------------------------------

MULTI_MANIFEST = '''
[[module]]
number = 1
folder = "01_pair"
title = "Pair: one chapter in two notebooks"
exports = ["tinytorch.core.pair", "tinytorch.nn.pair_ops"]
notebooks = ["01_pair", "01_pair_ops"]
prerequisites = []
points = 10

[[module]]
number = 2
folder = "02_later"
title = "Later: not written yet"
exports = ["tinytorch.core.later"]
prerequisites = [1]
points = 10
'''
OPS_TITLE = "Pair operations: the second notebook"
OPS_SOLUTION = "return double(double(t))  # the quadruple solution, for instructors only"


@pytest.fixture
def multi(tmp_path):
    root = tmp_path / "proj"
    (root / "modules").mkdir(parents=True)
    shutil.copy2(ROOT / "settings.ini", root / "settings.ini")
    (root / "modules" / "manifest.toml").write_text(MULTI_MANIFEST, encoding="utf-8")
    shutil.copytree(ROOT / "book", root / "book", ignore=shutil.ignore_patterns("_build"))
    nbs = root / "modules" / "01_pair"
    nbs.mkdir()
    (nbs / "01_pair.ipynb").write_text(json.dumps(_nb([
        ("markdown", "# Module 01 — Pair: one chapter in two notebooks\n\nDoubling $2x$.\n"),
        ("code", f"def double(t):\n    {BEGIN}\n    {SOLUTION_LINE}\n    {END}\n")])),
        encoding="utf-8")
    (nbs / "01_pair_ops.ipynb").write_text(json.dumps(_nb([
        ("markdown", f"# {OPS_TITLE}\n\nQuadrupling $4x$.\n"),
        ("code", f"def quadruple(t):\n    {BEGIN}\n    {OPS_SOLUTION}\n    {END}\n")])),
        encoding="utf-8")
    return root


def test_a_modules_other_notebooks_are_sections_of_its_chapter(multi):
    out = multi / "out"
    r = tito("--root", multi, "book", "build", "--out", out)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "01_pair (+ sections 01_pair_ops)" in r.stdout
    src, html = out / "_build" / "src", out / "_build" / "html"
    toc = yaml.safe_load((src / "_toc.yml").read_text(encoding="utf-8"))
    chapters = [c for part in toc["parts"] for c in part["chapters"]]
    assert [c["file"] for c in chapters] == ["01_pair", "milestones", "from_pytorch"]
    assert chapters[0]["sections"] == [{"file": "01_pair_ops"}]
    # the section's page: the student version of the second notebook
    page = Page((html / "01_pair_ops.html").read_text(encoding="utf-8"))
    assert norm(OPS_TITLE) in norm(page.article_text)
    assert 'raise NotImplementedError("Exercise: implement this (module 01, quadruple)")' \
        in page.article_text
    assert norm(OPS_SOLUTION) not in norm(page.body_text)
    assert norm(SOLUTION_LINE) not in norm(
        Page((html / "01_pair.html").read_text(encoding="utf-8")).body_text)
    # in the sidebar, right after its chapter (seen from the intro and from the chapter)
    nav = [Path(h.split("#")[0]).stem
           for h in Page((html / "intro.html").read_text(encoding="utf-8")).nav_links]
    assert [s for s in nav if s in ("01_pair", "01_pair_ops", "milestones")] == \
        ["01_pair", "01_pair_ops", "milestones"], nav
    assert "01_pair_ops.html" in Page((html / "01_pair.html").read_text(encoding="utf-8")
                                      ).nav_links
    assert not (html / "02_later.html").exists()


def test_a_section_not_written_yet_is_left_out_with_a_note(multi, tmp_path):
    from tito.book import stage_book
    (multi / "modules/01_pair/01_pair_ops.ipynb").unlink()
    staged = stage_book(load_manifest(multi), tmp_path / "src")
    assert [m.folder for m in staged.chapters] == ["01_pair"]
    assert staged.sections == {} and staged.missing_sections == {"01_pair": ["01_pair_ops"]}
    assert any("01_pair_ops.ipynb" in n and "not written yet" in n for n in staged.notes)
    toc = yaml.safe_load((tmp_path / "src" / "_toc.yml").read_text(encoding="utf-8"))
    assert "sections" not in toc["parts"][0]["chapters"][0]
    assert not (tmp_path / "src" / "01_pair_ops.ipynb").exists()
