"""napari on a machine without a display stack (bench/run_gpu.sh, part napari).

Python runs this at start-up when the folder is on PYTHONPATH. napari imports vispy for its
colormaps, and vispy loads libfontconfig and libGL on import although it calls them only to
draw text and scenes, which a ``ViewerModel`` never does. The GPU machine has neither: font
lookup is stubbed and any loadable library stands in for libGL.
"""

import ctypes.util
import os
import sys
import types

if ctypes.util.find_library("fontconfig") is None:
    stub = types.ModuleType("vispy.ext.fontconfig")

    def find_font(*args, **kwargs):
        raise RuntimeError("no fontconfig on this machine")

    stub.find_font = find_font
    stub._list_fonts = list
    sys.modules["vispy.ext.fontconfig"] = stub

if ctypes.util.find_library("GL") is None:
    os.environ.setdefault("VISPY_GL_LIB", "libm.so.6")
