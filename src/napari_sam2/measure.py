"""Exports of propagated labels: tracks, a per-object-per-frame table, TIFF and zarr files.

Everything here reads a (T, H, W) labels array one frame at a time (numpy, dask or zarr, of
any length) with scikit-image; nothing imports napari. The napari adapters turn the results
into layers (``tracks`` is the data of a Tracks layer) and files.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from .engine.errors import SAM2Error
from .engine.frames import read_frame
from .files import check_export_path

_PROPERTY_NAMES = {
    "label": "label",
    "area": "area",
    "centroid-0": "centroid_row",
    "centroid-1": "centroid_col",
    "bbox-0": "bbox_min_row",
    "bbox-1": "bbox_min_col",
    "bbox-2": "bbox_max_row",
    "bbox-3": "bbox_max_col",
    "intensity_mean": "mean_intensity",
}


def _frames(labels, frame_axis: int) -> Iterator[tuple[int, np.ndarray]]:
    if labels.ndim != 3:
        raise SAM2Error(f"Expected (frames, rows, cols) labels, got shape {labels.shape}.")
    for t in range(labels.shape[frame_axis]):
        yield t, read_frame(labels, t, frame_axis)


def measure_table(
    labels, image=None, frame_axis: int = 0, channel_axis: int | None = None
) -> dict[str, np.ndarray]:
    """One row per object per frame: frame, label, area, centroid, bbox, mean intensity.

    ``image`` (optional) is the stack the labels were made on, with the same frame axis;
    ``channel_axis`` names its channel axis, if any (RGB images give one mean per channel,
    ``mean_intensity_0`` …). Coordinates are in pixels, (row, col) like napari's.
    """
    from skimage.measure import regionprops_table

    properties = ["label", "area", "centroid", "bbox"]
    if image is not None:
        properties.append("intensity_mean")
        if image.shape[frame_axis] != labels.shape[frame_axis]:
            raise SAM2Error(
                f"The image has {image.shape[frame_axis]} frames but the labels "
                f"{labels.shape[frame_axis]}: measure the image the labels were made on."
            )
    columns: dict[str, list] = {}
    for t, plane in _frames(labels, frame_axis):
        if not plane.any():
            continue
        intensity = None
        if image is not None:
            intensity = read_frame(image, t, frame_axis)
            if channel_axis is not None:
                axis = channel_axis % image.ndim
                axis -= axis > frame_axis % image.ndim
                intensity = np.moveaxis(intensity, axis, -1)
            if intensity.shape[:2] != plane.shape:
                raise SAM2Error(
                    f"Image frames {intensity.shape[:2]} and label frames {plane.shape} differ."
                )
        table = regionprops_table(
            plane.astype(np.int64, copy=False), intensity_image=intensity, properties=properties
        )
        table["frame"] = np.full(len(table["label"]), t)
        for name, values in table.items():
            columns.setdefault(name, []).append(np.asarray(values))
    if not columns:
        return {name: np.array([]) for name in ["frame", *_readable(properties)]}
    out = {"frame": np.concatenate(columns.pop("frame"))}
    for name, parts in columns.items():
        out[_rename(name)] = np.concatenate(parts)
    return out


def _rename(name: str) -> str:
    if name in _PROPERTY_NAMES:
        return _PROPERTY_NAMES[name]
    if name.startswith("intensity_mean-"):
        return "mean_intensity_" + name.split("-", 1)[1]
    return name


def _readable(properties: list[str]) -> list[str]:
    expanded = {"centroid": ["centroid-0", "centroid-1"], "bbox": [f"bbox-{i}" for i in range(4)]}
    return [_rename(n) for p in properties for n in expanded.get(p, [p])]


def tracks(labels, frame_axis: int = 0) -> np.ndarray:
    """napari Tracks data: rows (track_id, t, y, x), one per object per frame it appears in.

    The track id is the label id, so an object that leaves and comes back stays one track.
    """
    table = measure_table(labels, frame_axis=frame_axis)
    data = np.column_stack(
        [table["label"], table["frame"], table["centroid_row"], table["centroid_col"]]
    ).astype(float)
    if len(data) == 0:
        return np.zeros((0, 4))
    return data[np.lexsort((data[:, 1], data[:, 0]))]


def add_tracking_columns(
    table: dict[str, np.ndarray],
    confidence: dict[int, np.ndarray] | None = None,
    parents: dict[int, int] | None = None,
) -> dict[str, np.ndarray]:
    """``table`` with each row's tracking ``confidence`` (NaN where not computed) and its
    object's ``parent`` id (0: none), as a propagation knows them."""
    frames, labels = table["frame"].astype(int), table["label"].astype(int)
    out = dict(table)
    if confidence is not None:
        out["confidence"] = np.array(
            [
                confidence[k][t] if k in confidence and t < len(confidence[k]) else np.nan
                for t, k in zip(frames, labels, strict=True)
            ],
            dtype=float,
        )
    if parents is not None:
        out["parent"] = np.array([parents.get(k, 0) for k in labels], dtype=int)
    return out


def save_table_csv(table: dict[str, np.ndarray], path: str | Path) -> Path:
    """Write a ``measure_table`` result as CSV (header row, one row per object per frame)."""
    path = Path(path)
    names = list(table)
    rows = zip(*(table[n].tolist() for n in names), strict=True)
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(names)
        writer.writerows(rows)
    return path


def smallest_label_dtype(labels) -> np.dtype:
    """The smallest unsigned integer type that holds every id of ``labels`` (read frame by
    frame, so lazy stacks are never loaded whole); signed when ids are negative."""
    count = labels.shape[0]
    frames = [labels] if labels.ndim < 3 else (read_frame(labels, t, 0) for t in range(count))
    low, high = 0, 0
    for plane in frames:
        plane = np.asarray(plane)
        if plane.size:
            low, high = min(low, int(plane.min())), max(high, int(plane.max()))
    if low < 0:
        return np.result_type(np.min_scalar_type(low), np.min_scalar_type(high))
    return np.min_scalar_type(high) if high > 0 else np.dtype(np.uint8)


def save_labels(labels, path: str | Path) -> Path:
    """Save 2D to 4D labels as compressed TIFF (``.tif``/``.tiff``) or zarr (``.zarr``).

    The file holds the smallest integer type that fits the ids (a stack of a few objects is a
    few MB, not an int32 copy). Frames (the first axis of a stack) are streamed, so a zarr- or
    dask-backed stack larger than memory can be saved.
    """
    path = check_export_path(path, (".tif", ".tiff", ".zarr"))
    if not 2 <= labels.ndim <= 4:
        raise SAM2Error(f"Expected 2D to 4D labels, got shape {labels.shape}.")
    dtype = smallest_label_dtype(labels)
    shape = tuple(labels.shape)
    if labels.ndim == 2:
        frames = iter([np.asarray(labels, dtype=dtype)])
    else:
        frames = (read_frame(labels, t, 0).astype(dtype) for t in range(shape[0]))
    if path.suffix.lower() == ".zarr":
        import zarr

        chunks = shape if labels.ndim == 2 else (1, *shape[1:])
        out = zarr.open_array(str(path), mode="w", shape=shape, chunks=chunks, dtype=dtype)
        if labels.ndim == 2:
            out[:] = next(frames)
        for t, plane in enumerate(frames):
            out[t] = plane
    else:
        import tifffile

        # One compressed page per plane; the first page's description gives the series shape.
        metadata = {"axes": {2: "YX", 3: "TYX", 4: "TZYX"}[labels.ndim], "shape": shape}
        with tifffile.TiffWriter(path) as tif:
            for frame in frames:
                for page in frame.reshape(-1, *shape[-2:]):
                    tif.write(page, compression="zlib", metadata=metadata)
                    metadata = None
    return path
