"""Writing the gradebook of ``tito grade``: CSV (student x module points), JSON (everything) and
JUnit XML, each written to a temporary file in the same folder, flushed, then renamed into place,
so a reader never sees a half-written gradebook, whatever happened while grading."""

from __future__ import annotations

import csv
import io
import json
import os
import re
import tempfile
import xml.etree.ElementTree as ET
from pathlib import Path


# ---------------------------------------------------------------------------------------------
# Writing the gradebook
# ---------------------------------------------------------------------------------------------

def write_gradebook(report: dict, out: Path) -> dict[str, Path]:
    out.mkdir(parents=True, exist_ok=True)
    folders = [m["folder"] for m in report["modules"]]
    paths = {"csv": out / "gradebook.csv", "json": out / "gradebook.json",
             "junit": out / "gradebook.junit.xml"}

    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["student", *folders, "total"])
    for s in report["students"]:
        w.writerow([s["name"], *[_num(s["modules"][f]["points"]) for f in folders],
                    _num(s["total"])])
    _atomic(paths["csv"], buf.getvalue())
    _atomic(paths["json"], json.dumps(report, indent=1) + "\n")
    _atomic(paths["junit"], junit_xml(report))
    return paths


def _num(x: float) -> str:
    return f"{x:g}"


def _atomic(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}-")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", errors="replace") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


_XML_BAD = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def _x(s) -> str:
    return _XML_BAD.sub("?", str(s or ""))


def junit_xml(report: dict) -> str:
    """One <testsuite> per student and module, one <testcase> per checkpoint test; a module
    that could not run is one failing (or skipped, when its notebook is missing) testcase."""
    suites = ET.Element("testsuites", name="tito grade")
    n_all = n_fail = n_err = n_skip = 0
    for s in report["students"]:
        for folder, m in s["modules"].items():
            name = f"{s['name']}.{folder}"
            suite = ET.SubElement(suites, "testsuite", name=_x(name))
            cases = []
            if m["status"] in ("graded", "foreign package") and m["tests"]:
                for t in m["tests"]:
                    tc = ET.Element("testcase", classname=_x(name), name=_x(t["name"]),
                                    time=f"{t.get('duration', 0):.3f}")
                    if t["outcome"] == "failed":
                        el = ET.SubElement(tc, "failure", message=_x(t.get("message")))
                        el.text = _x(t.get("details"))
                    elif t["outcome"] == "error":
                        el = ET.SubElement(tc, "error", message=_x(t.get("message")))
                        el.text = _x(t.get("details"))
                    elif t["outcome"] == "skipped":
                        ET.SubElement(tc, "skipped", message=_x(t.get("message")))
                    cases.append(tc)
            else:
                tc = ET.Element("testcase", classname=_x(name), name="checkpoint",
                                time=f"{m['duration_s']:.3f}")
                if m["status"] == "missing notebook":
                    ET.SubElement(tc, "skipped", message=_x(m["message"]))
                else:
                    el = ET.SubElement(tc, "error", message=_x(f"{m['status']}: {m['message']}"))
                    el.text = _x(m.get("log_tail"))
                cases.append(tc)
            f = sum(1 for c in cases if c.find("failure") is not None)
            e = sum(1 for c in cases if c.find("error") is not None)
            k = sum(1 for c in cases if c.find("skipped") is not None)
            suite.set("tests", str(len(cases)))
            suite.set("failures", str(f))
            suite.set("errors", str(e))
            suite.set("skipped", str(k))
            suite.set("time", f"{m['duration_s']:.3f}")
            ET.SubElement(suite, "properties").append(
                ET.Element("property", name="points", value=f"{m['points']:g}/{m['max_points']:g}"))
            suite.extend(cases)
            n_all += len(cases)
            n_fail += f
            n_err += e
            n_skip += k
    suites.set("tests", str(n_all))
    suites.set("failures", str(n_fail))
    suites.set("errors", str(n_err))
    suites.set("skipped", str(n_skip))
    return ET.tostring(suites, encoding="unicode", xml_declaration=True) + "\n"


def summary_table(report: dict) -> str:
    folders = [m["folder"] for m in report["modules"]]
    head = ["student", *[f[:2] for f in folders], "total", "notes"]
    rows = []
    for s in report["students"]:
        notes = []
        for f in folders:
            m = s["modules"][f]
            if m["status"] != "graded":
                notes.append(f"{f[:2]}: {m['status']}")
            else:
                for stem, state in (m.get("notebooks") or {}).items():
                    if stem != f and state != "ok":
                        notes.append(f"{f[:2]}: " + ("stand-in for " if stem in
                                                     m.get("stripped_stand_ins", []) else "no ")
                                     + stem)
        if s["violations"]:
            notes.append(f"{len(s['violations'])} violation(s)")
        rows.append([s["name"], *[f"{s['modules'][f]['points']:g}" for f in folders],
                     f"{s['total']:g}/{s['max_total']:g}", "; ".join(notes)])
    widths = [max(len(str(r[i])) for r in [head, *rows]) for i in range(len(head))]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    lines = [fmt.format(*head), fmt.format(*("-" * w for w in widths))]
    lines += [fmt.format(*r) for r in rows]
    return "\n".join(line.rstrip() for line in lines)
