"""Screenshots of the real widget for docs/, taken with the packaged micro model.

Run from the repository root under a display (or ``xvfb-run -a``):
``.venv/bin/python tools/docs_screenshots.py`` writes docs/images/{click,objects,timelapse,
propagation,confidence,objects-panel,everything,correction,large-image}.png; correction.png and
large-image.png need the real nuclei stack in ../shared/data/real-nuclei-3d (beside the
repository).
"""

from pathlib import Path

import numpy as np

from napari_sam2.demo import cell_centres, open_viewer_with_widget, wait_until
from napari_sam2.engine.synthetic import synthetic_clip
from napari_sam2.sample_data import TIMELAPSE, cells, timelapse

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "docs" / "images"
REAL = ROOT.parent / "shared" / "data" / "real-nuclei-3d"


def shoot(viewer, name: str) -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    viewer.screenshot(str(OUT / name), canvas_only=False)
    print("wrote", OUT / name)


def settle(widget) -> None:
    wait_until(lambda: not widget._busy and widget.session.request() is None, 120)


def click_and_box() -> None:
    viewer, widget = open_viewer_with_widget(cells()[0][0], name="synthetic cells")
    session = widget.session
    first, second, third = cell_centres(3)
    session.points_layer.add([first])
    settle(widget)
    shoot(viewer, "click.png")
    session.new_object()
    session.points_layer.add([second])
    settle(widget)
    session.new_object()
    row, col = third
    session.shapes_layer.add_rectangles([[row - 35, col - 35], [row + 35, col + 35]])
    settle(widget)
    viewer.layers.selection.active = session.points_layer
    shoot(viewer, "objects.png")
    viewer.close()


def timelapse_plane() -> None:
    frames = timelapse()[0][0]
    viewer, widget = open_viewer_with_widget(frames, name="synthetic time-lapse")
    viewer.dims.set_current_step(0, 10)
    _, truth = synthetic_clip(**TIMELAPSE)
    row, col = np.argwhere(truth[10] == 2).mean(axis=0)
    widget.session.points_layer.add([[10, row, col]])
    settle(widget)
    shoot(viewer, "timelapse.png")
    viewer.close()


def propagation() -> None:
    frames = timelapse()[0][0]
    viewer, widget = open_viewer_with_widget(frames, name="synthetic time-lapse")
    _, truth = synthetic_clip(**TIMELAPSE)
    for cell in (1, 2):
        if cell > 1:
            widget.session.new_object()
        row, col = np.argwhere(truth[0] == cell).mean(axis=0)
        widget.session.points_layer.add([[0, row, col]])
        settle(widget)
    widget.tabs.setCurrentIndex(0)
    widget.propagation.propagate()
    wait_until(lambda: widget.propagation.worker is None, 1200)
    widget.export.add_tracks()
    viewer.dims.set_current_step(0, 22)
    shoot(viewer, "propagation.png")
    # Where tracking is doubtful: cell 1 leaves the field on frames 12-14.
    viewer.dims.set_current_step(0, 0)
    widget.propagation.next_doubtful()
    shoot(viewer, "confidence.png")
    widget.session.names.update({1: "leaves and returns", 2: "stays"})
    widget.tabs.setCurrentWidget(widget.objects.native)
    shoot(viewer, "objects-panel.png")
    viewer.close()


def everything() -> None:
    viewer, widget = open_viewer_with_widget(cells()[0][0], name="synthetic cells")
    widget.tabs.setCurrentIndex(2)
    widget.automatic.run_button.native.click()
    wait_until(lambda: widget.automatic.worker is None, 600)
    viewer.layers.selection.active = widget.session.labels_layer
    shoot(viewer, "everything.png")
    viewer.close()


def correction() -> None:
    """Real nuclei, packaged micro model: two objects clicked, then each corrected after the
    fact by picking it again (as Ctrl-click does) — a negative click cuts the neighbour off
    object 1, a second positive click completes object 2."""
    import tifffile

    z = 33
    stack = tifffile.imread(REAL / "nuclei.tif")
    truth = tifffile.imread(REAL / "nuclei_label.tif")[z]
    # (nucleus, its deepest pixel, the correcting click, its polarity), measured beforehand
    objects = [(8, (69, 108), (96, 161), False), (2, (138, 31), (133, 65), True)]
    viewer, widget = open_viewer_with_widget(stack, name="real nuclei (confocal)")
    session, labels = widget.session, widget.session.labels_layer
    viewer.dims.set_current_step(0, z)

    def iou(object_id: int, nucleus: int) -> float:
        mine, true = labels.data[z] == object_id, truth == nucleus
        return (mine & true).sum() / (mine | true).sum()

    for object_id, (_, click, _, _) in enumerate(objects, start=1):
        session.set_object(object_id)
        session.points_layer.add([[z, *click]])
        settle(widget)
    before = [iou(n, nucleus) for n, (nucleus, *_) in enumerate(objects, start=1)]
    for _, click, fix, positive in objects:
        session.pick_object(labels.data_to_world([z, *click]))
        session.set_positive(positive)
        session.points_layer.add([[z, *fix]])
        settle(widget)
    for n, (nucleus, *_) in enumerate(objects, start=1):
        print(f"object {n} (nucleus {nucleus}): IoU {before[n - 1]:.2f} -> {iou(n, nucleus):.2f}")
    session.pick_object(labels.data_to_world([z, *objects[0][1]]))
    viewer.window.resize(1900, 1000)
    viewer.reset_view()
    shoot(viewer, "correction.png")
    viewer.close()


def large_image() -> None:
    """A 4096² mosaic of real nuclei slices: zoomed in on a few nuclei, a click is segmented
    at native resolution, and the widget says so."""
    import tifffile
    from scipy import ndimage

    from napari_sam2.engine.mosaic import make_mosaic

    stack = tifffile.imread(REAL / "nuclei.tif")[28:38]
    truth = tifffile.imread(REAL / "nuclei_label.tif")[28:38]
    mosaic = make_mosaic(stack, truth, 16, seed=1)
    viewer, widget = open_viewer_with_widget(mosaic.image, name="real nuclei, 4096² mosaic")
    labels = mosaic.tile_labels(7, 8)
    r0, c0 = mosaic.origin(7, 8)
    viewer.camera.center, viewer.camera.zoom = (r0 + 128, c0 + 128), 2.5
    wait_until(lambda: False, 1)  # let the canvas draw, so the view is known
    inside = [
        k
        for k in np.unique(labels[1:-1, 1:-1])  # nuclei the tile's border does not cut
        if k
        and not np.isin(k, np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))
    ]
    for n, nucleus in enumerate(inside[:4]):
        if n:
            widget.session.new_object()
        depth = ndimage.distance_transform_edt(labels == nucleus)
        row, col = np.unravel_index(depth.argmax(), depth.shape)
        widget.session.points_layer.add([[r0 + row, c0 + col]])
        settle(widget)
    print("status:", widget.status.value)
    shoot(viewer, "large-image.png")
    viewer.close()


if __name__ == "__main__":
    large_image()
    correction()
    click_and_box()
    timelapse_plane()
    propagation()
    everything()
