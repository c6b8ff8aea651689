"""Test results recorded by ``tito test`` in ``.tito/results.json`` (gitignored).

Layout::

    {"version": 1,
     "modules": {"01_tensor": {"number": 1, "status": "passed", "exit_code": 0,
                               "summary": "12 passed in 0.41s", "timestamp": "2026-...+00:00",
                               "duration_s": 1.9, "paths": ["tests/01_tensor", ...]}}}

Keyed by folder name, so a renumbering never attributes an old result to another module.
"""

from __future__ import annotations

import json
import os
import tempfile
from datetime import datetime, timezone
from pathlib import Path

RESULTS_RELPATH = Path(".tito") / "results.json"
VERSION = 1


def results_path(root: Path) -> Path:
    return Path(root) / RESULTS_RELPATH


def load_results(root: Path) -> dict:
    """All recorded results (``{folder: entry}``); an absent or unreadable file gives ``{}``."""
    p = results_path(root)
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    mods = data.get("modules") if isinstance(data, dict) else None
    return mods if isinstance(mods, dict) else {}


def record_result(root: Path, folder: str, entry: dict) -> dict:
    """Store ``entry`` for ``folder`` (adding a UTC timestamp) and write the file atomically."""
    entry = dict(entry)
    entry.setdefault("timestamp", datetime.now(timezone.utc).isoformat(timespec="seconds"))
    mods = load_results(root)
    mods[folder] = entry
    p = results_path(root)
    p.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=p.parent, prefix=".results-", suffix=".json")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump({"version": VERSION, "modules": mods}, f, indent=2, sort_keys=True)
            f.write("\n")
        os.replace(tmp, p)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return entry


def describe(entry: dict | None) -> str:
    """A short human description for ``tito status``: ``passed (2026-11-21 05:40 UTC)``."""
    if not entry:
        return "not run"
    status = entry.get("status", "?")
    ts = entry.get("timestamp", "")
    try:
        when = datetime.fromisoformat(ts).astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    except (TypeError, ValueError):
        when = ts or "unknown time"
    return f"{status} ({when})"
