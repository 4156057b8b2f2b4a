"""Prints where Qt/GL came from and what GL_VENDOR/GL_RENDERER a Qt OpenGL widget gets.

usage: python3 check_canvas.py [--napari SHOT.png]
  Qt check: a QOpenGLWidget clears to (0.2, 0.6, 0.4); its framebuffer pixel is read back.
  --napari: also napari.Viewer(show=True) with an image + labels layer, screenshot of the
            canvas to SHOT.png, and the renderer string of napari's vispy canvas.
Exit code 0 only if every requested check passed.
"""

import ctypes
import os
import sys


def mapped_libs():
    keys = (
        "libGL",
        "libEGL",
        "libGLX",
        "libGLdispatch",
        "nvidia",
        "_dri",
        "libQt6Core",
        "libQt6Gui",
        "libqxcb",
        "xcb-glx-integration",
        "libxcb.so",
        "libX11.so",
        "libicudata",
    )
    out = set()
    with open("/proc/self/maps") as f:
        for line in f:
            p = line.split()[-1]
            if p.startswith("/") and any(k in os.path.basename(p) for k in keys):
                out.add(os.path.realpath(p))
    return sorted(out)


def qt_check():
    import PyQt6
    from PyQt6 import QtCore, QtWidgets
    from PyQt6.QtOpenGLWidgets import QOpenGLWidget

    print("PyQt6 from :", PyQt6.__file__, "| Qt", QtCore.QT_VERSION_STR)
    app = QtWidgets.QApplication.instance() or QtWidgets.QApplication(sys.argv[:1])
    print("QPA        :", app.platformName(), "| DISPLAY", os.environ.get("DISPLAY"))
    gl = ctypes.CDLL("libGL.so.1")
    gl.glGetString.restype = ctypes.c_char_p
    gl.glClearColor.argtypes = [ctypes.c_float] * 4
    res = {}

    class W(QOpenGLWidget):
        def initializeGL(self):
            for n, k in (("GL_VENDOR", 0x1F00), ("GL_RENDERER", 0x1F01), ("GL_VERSION", 0x1F02)):
                v = gl.glGetString(k)
                res[n] = v.decode(errors="replace") if v else None

        def paintGL(self):
            gl.glClearColor(0.2, 0.6, 0.4, 1.0)
            gl.glClear(0x4000)

    w = W()
    w.resize(128, 96)
    w.show()
    QtCore.QTimer.singleShot(1500, app.quit)
    app.exec()
    img = w.grabFramebuffer()
    px = img.pixelColor(10, 10)
    rgb = (px.red(), px.green(), px.blue())
    for k in ("GL_VENDOR", "GL_RENDERER", "GL_VERSION"):
        print(f"{k:11}:", res.get(k))
    ok = bool(res.get("GL_RENDERER")) and abs(rgb[0] - 51) < 4 and abs(rgb[1] - 153) < 4
    print("QOpenGLWidget pixel", rgb, "(expect ~(51,153,102)) ->", "OK" if ok else "FAIL")
    w.close()
    return ok


def napari_check(shot):
    import napari
    import numpy as np
    from vispy.gloo import gl

    v = napari.Viewer(show=True)
    yy, xx = np.mgrid[0:256, 0:256]
    v.add_image(np.sin(xx / 20.0) * np.cos(yy / 30.0), colormap="viridis", name="img")
    lab = np.zeros((256, 256), dtype=np.int32)
    lab[40:120, 40:120] = 1
    lab[150:220, 100:230] = 2
    v.add_labels(lab, name="labels")
    canvas = v.window._qt_viewer.canvas._scene_canvas
    canvas.set_current()
    print("napari canvas GL_RENDERER:", gl.glGetParameter(gl.GL_RENDERER))
    print("napari canvas GL_VERSION :", gl.glGetParameter(gl.GL_VERSION))
    arr = v.screenshot(shot, canvas_only=True, flash=False)
    v.close()
    mean, nonblack = float(arr[..., :3].mean()), float((arr[..., :3].max(-1) > 10).mean())
    print(f"screenshot {shot}: shape {arr.shape}, mean {mean:.1f}, non-black {nonblack:.2f}")
    return nonblack > 0.5


if __name__ == "__main__":
    ok = qt_check()
    if "--napari" in sys.argv:
        ok = napari_check(sys.argv[sys.argv.index("--napari") + 1]) and ok
    print("GL/Qt libraries mapped in this process:")
    for p in mapped_libs():
        print("   ", p)
    print("CHECK", "PASSED" if ok else "FAILED")
    sys.exit(0 if ok else 1)
