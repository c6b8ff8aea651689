# shellcheck shell=bash
# Source me: `source scripts/env.sh`. Creates and activates the project's virtualenv, .venv/.
#
# Two environments from one lock, chosen with TINYTORCH_ENV:
#   dev      (the default in the repository) requirements.lock: the student environment plus the
#            test oracle (torch==2.13.0 from the CPU wheel pip's own configuration points at,
#            scipy, transformers, tokenizers) and the book tools (jupyter-book)      -> .venv/
#   student  (the default in a student copy, which has no requirements.lock)
#            requirements-student.lock: NumPy, Numba, nbdev, JupyterLab, matplotlib, pytest...,
#            no PyTorch                          -> .venv/ in a student copy, .venv-student/ here
#   TINYTORCH_VENV=DIR overrides the virtualenv's directory.
#
# - The venv is made with python3.11 (or python3 when that is 3.11; override with
#   TINYTORCH_PYTHON), and remade when it is broken or built by another Python version.
# - It installs the lock (exact pins), then the checkout itself with `--no-deps -e .`
#   (the distribution is tinytorch-course: `tinytorch` is never resolved from a registry).
# - The install is skipped when <venv>/.tinytorch-env-stamp holds the sha256 of the kind, the
#   lock files and pyproject.toml, so sourcing is fast when nothing changed.
#
# Safe to source from scripts running under `set -euo pipefail` and from an interactive shell
# (a failure returns 1 instead of exiting the shell). Exports TINYTORCH_ROOT.

# pip, minus the harmless "Location 'file:///...' is ignored" lines that an extra-index-url of
# local directories produces for every package; keeps pip's exit status.
_tt_pip() {
    PIP_DISABLE_PIP_VERSION_CHECK=1 "$venv_py" -m pip "$@" 2>&1 \
        | { grep -v "^WARNING: Location 'file:.*' is ignored: it is neither a file nor a directory\.\$" || true; }
    return "${PIPESTATUS[0]}"
}

_tt_env_setup() {
    local root py ver want stamp_file want_stamp have_stamp venv_py kind default_kind lock venv
    root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)" || return 1
    want="3.11"

    # 0. Which environment: dev (repository) or student.
    if [[ -f "$root/requirements.lock" ]]; then default_kind=dev; else default_kind=student; fi
    kind="${TINYTORCH_ENV:-$default_kind}"
    case "$kind" in
        dev) lock="$root/requirements.lock" ;;
        student) lock="$root/requirements-student.lock" ;;
        *) echo "env.sh: TINYTORCH_ENV must be 'student' or 'dev', got '$kind'" >&2; return 1 ;;
    esac
    if [[ ! -f "$lock" ]]; then
        echo "env.sh: $lock not found: the $kind environment cannot be built here" >&2
        return 1
    fi
    if [[ -n "${TINYTORCH_VENV:-}" ]]; then
        venv="$TINYTORCH_VENV"
    elif [[ "$kind" == "$default_kind" ]]; then
        venv="$root/.venv"
    else
        venv="$root/.venv-$kind"
    fi

    # 1. A Python 3.11 to build the venv with.
    if [[ -n "${TINYTORCH_PYTHON:-}" ]]; then
        py="$TINYTORCH_PYTHON"
    elif command -v python3.11 >/dev/null 2>&1; then
        py="$(command -v python3.11)"
    elif command -v python3 >/dev/null 2>&1; then
        py="$(command -v python3)"
    else
        echo "env.sh: no python3.11 or python3 on PATH" >&2; return 1
    fi
    ver="$("$py" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null)" || {
        echo "env.sh: $py does not run" >&2; return 1; }
    if [[ "$ver" != "$want" ]]; then
        echo "env.sh: need Python $want, but $py is Python $ver (set TINYTORCH_PYTHON)" >&2
        return 1
    fi

    # 2. The venv, (re)made when missing, broken or of another Python version.
    venv_py="$venv/bin/python"
    if [[ -x "$venv_py" ]]; then
        local have
        have="$("$venv_py" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null || true)"
        if [[ "$have" != "$want" ]]; then
            echo "env.sh: $venv is broken or not Python $want ('$have'); recreating it" >&2
            rm -rf "$venv"
        fi
    elif [[ -e "$venv" ]]; then
        echo "env.sh: $venv has no working python; recreating it" >&2
        rm -rf "$venv"
    fi
    if [[ ! -x "$venv_py" ]]; then
        echo "env.sh: creating $venv ($kind environment) with $py ($("$py" --version 2>&1))"
        "$py" -m venv "$venv" || {
            echo "env.sh: 'python -m venv' failed (on Debian/Ubuntu install python3.11-venv)" >&2
            rm -rf "$venv"; return 1; }
    fi

    # 3. The pinned packages and the checkout, unless the stamp says they are current.
    stamp_file="$venv/.tinytorch-env-stamp"
    want_stamp="$( { echo "$kind"; cat "$lock" "$root/requirements-student.lock" "$root/pyproject.toml"; } \
        | "$venv_py" -c 'import hashlib, sys; print(hashlib.sha256(sys.stdin.buffer.read()).hexdigest())')" \
        || { echo "env.sh: cannot read $lock / pyproject.toml" >&2; return 1; }
    have_stamp="$(cat "$stamp_file" 2>/dev/null || true)"
    if [[ "$have_stamp" != "$want_stamp" ]]; then
        echo "env.sh: installing $(basename "$lock") into $venv (this takes a few minutes the first time)"
        local t0=$SECONDS
        rm -f "$stamp_file"
        _tt_pip install --no-input -q -r "$lock" \
            || { echo "env.sh: pip install -r $(basename "$lock") failed" >&2; return 1; }
        _tt_pip install --no-input -q --no-deps -e "$root" \
            || { echo "env.sh: pip install --no-deps -e . failed" >&2; return 1; }
        echo "$want_stamp" > "$stamp_file" || return 1
        echo "env.sh: $kind environment ready in $((SECONDS - t0)) s"
    fi

    # 3b. JupyterLab's defaults for the course: no "Jupyter news" question, no update check.
    local lab_settings="$venv/share/jupyter/lab/settings"
    if ! cmp -s "$root/scripts/jupyterlab-overrides.json" "$lab_settings/overrides.json" 2>/dev/null; then
        mkdir -p "$lab_settings" && cp "$root/scripts/jupyterlab-overrides.json" "$lab_settings/overrides.json" \
            || { echo "env.sh: cannot write $lab_settings/overrides.json" >&2; return 1; }
    fi

    # 4. Activate.
    # shellcheck disable=SC1091
    source "$venv/bin/activate" \
        || { echo "env.sh: cannot activate $venv" >&2; return 1; }
    export TINYTORCH_ROOT="$root"
    export TINYTORCH_ACTIVE_ENV="$kind"   # which environment is active (not read back by env.sh)
    export PIP_DISABLE_PIP_VERSION_CHECK=1
    return 0
}

_tt_env_setup
_tt_env_status=$?
unset -f _tt_env_setup _tt_pip
if [[ $_tt_env_status -ne 0 ]]; then
    unset _tt_env_status
    echo "env.sh: environment setup failed" >&2
    return 1 2>/dev/null || exit 1
fi
unset _tt_env_status
