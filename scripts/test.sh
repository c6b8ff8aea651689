#!/usr/bin/env bash
# Run every check of the course, as CI does:  bash scripts/test.sh
#
#   env        scripts/env.sh: .venv with the pinned requirements and this checkout
#   sync       nbdev_export + nbdev_clean over modules/, then `git status --porcelain`
#              (untracked files included) must be empty: the committed package and notebooks
#              are exactly what the notebooks export to. Commit first, or set
#              SYNC_ALLOW_DIRTY=1 to only require that export/clean change nothing.
#   notebooks  every notebook top to bottom on a Jupyter kernel, outputs cached for the book (tito book build)
#   pytest     python -m pytest (all tests; "no tests collected" is a failure). The system packages
#              the tests need (chromium...) are only checked: scripts/system-deps.sh installs them.
#              tests/jupyter and tests/release also build the student environment
#              (.venv-student, requirements-student.lock) the first time.
#
# All phases run even when one fails; exits non-zero when any failed. Prints each phase's time.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
export CI="${CI:-}"
export MPLBACKEND=Agg          # notebooks that plot must not need a display
unset IN_TEST                  # nbdev_export does nothing when IN_TEST is set

_now_ms() { echo $(( $(date +%s%N) / 1000000 )); }
_fmt_ms() { printf '%d.%01d s' $(( $1 / 1000 )) $(( ($1 % 1000) / 100 )); }

PHASES=()
RESULTS=()
TIMES=()

run_phase() {   # run_phase NAME FUNCTION: runs FUNCTION in a subshell with errexit
    local name=$1 fn=$2 t0 rc
    echo
    echo "=== [$name] $(date -u +%H:%M:%S)"
    t0=$(_now_ms)
    set +e
    ( set -euo pipefail; "$fn" )
    rc=$?
    set -e
    local dt=$(( $(_now_ms) - t0 ))
    PHASES+=("$name"); TIMES+=("$dt")
    if [[ $rc -eq 0 ]]; then RESULTS+=("ok"); else RESULTS+=("FAIL (exit $rc)"); fi
    echo "=== [$name] $( [[ $rc -eq 0 ]] && echo ok || echo "FAILED (exit $rc)" ) in $(_fmt_ms "$dt")"
    return 0
}

summary_and_exit() {
    local failed=0 i
    echo
    echo "=== summary"
    for i in "${!PHASES[@]}"; do
        printf '  %-10s %-16s %10s\n' "${PHASES[$i]}" "${RESULTS[$i]}" "$(_fmt_ms "${TIMES[$i]}")"
        [[ "${RESULTS[$i]}" == ok ]] || failed=1
    done
    if [[ $failed -ne 0 ]]; then echo "FAILED"; exit 1; fi
    echo "ALL OK"
    exit 0
}

# ---------------------------------------------------------------------------------------------
# git state as "hash path" lines for every modified, deleted or untracked file
_tree_state() {
    local f
    git ls-files -z --modified --deleted --others --exclude-standard | sort -zu |
    while IFS= read -r -d '' f; do
        if [[ -e "$f" ]]; then echo "$(git hash-object -- "$f") $f"; else echo "deleted $f"; fi
    done
}

phase_sync() {
    git rev-parse --is-inside-work-tree >/dev/null 2>&1 || {
        echo "not a git work tree: the sync check needs git" >&2; return 1; }
    local before after
    before="$(git status --porcelain --untracked-files=all)"
    local dirty_ok=0
    if [[ -n "$before" ]]; then
        if [[ "${SYNC_ALLOW_DIRTY:-0}" == 1 ]]; then
            dirty_ok=1
            echo "note: the work tree has uncommitted changes; SYNC_ALLOW_DIRTY=1, so only checking"
            echo "      that nbdev_export/nbdev_clean change nothing (CI checks a committed tree)"
            before="$(_tree_state)"
        else
            echo "note: the work tree is not clean before the export (commit first, or set"
            echo "      SYNC_ALLOW_DIRTY=1 to only check what export/clean change):"
            echo "$before" | sed 's/^/    /'
        fi
    fi
    nbdev_export
    nbdev_clean
    if [[ $dirty_ok == 1 ]]; then
        after="$(_tree_state)"
        if [[ "$before" != "$after" ]]; then
            echo "OUT OF SYNC: nbdev_export/nbdev_clean changed these files:" >&2
            diff <(echo "$before") <(echo "$after") | grep '^[<>]' | awk '{print "    " $3}' | sort -u >&2
            return 1
        fi
    else
        after="$(git status --porcelain --untracked-files=all)"
        if [[ -n "$after" ]]; then
            echo "OUT OF SYNC: after nbdev_export + nbdev_clean, git status is not empty:" >&2
            echo "$after" | sed 's/^/    /' >&2
            echo "Export and clean the notebooks (tito export --all), then commit the result." >&2
            git --no-pager diff --stat >&2 || true
            return 1
        fi
    fi
    echo "notebooks, package and git are in sync"
}

phase_notebooks() {
    local n
    n=$(find modules -name '*.ipynb' -not -path '*/.*' -not -path '*/_*' | wc -l)
    python - <<'EOF'
import tomllib, pathlib
m = tomllib.loads(pathlib.Path("modules/manifest.toml").read_text())["module"]
# a module is all of its notebooks (`notebooks = [...]` when it has several)
missing = [f"{e['folder']}/{s}.ipynb" for e in m for s in e.get("notebooks", [e["folder"]])
           if not pathlib.Path("modules", e["folder"], s + ".ipynb").is_file()]
if missing:
    print(f"warning: {len(missing)} notebook(s) of the {len(m)} manifest modules not written yet: " + ", ".join(missing))
EOF
    if [[ $n -eq 0 ]]; then echo "no notebooks under modules/: nothing to run" >&2; return 1; fi
    # Each reference notebook runs once, top to bottom, on a Jupyter kernel (two at a time, one BLAS
    # thread each): `tito book build` runs them, fails on a cell that raises (naming it), and caches
    # the outputs in book/_build/executed, where tests/book finds them instead of running them again.
    bash "$ROOT/scripts/system-deps.sh" --check || {
        echo "the system packages above are missing: run \`bash scripts/system-deps.sh\` first" >&2
        return 1; }
    echo "running $n notebook(s) on Jupyter kernels (tito book build)"
    tito book build
}

phase_pytest() {
    local rc=0
    # chromium + libjs-mathjax for tests/book and tests/jupyter: checked, never installed here
    bash "$ROOT/scripts/system-deps.sh" --check || {
        echo "the system packages above are missing: run \`bash scripts/system-deps.sh\` first" >&2
        return 1; }
    python -m pytest || rc=$?
    if [[ $rc -eq 5 ]]; then
        echo "pytest collected no tests (exit 5): the test suite is empty or not found" >&2
    fi
    return $rc
}

# ---------------------------------------------------------------------------------------------
echo "tinytorch checks in $ROOT (CI=${CI:-})"
T0=$(_now_ms)
set +e
# env is sourced in this shell (not a subshell) so the later phases use .venv
echo
echo "=== [env] $(date -u +%H:%M:%S)"
# shellcheck source=scripts/env.sh
source "$ROOT/scripts/env.sh"
rc=$?
set -e
dt=$(( $(_now_ms) - T0 ))
PHASES+=(env); TIMES+=("$dt")
if [[ $rc -ne 0 ]]; then
    RESULTS+=("FAIL (exit $rc)")
    echo "=== [env] FAILED: cannot run the other phases"
    summary_and_exit
fi
RESULTS+=(ok)
echo "python: $(command -v python) ($(python --version 2>&1))"
echo "=== [env] ok in $(_fmt_ms "$dt")"

run_phase sync phase_sync
run_phase notebooks phase_notebooks
run_phase pytest phase_pytest
summary_and_exit
