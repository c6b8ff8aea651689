#!/usr/bin/env bash
# Check the whole course as a student runs it:  bash scripts/check.sh [NN ...]
#
# Sets up and activates the environment (scripts/env.sh), then `tito module check`: every
# notebook compiles and exports, every package module imports, and every module's checkpoint and
# progressive tests run against the package. Tests that stop at an exercise not written yet are
# reported as exercises to do (exit 0); anything else that fails is a problem (exit 1).
# Needs no git and no PyTorch: it is the test command of a student copy.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
export MPLBACKEND=Agg
unset IN_TEST                  # nbdev_export does nothing when IN_TEST is set
# shellcheck source=scripts/env.sh
source "$ROOT/scripts/env.sh"
exec python -m tito.cli module check "$@"   # this copy's own tito
