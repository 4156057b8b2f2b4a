#!/bin/bash
# Local (Debian 12, no GPU) check of the bundle: unpack into /tmp/gd-check, keep ALL bundled
# libs (GD_PRUNE=0, so the bundle, not the system, provides X/GL/xcb), start the bundle's
# Xvfb, then run check_canvas.py with the repo venv's python 3.11 (napari from the venv,
# PyQt6 from the bundle via PYTHONPATH) including a napari screenshot -> /tmp/gd-shot.png.
# Renderer here is Mesa softpipe (the bundle's own swrast_dri.so); on the GPU box, NVIDIA.
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
rm -rf /tmp/gd-check; mkdir -p /tmp/gd-check
export GD_PREFIX=/tmp/gd-check/root GD_QT_SITE=/tmp/gd-check/qt-site GD_PRUNE=0 GD_DISPLAY=:77
export GD_PYTHON=${GD_PYTHON:-python3}
unset __GLX_VENDOR_LIBRARY_NAME GD_XVFB_PID
# shellcheck source=/dev/null
source "$here/setup.sh"; rc=$?
echo "setup.sh returned $rc (GD_OK=$GD_OK)"
[ "$rc" = 0 ] || { [ -n "$GD_XVFB_PID" ] && kill "$GD_XVFB_PID"; exit 1; }

echo "--- Xvfb binary and its GLX driver (from /proc/$GD_XVFB_PID) ---"
readlink "/proc/$GD_XVFB_PID/exe"
grep -oE '/[^ ]*(swrast_dri|libGL|libXfont2|libpixman)[^ ]*' "/proc/$GD_XVFB_PID/maps" | sort -u
echo "--- bundle xkbcomp dumps the server keymap (proves it runs from the prefix) ---"
"$GD_PREFIX/usr/bin/xkbcomp" -R"$GD_PREFIX/usr/share/X11/xkb" "$DISPLAY" /tmp/gd-check/keymap.xkb 2>&1 | head -3
ls -la /tmp/gd-check/keymap.xkb
echo "--- napari ---"
cd /tmp && timeout 300 "$GD_PYTHON" "$here/check_canvas.py" --napari /tmp/gd-shot.png; rc=$?
kill "$GD_XVFB_PID"
exit $rc
