"""Reading submissions for ``tito grade`` without trusting them.

A submission is a folder of whatever a student handed in: symbolic links, FIFOs, device nodes,
folder trees thousands deep, millions of files. Here nothing is followed and nothing blocks:
folders are walked with ``os.scandir`` (no symlink followed, at most :data:`MAX_DEPTH` levels
and :data:`MAX_ENTRIES` entries), files are opened relative to their parent folder's descriptor
with ``O_NOFOLLOW | O_NONBLOCK``, must be regular files (``fstat``) no larger than
:data:`MAX_NOTEBOOK` bytes, and are read up to that size.
"""

from __future__ import annotations

import json
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

from .errors import TitoError

MAX_DEPTH = 12
MAX_ENTRIES = 20_000
MAX_NOTEBOOK = 20 << 20
MAX_STUDENTS = 10_000


@dataclass
class Scan:
    """Every ``*.ipynb`` entry of a student's folder (relative path -> what it is)."""
    entries: dict[str, str] = field(default_factory=dict)     # rel path -> "file" / "symlink" / ...
    notes: list[str] = field(default_factory=list)


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISREG, "file"), (stat.S_ISLNK, "symbolic link"),
                       (stat.S_ISDIR, "folder"), (stat.S_ISFIFO, "FIFO"),
                       (stat.S_ISCHR, "character device"), (stat.S_ISBLK, "block device"),
                       (stat.S_ISSOCK, "socket")):
        if test(mode):
            return name
    return "special file"


def find_students(submissions: Path) -> list[Path]:
    """Every student folder: the direct sub-folders (real folders, not symlinks) not starting
    with '.' or '_', sorted by name."""
    try:
        st = os.lstat(submissions)
    except OSError:
        st = None
    if st is None or not stat.S_ISDIR(st.st_mode):
        raise TitoError(f"submissions directory {submissions} does not exist", exit_code=2)
    out = []
    with os.scandir(submissions) as it:
        for e in it:
            if len(out) > MAX_STUDENTS:
                raise TitoError(f"more than {MAX_STUDENTS} entries in {submissions}", exit_code=2)
            if e.name.startswith((".", "_")) or not e.is_dir(follow_symlinks=False):
                continue
            out.append(Path(e.path))
    return sorted(out, key=lambda p: p.name)


def scan(student: Path) -> Scan:
    """Walk the student's folder (breadth first, without following anything)."""
    res = Scan()
    queue = [("", 0)]
    seen = 0
    while queue:
        rel, depth = queue.pop(0)
        try:
            it = os.scandir(student / rel if rel else student)
        except OSError as e:
            res.notes.append(f"cannot list {rel or '.'}: {e.strerror}")
            continue
        with it:
            for e in it:
                seen += 1
                if seen > MAX_ENTRIES:
                    res.notes.append(f"more than {MAX_ENTRIES} files and folders: the rest is ignored")
                    return res
                r = f"{rel}/{e.name}" if rel else e.name
                try:
                    mode = e.stat(follow_symlinks=False).st_mode
                except OSError:
                    continue
                if stat.S_ISDIR(mode) and not e.name.startswith("."):
                    if depth + 1 >= MAX_DEPTH:
                        if not any("deeper than" in n for n in res.notes):
                            res.notes.append(f"folders deeper than {MAX_DEPTH} levels are ignored")
                        continue
                    queue.append((r, depth + 1))
                elif e.name.endswith(".ipynb"):
                    res.entries[r] = _kind(mode)
    return res


def find_notebook(found: Scan, folder: str, stem: str) -> str | None:
    """The relative path of notebook ``stem`` of module ``folder``: modules/FOLDER/STEM.ipynb,
    FOLDER/STEM.ipynb, else the first STEM.ipynb anywhere (sorted)."""
    for cand in (f"modules/{folder}/{stem}.ipynb", f"{folder}/{stem}.ipynb"):
        if cand in found.entries:
            return cand
    hits = sorted(r for r in found.entries if r.rsplit("/", 1)[-1] == f"{stem}.ipynb")
    return hits[0] if hits else None


def read_regular(base: Path, rel: str, limit: int = MAX_NOTEBOOK) -> tuple[bytes | None, str]:
    """(content, "ok") of the regular file ``base/rel``, opened component by component without
    following any symbolic link and without blocking; else (None, why not)."""
    parts = [p for p in rel.split("/") if p]
    if not parts or any(p in (".", "..") for p in parts):
        return None, f"{rel}: not a plain relative path"
    flags_dir = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW
    try:
        fd = os.open(base, flags_dir)
    except OSError as e:
        return None, f"cannot open the student's folder: {e.strerror}"
    try:
        for p in parts[:-1]:
            nfd = os.open(p, flags_dir, dir_fd=fd)
            os.close(fd)
            fd = nfd
        name = parts[-1]
        st = os.stat(name, dir_fd=fd, follow_symlinks=False)
        if not stat.S_ISREG(st.st_mode):
            return None, f"{rel} is a {_kind(st.st_mode)}, not a regular file (not graded)"
        if st.st_size > limit:
            return None, f"{rel} is larger than {limit >> 20} MB (not graded)"
        ffd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY, dir_fd=fd)
        try:
            fst = os.fstat(ffd)
            if not stat.S_ISREG(fst.st_mode):
                return None, f"{rel} is a {_kind(fst.st_mode)}, not a regular file (not graded)"
            chunks, total = [], 0
            while total <= limit:
                b = os.read(ffd, min(1 << 20, limit + 1 - total))
                if not b:
                    break
                chunks.append(b)
                total += len(b)
            if total > limit:
                return None, f"{rel} is larger than {limit >> 20} MB (not graded)"
            return b"".join(chunks), "ok"
        finally:
            os.close(ffd)
    except OSError as e:
        return None, f"cannot read {rel}: {e.strerror or e}"
    finally:
        os.close(fd)


def check_notebook(data: bytes, name: str) -> tuple[bytes | None, str]:
    """(data, "ok") when ``data`` is a JSON notebook, else (None, why not)."""
    try:
        nb = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        return None, f"{name} is not a valid notebook (JSON error: {str(e)[:200]})"
    if not isinstance(nb, dict) or not isinstance(nb.get("cells"), list) \
            or not all(isinstance(c, dict) for c in nb["cells"]):
        return None, f"{name} is not a notebook (no list of cells)"
    return data, "ok"


def load_notebook(student: Path, found: Scan, folder: str, stem: str) -> tuple[bytes | None, str]:
    """(content, "ok"), (None, "missing") or (None, why it is not graded)."""
    rel = find_notebook(found, folder, stem)
    if rel is None:
        return None, "missing"
    data, why = read_regular(student, rel)
    if data is None:
        return None, why
    return check_notebook(data, f"{stem}.ipynb")
