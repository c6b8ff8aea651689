#!/usr/bin/env bash
# The course's main job: bash scripts/demo.sh  (sets up .venv, then runs scripts/demo.py)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
# shellcheck source=scripts/env.sh
source "$ROOT/scripts/env.sh"
exec python "$ROOT/scripts/demo.py" "$@"
