#!/usr/bin/env bash
# Install napari-sam2 and everything it needs into .venv, from scratch, on Debian/Ubuntu.
# System packages: a virtual X display and the libraries Qt's xcb platform needs (napari's
# canvas needs OpenGL, which Mesa provides under Xvfb). Python: the pinned torch/torchvision
# pair from constraints.txt, then sam2 without its CUDA extension, then this package.
set -euo pipefail
cd "$(dirname "$0")/.."

SYSTEM_PACKAGES=(xvfb xauth libgl1 libegl1 libxkbcommon-x11-0 libxcb-icccm4 libxcb-image0
  libxcb-keysyms1 libxcb-randr0 libxcb-render-util0 libxcb-xinerama0 libxcb-xfixes0
  libxcb-shape0 libxcb-cursor0 libdbus-1-3 libfontconfig1)
if command -v apt-get >/dev/null && ! dpkg -s "${SYSTEM_PACKAGES[@]}" >/dev/null 2>&1; then
  SUDO=$([ "$(id -u)" = 0 ] && echo "" || echo sudo)
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${SYSTEM_PACKAGES[@]}" >/dev/null
fi

PYTHON=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
PIP=(.venv/bin/python -m pip install -q -c constraints.txt)
"${PIP[@]}" --upgrade pip setuptools wheel
"${PIP[@]}" torch torchvision
SAM2_BUILD_CUDA=0 "${PIP[@]}" --no-build-isolation sam2
"${PIP[@]}" -e ".[testing,all]"
