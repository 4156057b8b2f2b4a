#!/usr/bin/env bash
# Install everything, then open napari with the plugin docked, sample cells and the micro model.
# With no display (or with --screenshot FILE) it runs under a virtual display, clicks a cell
# and writes a screenshot of the window instead.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
if [ -z "${DISPLAY:-}" ] && [ -z "${WAYLAND_DISPLAY:-}" ]; then
  [ $# -gt 0 ] || set -- --screenshot demo.png
  exec xvfb-run -a .venv/bin/python -m napari_sam2.demo "$@"
fi
exec .venv/bin/python -m napari_sam2.demo "$@"
