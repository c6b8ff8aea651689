#!/usr/bin/env bash
# System packages the repository's tests need beyond Python: `bash scripts/system-deps.sh`
# (the one place that installs Debian packages; a student copy needs none of them)
#
#   chromium           headless browser: tests/book screenshots the built course book,
#                      tests/jupyter screenshots JupyterLab
#   libjs-mathjax      MathJax served from disk, so the book renders mathematics offline
#   fonts-dejavu-core  a font for chromium to draw text with
#   bubblewrap         bwrap: the sandbox `tito grade` runs students' code in (namespaces, allow-list fs)
#
# A fast no-op when everything is there. When something is missing: as root on Debian/Ubuntu it
# installs it with apt-get (noninteractive, no recommended extras); otherwise it prints exactly
# what to install and exits 1. `--check` only checks: it names what is missing and exits 1,
# installing nothing (scripts/test.sh runs that). .ci/run runs this script before scripts/test.sh.
set -euo pipefail

# what must exist  ->  the Debian package that provides it
CHECKS=(
    "chromium|command -v chromium"
    "libjs-mathjax|test -f /usr/share/javascript/mathjax/MathJax.js"
    "fonts-dejavu-core|test -f /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"
    "bubblewrap|command -v bwrap"
)

missing_packages() {
    local entry pkg check
    for entry in "${CHECKS[@]}"; do
        pkg=${entry%%|*}
        check=${entry#*|}
        if ! eval "$check" >/dev/null 2>&1; then
            printf '%s ' "$pkg"
        fi
    done
}

missing="$(missing_packages)"
missing="${missing% }"
if [[ -z "$missing" ]]; then
    exit 0
fi
if [[ "${1:-}" == "--check" ]]; then
    echo "system-deps.sh: missing system packages: $missing" >&2
    echo "install them with:  bash scripts/system-deps.sh   (as root: it runs apt-get install)" >&2
    exit 1
fi

if [[ "$(id -u)" -ne 0 ]]; then
    echo "system-deps.sh: missing system packages: $missing" >&2
    echo "install them as root, then run this again:" >&2
    echo "    sudo apt-get update && sudo apt-get install -y --no-install-recommends $missing" >&2
    exit 1
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "system-deps.sh: missing system packages: $missing" >&2
    echo "this is not a Debian/Ubuntu system (no apt-get): install the equivalents of" >&2
    echo "    $missing" >&2
    echo "(a chromium browser on PATH as 'chromium', MathJax 2 at /usr/share/javascript/mathjax/)" >&2
    exit 1
fi

echo "system-deps.sh: installing $missing with apt-get"
t0=$SECONDS
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# shellcheck disable=SC2086  # word splitting of the package list is intended
apt-get install -y -qq --no-install-recommends $missing >/dev/null
still="$(missing_packages)"
if [[ -n "${still% }" ]]; then
    echo "system-deps.sh: still missing after apt-get install: ${still% }" >&2
    exit 1
fi
echo "system-deps.sh: installed $missing in $((SECONDS - t0)) s"
