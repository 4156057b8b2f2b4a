#!/usr/bin/env bash
# Install everything (scripts/install.sh), then run the whole test suite, GUI tests included
# (pytest-xvfb starts a virtual display when there is none).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
.venv/bin/python -m pytest "$@"
