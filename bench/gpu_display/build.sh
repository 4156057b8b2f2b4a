#!/bin/bash
# Rebuilds xroot.tar.xz and qt.tar.xz of .gpu_display on a Debian 12 (bookworm) amd64
# machine with apt + pip + gcc (run as root: it apt-installs meson/bison/flex/python3-mako/
# libdrm-dev/libexpat1-dev/icu-devtools for the Mesa build and ICU trimming).
# Work dir: $W (default /tmp/gd); outputs into the directory of this script.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
W=${W:-/tmp/gd}; mkdir -p "$W"; cd "$W"
PY=${PY:-python3}

# ---------- 1. X / GL / xcb runtime from Debian bookworm .debs ----------
PKGS="xvfb libxfont2 libpixman-1-0 libxkbfile1 x11-xkb-utils xkb-data libxshmfence1 libunwind8
 libgl1 libglx0 libglvnd0 libegl1 libopengl0 libgles2 libglx-mesa0 libglapi-mesa libdrm2
 libxcb-dri2-0 libxcb-dri3-0 libxcb-present0 libxxf86vm1 libxfixes3 libxau6 libxdmcp6 libbsd0
 libfontenc1 libfreetype6 libpng16-16 libbrotli1 libxkbcommon0 libxkbcommon-x11-0 libxcb1
 libxcb-icccm4 libxcb-image0 libxcb-keysyms1 libxcb-randr0 libxcb-render0 libxcb-render-util0
 libxcb-xinerama0 libxcb-xfixes0 libxcb-shape0 libxcb-shm0 libxcb-sync1 libxcb-xkb1 libxcb-cursor0
 libxcb-util1 libxcb-glx0 libx11-6 libx11-data libx11-xcb1 libxext6 libxrender1 libsm6 libice6
 libdbus-1-3 libfontconfig1 fontconfig-config fonts-dejavu-core libglib2.0-0"
mkdir -p debs; (cd debs && ls *.deb >/dev/null 2>&1 || apt-get -oAPT::Architecture=amd64 download $PKGS)
rm -rf root; mkdir root
for f in debs/*.deb; do dpkg -x "$f" root; done
(cd debs && for f in *.deb; do dpkg-deb -f "$f" Package Version | paste -sd' '; done) > "$HERE/MANIFEST-debs.txt"
# trim: docs, translations, unused binaries/libs, extra fonts and X locales
cd root
rm -rf usr/share/doc usr/share/man usr/share/locale usr/share/lintian usr/share/bug usr/share/bash-completion
rm -rf usr/lib/x86_64-linux-gnu/gio usr/lib/x86_64-linux-gnu/glib-2.0 usr/lib/x86_64-linux-gnu/libgio-2.0* \
       usr/lib/x86_64-linux-gnu/libgobject-2.0* usr/lib/x86_64-linux-gnu/libgmodule-2.0* \
       usr/lib/x86_64-linux-gnu/libunwind-coredump* usr/lib/x86_64-linux-gnu/libunwind-ptrace* \
       usr/lib/x86_64-linux-gnu/libbrotlienc*
(cd usr/bin && rm -f setxkbmap xkbbell xkbevd xkbprint xkbvleds xkbwatch)
(cd usr/share/fonts/truetype/dejavu && ls | grep -vxE 'DejaVuSans.ttf|DejaVuSans-Bold.ttf|DejaVuSansMono.ttf' | xargs rm -f)
(cd usr/share/X11/locale && ls | grep -vxE 'C|en_US.UTF-8|locale.alias|locale.dir|compose.dir' | xargs rm -rf)
cd "$W"

# ---------- 2. Mesa 22.3.6 swrast_dri.so WITHOUT LLVM (softpipe) ----------
# Debian's libgl1-mesa-dri needs libLLVM-15 + libz3 (~37 MB of debs); Xvfb only needs a DRI
# driver to initialise its GLX extension, so build a softpipe-only one (~3.3 MB xz).
if [ ! -f mesa-build/swrast_dri.so ]; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends meson bison flex \
      python3-mako libdrm-dev libexpat1-dev zlib1g-dev pkg-config ninja-build g++
  mkdir -p srclists/partial src
  echo "deb-src [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian bookworm main" > src.list
  o="-oDir::Etc::SourceList=$W/src.list -oDir::Etc::SourceParts=/dev/null -oDir::State::Lists=$W/srclists"
  apt-get $o update; (cd src && apt-get $o source --download-only mesa && tar xzf mesa_22.3.6.orig.tar.gz)
  (cd src/mesa-22.3.6 && export PATH=/usr/bin:/bin && meson setup build -Dbuildtype=release -Db_ndebug=true \
    -Dplatforms= -Ddri3=disabled -Dglx=disabled -Degl=enabled -Dgbm=disabled -Dgallium-drivers=swrast \
    -Dvulkan-drivers= -Dllvm=disabled -Dshared-glapi=enabled -Dgles1=disabled -Dgles2=enabled \
    -Dvalgrind=disabled -Dlibunwind=disabled -Dlmsensors=disabled -Dzstd=disabled -Dgallium-vdpau=disabled \
    -Dgallium-va=disabled -Dgallium-xa=disabled -Dgallium-omx=disabled -Dgallium-nine=false \
    -Dgallium-opencl=disabled -Dbuild-tests=false -Dglvnd=false -Dosmesa=false && ninja -C build)
  mkdir -p mesa-build; cp src/mesa-22.3.6/build/src/gallium/targets/dri/swrast_dri.so mesa-build/
fi
mkdir -p root/usr/lib/x86_64-linux-gnu/dri
cp mesa-build/swrast_dri.so root/usr/lib/x86_64-linux-gnu/dri/swrast_dri.so
strip --strip-unneeded root/usr/lib/x86_64-linux-gnu/dri/swrast_dri.so
# unversioned names: PyOpenGL tries libGLX.so/libGL.so first; keeps it on the bundle's glvnd
(cd root/usr/lib/x86_64-linux-gnu && for l in GL GLX OpenGL EGL GLESv2; do ln -sf lib$l.so.[0-9] lib$l.so; done)
tar -C root --owner=0 --group=0 -cf - . | xz -9e -T2 > "$HERE/xroot.tar.xz"

# ---------- 3. trimmed PyQt6 (6.11.0 / Qt 6.11.2 / sip 13.13.0, cp312 + cp311 sip) ----------
mkdir -p wheels; cd wheels
P="$PY -m pip download -q --no-deps --only-binary=:all:"
ls pyqt6-6.11.0-*.whl >/dev/null 2>&1 || $P --python-version 3.12 --platform manylinux_2_34_x86_64 PyQt6==6.11.0 PyQt6-Qt6==6.11.2
for v in 3.12 3.11; do ls pyqt6_sip-13.13.0-cp${v/./}-*.whl >/dev/null 2>&1 || \
  $P --python-version $v --platform manylinux1_x86_64 --platform manylinux_2_5_x86_64 PyQt6-sip==13.13.0; done
cd "$W"; rm -rf full qtstage; mkdir full qtstage
(cd full && for w in ../wheels/*.whl; do unzip -q -o "$w"; done)
S=qtstage/PyQt6; Q=full/PyQt6/Qt6; mkdir -p $S/Qt6/lib $S/Qt6/plugins/{platforms,imageformats,iconengines,platforminputcontexts}
cp full/PyQt6/{__init__.py,py.typed,sip.cpython-31[12]-x86_64-linux-gnu.so} $S/
cp -r full/pyqt6-6.11.0.dist-info full/pyqt6_qt6-6.11.2.dist-info full/pyqt6_sip-13.13.0.dist-info qtstage/
for m in QtCore QtGui QtWidgets QtOpenGL QtOpenGLWidgets QtSvg QtSvgWidgets QtDBus QtTest; do cp full/PyQt6/$m.abi3.so $S/; done
for l in Core Gui Widgets OpenGL OpenGLWidgets Svg SvgWidgets DBus Test XcbQpa; do cp $Q/lib/libQt6$l.so.6 $S/Qt6/lib/; done
cp $Q/lib/libicuuc.so.73 $Q/lib/libicui18n.so.73 $S/Qt6/lib/
cp $Q/plugins/platforms/{libqxcb.so,libqoffscreen.so,libqminimal.so} $S/Qt6/plugins/platforms/
cp -r $Q/plugins/xcbglintegrations $S/Qt6/plugins/
cp $Q/plugins/imageformats/{libqsvg.so,libqgif.so,libqico.so,libqjpeg.so} $S/Qt6/plugins/imageformats/
cp $Q/plugins/iconengines/libqsvgicon.so $S/Qt6/plugins/iconengines/
cp $Q/plugins/platforminputcontexts/libcomposeplatforminputcontextplugin.so $S/Qt6/plugins/platforminputcontexts/
# ICU 73 data (31 MB): keep only converters' aliases, root/en locale, collation root+en, tz data
command -v icupkg >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends icu-devtools
rm -rf icu; mkdir -p icu/t; L=$Q/lib/libicudata.so.73
read -r off size < <(readelf -Ws --dyn-syms $L | awk '$8=="icudt73_dat"{print $2, $3; exit}' | python3 -c 'import sys; a,b=sys.stdin.read().split(); print(int(a,16), int(b,0))')
# (symbol value == file offset here: .rodata is mapped at offset == address)
dd if=$L of=icu/icudt73l.dat bs=1M skip=$off count=$size iflag=skip_bytes,count_bytes status=none
icupkg -l icu/icudt73l.dat | python3 -c '
import re,sys
keep={"root.res","res_index.res","pool.res","en.res","en_US.res","en_001.res","en_GB.res"}
loc=re.compile(r"^[a-z]{2,3}(_[A-Za-z0-9_]*)?\.res$")
for p in sys.stdin.read().split():
    parts=p.split("/"); n=parts[-1]
    if len(parts)==1: drop=n.endswith(".cnv") or n=="unames.icu" or (loc.match(n) and n not in keep)
    elif parts[0] in ("coll","zone"): drop=bool(loc.match(n)) and n not in keep
    else: drop=True
    if drop: print(p)' > icu/remove.txt
icupkg -r icu/remove.txt icu/icudt73l.dat icu/t/icudt73l.dat   # output MUST be named icudt73l.dat
printf '.section .rodata\n.globl icudt73_dat\n.type icudt73_dat,@object\n.balign 16\nicudt73_dat:\n.incbin "%s"\n.size icudt73_dat,.-icudt73_dat\n.section .note.GNU-stack,"",@progbits\n' "$W/icu/t/icudt73l.dat" > icu/icudata.S
gcc -shared -nostdlib -Wl,-soname,libicudata.so.73 -o $S/Qt6/lib/libicudata.so.73 icu/icudata.S
find qtstage -name '*.so*' -type f -exec strip --strip-unneeded {} +
tar -C qtstage --owner=0 --group=0 -cf - . | xz -9e -T2 > "$HERE/qt.tar.xz"
ls -la "$HERE"
