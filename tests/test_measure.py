"""Exports: tracks, the per-object-per-frame table (CSV), labels as TIFF and zarr."""

import csv

import numpy as np
import pytest

from napari_sam2 import SAM2Error
from napari_sam2.measure import measure_table, save_labels, save_table_csv, tracks


@pytest.fixture
def labels() -> np.ndarray:
    """Object 1 moves right by 2 px a frame and is absent on frame 2; object 5 stays."""
    out = np.zeros((4, 20, 30), np.uint16)
    for t in range(4):
        if t != 2:
            out[t, 2:6, 2 + 2 * t : 6 + 2 * t] = 1  # 4×4 square
        out[t, 10:15, 20:22] = 5  # 5×2 bar
    return out


def test_tracks_follow_centroids_and_keep_ids(labels):
    data = tracks(labels)
    assert data.shape == (7, 4)
    one = data[data[:, 0] == 1]
    assert one[:, 1].tolist() == [0, 1, 3]  # the gap stays a gap, same track id
    assert one[:, 2].tolist() == [3.5] * 3 and one[:, 3].tolist() == [3.5, 5.5, 9.5]
    assert (data[data[:, 0] == 5][:, 2:] == [12.0, 20.5]).all()
    assert tracks(np.zeros((3, 5, 5), np.uint8)).shape == (0, 4)


def test_table_with_intensity_and_csv(labels, tmp_path):
    image = labels.astype(np.float32) * 10 + 1
    table = measure_table(labels, image)
    assert table["frame"].tolist() == [0, 0, 1, 1, 2, 3, 3]
    assert table["label"].tolist() == [1, 5, 1, 5, 5, 1, 5]
    assert table["area"].tolist() == [16, 10, 16, 10, 10, 16, 10]
    assert table["mean_intensity"].tolist() == [11, 51, 11, 51, 51, 11, 51]
    row = {k: v[0] for k, v in table.items()}
    assert (
        row["bbox_min_row"],
        row["bbox_min_col"],
        row["bbox_max_row"],
        row["bbox_max_col"],
    ) == (
        2,
        2,
        6,
        6,
    )
    path = save_table_csv(table, tmp_path / "objects.csv")
    rows = list(csv.DictReader(path.open()))
    assert len(rows) == 7 and rows[0]["frame"] == "0" and float(rows[0]["centroid_col"]) == 3.5
    assert set(rows[0]) >= {"frame", "label", "area", "centroid_row", "mean_intensity"}


def test_table_of_rgb_stack_and_frame_axis(labels):
    rgb = np.stack([labels * 1, labels * 2, labels * 3], axis=-1).astype(np.uint8)
    table = measure_table(labels, rgb, channel_axis=-1)
    assert table["mean_intensity_2"][0] == 3
    moved = measure_table(np.moveaxis(labels, 0, 2), frame_axis=2)
    assert moved["frame"].tolist() == [0, 0, 1, 1, 2, 3, 3]
    with pytest.raises(SAM2Error, match="frames"):
        measure_table(labels, rgb[:2], channel_axis=-1)
    assert measure_table(np.zeros((2, 4, 4), int))["label"].size == 0


def test_labels_saved_as_tiff_and_zarr(labels, tmp_path):
    import tifffile
    import zarr

    assert (tifffile.imread(save_labels(labels, tmp_path / "labels.tif")) == labels).all()
    lazy = zarr.array(labels, chunks=(1, 20, 30))
    saved = zarr.open_array(str(save_labels(lazy, tmp_path / "labels.zarr")), mode="r")
    assert (saved[:] == labels).all() and saved.chunks == (1, 20, 30)
    with pytest.raises(SAM2Error, match=".tif"):
        save_labels(labels, tmp_path / "labels.png")


def test_saved_labels_are_compressed_in_the_smallest_type_for_any_dimensionality(tmp_path):
    import tifffile
    import zarr

    stack = np.zeros((30, 128, 128), np.int32)
    stack[:, 40:80, 30:90] = 3
    stack[5:, 10:20, 10:20] = 300
    path = save_labels(stack, tmp_path / "stack.tif")
    with tifffile.TiffFile(path) as tif:
        assert tif.pages[0].compression.name in ("ADOBE_DEFLATE", "DEFLATE")
        read = tif.asarray()
    assert read.dtype == np.uint16 and (read == stack).all()
    assert path.stat().st_size < stack.nbytes / 50
    plane = stack[0].astype(np.int64)
    assert tifffile.imread(save_labels(plane, tmp_path / "plane.tif")).dtype == np.uint8
    assert (
        zarr.open_array(str(save_labels(plane, tmp_path / "p.zarr")), mode="r")[:] == plane
    ).all()
    volume = np.stack([stack[:4]] * 2)  # (t, z, y, x)
    assert (tifffile.imread(save_labels(volume, tmp_path / "tzyx.tif")) == volume).all()


@pytest.mark.parametrize(
    "name, message", [("", "Choose a file"), ("missing/labels.tif", "does not exist")]
)
def test_export_paths_a_user_can_get_wrong(labels, tmp_path, monkeypatch, name, message):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SAM2Error, match=message):
        save_labels(labels, name)
