"""Reading the batch's inputs and writing its outputs: finding files, images and zarr in,
labels (TIFF, PNG, NPY, zarr) and COCO-style RLE JSON out, each written under a temporary name
and renamed when complete."""

from __future__ import annotations

import glob
import json
import os
import shutil
import uuid
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from ..engine.errors import SAM2Error

IMAGE_SUFFIXES = (".tif", ".tiff", ".png", ".jpg", ".jpeg", ".npy")
ZARR_SUFFIXES = (".zarr",)
FORMATS = ("tif", "png", "npy", "zarr")
_TEMP_PREFIX = ".~napari-sam2-"
# zarr labels are chunked this many pixels a side at most, and written a plane and a row of
# chunks at a time (labels in a memory map are then never all in memory).
_ZARR_CHUNK = 2048


def output_stem(path: Path) -> str:
    """The name a file's outputs take: its name without image suffixes."""
    name = path.name
    for suffix in (".ome.zarr", ".ome.tiff", ".ome.tif", *ZARR_SUFFIXES, *IMAGE_SUFFIXES):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return path.stem


def find_inputs(inputs: Iterable[str | Path]) -> list[Path]:
    """Image files named by paths, folders (their supported files) or glob patterns, sorted."""
    found: list[Path] = []
    for item in inputs:
        item = str(item)
        matches = sorted(glob.glob(item)) if glob.has_magic(item) else [item]
        if not matches:
            raise SAM2Error(f"No file matches {item!r}.")
        for match in map(Path, matches):
            if match.is_dir() and not _is_zarr(match):
                found += sorted(p for p in match.iterdir() if _is_supported(p))
            elif match.exists():
                found.append(match)
            else:
                raise SAM2Error(f"Input {match} does not exist.")
    unique = list(dict.fromkeys(p.resolve() for p in found))
    stems: dict[str, Path] = {}
    for path in unique:
        if output_stem(path) in stems:
            raise SAM2Error(
                f"{stems[output_stem(path)]} and {path} would write the same output name "
                f"{output_stem(path)!r}: batch them into separate output folders."
            )
        stems[output_stem(path)] = path
    return unique


def _is_zarr(path: Path) -> bool:
    return path.name.lower().endswith(ZARR_SUFFIXES)


def _is_supported(path: Path) -> bool:
    return not path.name.startswith(".") and (
        _is_zarr(path) or path.suffix.lower() in IMAGE_SUFFIXES
    )


def read_image(path: str | Path, lazy: bool = False):
    """The array in an image file (numpy) or an (OME-)Zarr store (lazy dask), squeezed.

    ``lazy`` opens a TIFF (over tifffile's zarr store) and an NPY (memory-mapped) as dask
    arrays too, so that reading a tile of it reads only that tile's part of the file.
    """
    path = Path(path)
    try:
        if _is_zarr(path):
            data = _read_zarr(path)
        elif path.suffix.lower() in (".tif", ".tiff"):
            import tifffile

            data = _lazy_tiff(path) if lazy else tifffile.imread(path)
        elif path.suffix.lower() == ".npy":
            data = np.load(path, mmap_mode="r" if lazy else None, allow_pickle=False)
            if lazy:  # as dask, so that it is read (and sampled) like the other lazy arrays
                import dask.array as da

                data = da.from_array(data)
        else:
            import imageio.v3 as iio

            data = iio.imread(path)
    except SAM2Error:
        raise
    except Exception as err:  # readers raise many types for truncated or foreign files
        raise SAM2Error(
            f"Cannot read {path.name}: {type(err).__name__}: {err}. Is the file complete?"
        ) from err
    if data.size == 0 or data.ndim < 2:
        raise SAM2Error(f"Cannot read {path.name}: it holds no image data. Is it truncated?")
    while data.ndim > 2 and data.shape[0] == 1:
        data = data[0]
    return data


def _lazy_tiff(path: Path):
    import dask.array as da
    import tifffile
    import zarr

    node = zarr.open(tifffile.imread(path, aszarr=True), mode="r")
    return da.from_zarr(node if isinstance(node, zarr.Array) else node["0"])


def _read_zarr(path: Path):
    import dask.array as da
    import zarr

    node = zarr.open(str(path), mode="r")
    if isinstance(node, zarr.Array):
        return da.from_zarr(node)
    attrs = dict(node.attrs)
    multiscales = attrs.get("multiscales") or attrs.get("ome", {}).get("multiscales")
    if multiscales:
        return da.from_zarr(node[multiscales[0]["datasets"][0]["path"]])
    arrays = sorted(name for name, _ in node.arrays())
    if not arrays:
        raise SAM2Error(f"The zarr store {path.name} holds no array.")
    return da.from_zarr(node[arrays[0]])


def plane_layout(data) -> tuple[bool, bool]:
    """(is_stack, is_rgb) of an array: (H, W), (H, W, 3|4), (T, H, W) or (T, H, W, 3|4)."""
    rgb = data.ndim in (3, 4) and data.shape[-1] in (3, 4)
    spatial = data.ndim - rgb
    if spatial not in (2, 3):
        raise SAM2Error(
            f"Cannot segment an array of shape {data.shape}: expected (H, W), (H, W, RGB), "
            "(T, H, W) or (T, H, W, RGB)."
        )
    return spatial == 3, rgb


def temporary_path(path: Path) -> Path:
    """A hidden name next to ``path`` to write it under until it is complete."""
    return path.with_name(f"{_TEMP_PREFIX}{uuid.uuid4().hex[:8]}-{path.name}")


def _commit(temporary: Path, path: Path) -> None:
    """Move a finished temporary output to its final name (replacing an older one)."""
    if path.is_dir():
        shutil.rmtree(path)
    os.replace(temporary, path)


def write_labels(labels: np.ndarray, path: str | Path, fmt: str) -> Path:
    """Write labels as TIFF, PNG (2D, ids < 65536), NPY or zarr, atomically."""
    path = Path(path)
    if fmt not in FORMATS:
        raise SAM2Error(f"Unknown output format {fmt!r}: choose one of {', '.join(FORMATS)}.")
    if fmt == "png" and (labels.ndim != 2 or labels.max(initial=0) > 65535):
        raise SAM2Error(
            "PNG holds one 2D plane with ids below 65536: use --format tif for stacks."
        )
    temporary = temporary_path(path)
    try:
        if fmt == "tif":
            import tifffile

            tifffile.imwrite(temporary, labels, compression="zlib")
        elif fmt == "png":
            import imageio.v3 as iio

            iio.imwrite(temporary, labels.astype(np.uint16), extension=".png")
        elif fmt == "npy":
            with open(temporary, "wb") as handle:
                np.save(handle, labels)
        else:
            import zarr

            plane = tuple(min(n, _ZARR_CHUNK) for n in labels.shape[-2:])
            chunks = (1, *plane) if labels.ndim == 3 else plane
            array = zarr.create_array(
                str(temporary), shape=labels.shape, dtype=labels.dtype, chunks=chunks
            )
            for index in np.ndindex(labels.shape[:-2]):
                for row in range(0, labels.shape[-2], plane[0]):
                    band = (*index, slice(row, row + plane[0]))
                    array[band] = labels[band]
        _commit(temporary, path)
    finally:
        if temporary.is_dir():
            shutil.rmtree(temporary, ignore_errors=True)
        elif temporary.exists():
            temporary.unlink()
    return path


def rle_encode(
    mask: np.ndarray, origin: tuple[int, int] = (0, 0), size: tuple[int, int] | None = None
) -> dict:
    """COCO uncompressed RLE of a boolean mask: column-major runs, starting with 0s.

    ``mask`` may be a crop at ``origin`` (row, col) of an image of ``size`` (height, width),
    so that an object of a huge plane is encoded without a plane-sized mask.
    """
    height, width = mask.shape if size is None else size
    cols, rows = np.nonzero(mask.T)  # column-major order, as COCO counts run
    index = (cols.astype(np.int64) + origin[1]) * height + rows + origin[0]
    if index.size == 0:
        return {"size": [height, width], "counts": [height * width]}
    breaks = np.flatnonzero(np.diff(index) != 1) + 1
    starts = index[np.r_[0, breaks]]
    ends = index[np.r_[breaks - 1, index.size - 1]] + 1
    edges = np.column_stack([starts, ends]).ravel()
    counts = np.diff(np.r_[0, edges, height * width])
    if counts[-1] == 0:  # the mask runs to the last pixel: no closing run of zeros
        counts = counts[:-1]
    return {"size": [height, width], "counts": counts.tolist()}


def rle_decode(rle: dict) -> np.ndarray:
    """Boolean mask of a COCO uncompressed RLE (the inverse of ``rle_encode``)."""
    height, width = rle["size"]
    counts = np.asarray(rle["counts"], dtype=np.int64)
    values = np.arange(len(counts)) % 2 == 1
    return np.repeat(values, counts).reshape(width, height).T


def coco_annotations(labels: np.ndarray, file_name: str) -> dict:
    """A COCO-style dict: one image per plane, one RLE annotation per object and plane."""
    from scipy import ndimage

    planes = labels.reshape(-1, *labels.shape[-2:])
    height, width = planes.shape[1:]
    images, annotations = [], []
    for t, plane in enumerate(planes):
        image = {"id": t + 1, "file_name": file_name, "height": height, "width": width}
        if labels.ndim == 3:
            image["frame"] = t
        images.append(image)
        for label, box in enumerate(ndimage.find_objects(plane), start=1):
            if box is None:
                continue
            mask = plane[box] == label
            rows, cols = box
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": t + 1,
                    "category_id": 1,
                    "label": label,
                    "segmentation": rle_encode(mask, (rows.start, cols.start), (height, width)),
                    "area": int(mask.sum()),
                    "bbox": _xywh(rows, cols),
                    "iscrowd": 0,
                }
            )
    return {
        "images": images,
        "annotations": annotations,
        "categories": [{"id": 1, "name": "object"}],
    }


def _xywh(rows: slice, cols: slice) -> list[int]:
    return [cols.start, rows.start, cols.stop - cols.start, rows.stop - rows.start]


def write_coco(labels: np.ndarray, path: str | Path, file_name: str) -> Path:
    path = Path(path)
    temporary = temporary_path(path)
    try:
        temporary.write_text(json.dumps(coco_annotations(labels, file_name)))
        _commit(temporary, path)
    finally:
        if temporary.exists():
            temporary.unlink()
    return path


def check_writable(folder: str | Path) -> Path:
    """Create ``folder`` if needed and prove a file can be written there."""
    folder = Path(folder).resolve()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = temporary_path(folder / "probe")
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as err:
        raise SAM2Error(
            f"The output folder {folder} is not writable ({err.strerror or err}): choose "
            "another --output or fix its permissions."
        ) from err
    return folder
