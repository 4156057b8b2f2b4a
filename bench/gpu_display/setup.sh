# shellcheck shell=bash
# .gpu_display/setup.sh -- Xvfb + GLX + trimmed PyQt6 for napari on a headless (NVIDIA) box.
#
# USE (from the repo root, as root, with .gpu_display carried):
#     source .gpu_display/setup.sh            # unpack, start Xvfb, print diagnostics
#     python3 .gpu_display/check_canvas.py [--napari /tmp/shot.png]   # again, any time
# It never `exit`s your shell; on failure it `return`s non-zero (GD_OK=0).
#
# Knobs (set before sourcing):  GD_PREFIX (default /tmp/gl-root: the debs' files + Mesa
#   softpipe swrast_dri.so), GD_QT_SITE (/tmp/qt-site: PyQt6), GD_DISPLAY (:99),
#   GD_PRUNE (1: delete bundled libs whose soname the system already has, so newer Ubuntu
#   libs win; 0 keeps them all), GD_GLX_VENDOR (default: nvidia if libGLX_nvidia.so.0 is
#   found, else unset = Mesa), GD_NO_CHECK=1 skips the python check.
#
# EXPORTS: DISPLAY=$GD_DISPLAY  QT_QPA_PLATFORM=xcb  __GLX_VENDOR_LIBRARY_NAME=nvidia (if found)
#   LD_LIBRARY_PATH=$GD_PREFIX/usr/lib/x86_64-linux-gnu[:nvidia lib dir]:$LD_LIBRARY_PATH
#   PYTHONPATH=$GD_QT_SITE:$PYTHONPATH   LIBGL_DRIVERS_PATH=$GD_PREFIX/usr/lib/x86_64-linux-gnu/dri
#   VISPY_GL_LIB=libGL.so.1 (vispy's find_library ignores LD_LIBRARY_PATH)
#   FONTCONFIG_PATH/FONTCONFIG_FILE (prefix fonts.conf -> DejaVu), XLOCALEDIR, XKB_CONFIG_ROOT,
#   __EGL_VENDOR_LIBRARY_FILENAMES (NVIDIA's json, when the system has no egl_vendor.d entry),
#   GD_XVFB_PID, GD_OK (1/0).  Xvfb log: /tmp/gd-xvfb.log.  Stop: kill $GD_XVFB_PID
# Writes outside /tmp only if /usr/bin/xkbcomp is missing: a symlink to the prefix's xkbcomp
# (Xvfb runs xkbcomp from the compiled-in /usr/bin; there is no option to change that).

_gd_setup() {
    local here pfx qts lib nvdir="" f d so n
    here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd) || return 1
    pfx=${GD_PREFIX:-/tmp/gl-root}; qts=${GD_QT_SITE:-/tmp/qt-site}
    lib=$pfx/usr/lib/x86_64-linux-gnu
    GD_OK=0
    echo "[gd] bundle $here -> prefix $pfx, PyQt6 -> $qts"
    if [ ! -x "$pfx/usr/bin/Xvfb" ]; then
        mkdir -p "$pfx" && tar -xJf "$here/xroot.tar.xz" -C "$pfx" || { echo "[gd] ERROR unpacking xroot.tar.xz"; return 1; }
    fi
    if [ ! -f "$qts/PyQt6/__init__.py" ]; then
        mkdir -p "$qts" && tar -xJf "$here/qt.tar.xz" -C "$qts" || { echo "[gd] ERROR unpacking qt.tar.xz"; return 1; }
    fi

    # prefer the system's own (newer) copy of any library it already has
    if [ "${GD_PRUNE:-1}" = 1 ]; then
        mkdir -p "$pfx/pruned"
        for f in "$lib"/lib*.so.* "$pfx"/lib/x86_64-linux-gnu/lib*.so.*; do
            [ -e "$f" ] || continue
            n=$(basename "$f")
            d=$(ldconfig -p 2>/dev/null | awk -v n="$n" '$1 == n && /x86-64/ {print $NF; exit}')
            if [ -n "$d" ] && [ -e "$d" ]; then   # the cache may list files the image lacks
                mv -f "$f" "$pfx/pruned/"
            fi
        done
        find "$lib" -maxdepth 1 -xtype l -delete   # dangling dev symlinks (libGL.so etc.)
        n=$(ls "$pfx/pruned" 2>/dev/null | grep -c .)
        echo "[gd] pruned $n bundled lib files the system already has (moved to $pfx/pruned)"
    fi

    # --- NVIDIA driver's GLX/EGL libraries ---
    so=$(ldconfig -p 2>/dev/null | awk '/libGLX_nvidia\.so\.0 .*x86-64/{print $NF; exit}')
    if [ -n "$so" ]; then
        echo "[gd] libGLX_nvidia in ld cache: $so"
    else
        for d in /usr/local/nvidia/lib64 /usr/local/nvidia/lib /usr/lib/x86_64-linux-gnu /usr/lib64 \
                 /usr/local/cuda/compat /usr/local/nvidia/lib/x86_64-linux-gnu; do
            if [ -e "$d/libGLX_nvidia.so.0" ]; then so=$d/libGLX_nvidia.so.0; nvdir=$d; break; fi
        done
        if [ -z "$so" ]; then
            so=$(find /usr/local/nvidia /usr/lib /usr/lib64 /opt -maxdepth 4 -name 'libGLX_nvidia.so*' 2>/dev/null | head -1)
            [ -n "$so" ] && nvdir=$(dirname "$so")
        fi
        echo "[gd] libGLX_nvidia: ${so:-NOT FOUND} ${nvdir:+(dir $nvdir, added to LD_LIBRARY_PATH)}"
    fi
    ls /usr/local/nvidia/lib64/libGLX* /usr/local/nvidia/lib64/libEGL* /usr/local/nvidia/lib64/libnvidia-gl* 2>/dev/null | sed 's/^/[gd]   /'

    export LD_LIBRARY_PATH="$lib:$pfx/lib/x86_64-linux-gnu${nvdir:+:$nvdir}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
    export LIBGL_DRIVERS_PATH="$lib/dri"
    # ctypes.util.find_library ignores LD_LIBRARY_PATH (vispy finds fontconfig with it): a
    # sitecustomize beside PyQt6 lets it look there too
    cat > "$qts/sitecustomize.py" <<'PY'
import ctypes.util, glob, os
_find = ctypes.util.find_library
def _find_library(name):
    for d in os.environ.get("LD_LIBRARY_PATH", "").split(":"):
        hits = sorted(glob.glob(os.path.join(d, f"lib{name}.so.*"))) if d else []
        if hits:
            return hits[0]
    return _find(name)
ctypes.util.find_library = _find_library
PY
    export PYTHONPATH="$qts${PYTHONPATH:+:$PYTHONPATH}"
    export QT_QPA_PLATFORM=xcb
    export VISPY_GL_LIB=libGL.so.1
    export XLOCALEDIR="$pfx/usr/share/X11/locale" XKB_CONFIG_ROOT="$pfx/usr/share/X11/xkb"
    mkdir -p "$pfx/etc/fonts" /tmp/gd-fontcache
    cat > "$pfx/etc/fonts/gd-fonts.conf" <<EOF
<?xml version="1.0"?><!DOCTYPE fontconfig SYSTEM "urn:fontconfig:fonts.dtd">
<fontconfig><dir>$pfx/usr/share/fonts</dir><cachedir>/tmp/gd-fontcache</cachedir>
<alias><family>sans-serif</family><prefer><family>DejaVu Sans</family></prefer></alias>
<alias><family>serif</family><prefer><family>DejaVu Sans</family></prefer></alias>
<alias><family>monospace</family><prefer><family>DejaVu Sans Mono</family></prefer></alias></fontconfig>
EOF
    export FONTCONFIG_PATH="$pfx/etc/fonts" FONTCONFIG_FILE="$pfx/etc/fonts/gd-fonts.conf"
    if [ -n "${GD_GLX_VENDOR+x}" ]; then
        if [ -n "$GD_GLX_VENDOR" ]; then export __GLX_VENDOR_LIBRARY_NAME=$GD_GLX_VENDOR; else unset __GLX_VENDOR_LIBRARY_NAME; fi
    elif [ -n "$so" ]; then
        export __GLX_VENDOR_LIBRARY_NAME=nvidia
    else
        echo "[gd] WARNING no NVIDIA GLX library: clients will use Mesa softpipe (CPU)"
        unset __GLX_VENDOR_LIBRARY_NAME
    fi
    if [ -f /usr/local/nvidia/share/glvnd/egl_vendor.d/10_nvidia.json ] && \
       ! ls /usr/share/glvnd/egl_vendor.d/*nvidia* >/dev/null 2>&1; then
        export __EGL_VENDOR_LIBRARY_FILENAMES=/usr/local/nvidia/share/glvnd/egl_vendor.d/10_nvidia.json
    fi
    if [ -n "$so" ]; then   # are the driver's own dependencies resolvable?
        LD_LIBRARY_PATH=$LD_LIBRARY_PATH ldd "$so" 2>/dev/null | grep -i "not found" | sed 's/^/[gd]   MISSING for libGLX_nvidia: /'
    fi

    # a pruned library the system cannot give after all: put the bundle's copy back
    for f in "$pfx/usr/bin/Xvfb" "$pfx/usr/bin/xkbcomp" "$lib/dri/swrast_dri.so" \
             "$qts/PyQt6/QtWidgets.abi3.so" "$qts/PyQt6/Qt6/plugins/platforms/libqxcb.so" \
             "$qts"/PyQt6/Qt6/plugins/xcbglintegrations/*.so; do
        for n in $(ldd "$f" 2>/dev/null | awk '/not found/ {print $1}'); do
            [ -e "$pfx/pruned/$n" ] && mv -f "$pfx/pruned/$n"* "$pfx/lib/x86_64-linux-gnu/" && echo "[gd] restored $n"
        done
    done
    # unresolved dependencies of the key binaries (empty = fine)
    for f in "$pfx/usr/bin/Xvfb" "$pfx/usr/bin/xkbcomp" "$lib/dri/swrast_dri.so" "$lib/libGLX_mesa.so.0" \
             "$qts/PyQt6/QtWidgets.abi3.so" "$qts/PyQt6/QtOpenGLWidgets.abi3.so" "$qts/PyQt6/Qt6/plugins/platforms/libqxcb.so" \
             "$qts"/PyQt6/Qt6/plugins/xcbglintegrations/*.so; do
        ldd "$f" 2>/dev/null | grep "not found" | sed "s|^|[gd]   MISSING for $(basename "$f"): |"
    done

    # --- Xvfb ---
    if [ ! -e /usr/bin/xkbcomp ]; then
        ln -s "$pfx/usr/bin/xkbcomp" /usr/bin/xkbcomp 2>/dev/null \
            && echo "[gd] linked /usr/bin/xkbcomp -> $pfx/usr/bin/xkbcomp" \
            || echo "[gd] WARNING cannot create /usr/bin/xkbcomp: Xvfb keyboard init will fail"
    fi
    export DISPLAY=${GD_DISPLAY:-:99}
    n=${DISPLAY#:}; n=${n%%.*}
    if [ -n "${GD_XVFB_PID:-}" ] && kill -0 "$GD_XVFB_PID" 2>/dev/null; then
        echo "[gd] Xvfb already running (pid $GD_XVFB_PID)"
    else
        if [ -e "/tmp/.X$n-lock" ]; then
            echo "[gd] WARNING /tmp/.X$n-lock exists (pid $(cat /tmp/.X$n-lock 2>/dev/null | tr -d ' ')); set GD_DISPLAY to another :N if Xvfb fails"
        fi
        # the server's own GLX must use Mesa (swrast from the prefix), not the client vendor override
        env -u __GLX_VENDOR_LIBRARY_NAME "$pfx/usr/bin/Xvfb" "$DISPLAY" -screen 0 1920x1080x24 +extension GLX \
            -nolisten tcp -noreset -xkbdir "$pfx/usr/share/X11/xkb" > /tmp/gd-xvfb.log 2>&1 &
        GD_XVFB_PID=$!
        export GD_XVFB_PID
        for _ in $(seq 1 50); do
            [ -S "/tmp/.X11-unix/X$n" ] && break
            kill -0 "$GD_XVFB_PID" 2>/dev/null || break
            sleep 0.2
        done
    fi
    if ! kill -0 "$GD_XVFB_PID" 2>/dev/null || [ ! -S "/tmp/.X11-unix/X$n" ]; then
        echo "[gd] ERROR Xvfb is not up; /tmp/gd-xvfb.log:"; tail -20 /tmp/gd-xvfb.log
        return 1
    fi
    echo "[gd] Xvfb up: pid $GD_XVFB_PID exe $(readlink "/proc/$GD_XVFB_PID/exe") on $DISPLAY"
    grep -i -E "glx|error|dri" /tmp/gd-xvfb.log | head -5 | sed 's/^/[gd]   xvfb: /'
    echo "[gd] env: __GLX_VENDOR_LIBRARY_NAME=${__GLX_VENDOR_LIBRARY_NAME:-<unset>} QT_QPA_PLATFORM=$QT_QPA_PLATFORM"
    echo "[gd] LD_LIBRARY_PATH=$LD_LIBRARY_PATH"
    if [ "${GD_NO_CHECK:-0}" != 1 ]; then
        "${GD_PYTHON:-python3}" "$here/check_canvas.py" || { echo "[gd] python GL check FAILED"; return 1; }
    fi
    GD_OK=1
    return 0
}
_gd_setup
