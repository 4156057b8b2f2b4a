"""Save a propagation annotation to a folder and resume it later, against the same image only.

A folder (format version 1) holds:

- ``annotation.json``: model, normalisation, frame axis and range, object names, divisions, a
  signature of the image (shape, dtype and a hash of sampled frames: a huge stack is never read
  whole) and checksums of the two files below; written last;
- ``prompts.json``: every object's prompts per frame (points, point labels, box; mask prompts
  by name in ``arrays.npz``);
- ``arrays.npz``: mask prompts, the mask each prompted frame made (what resuming conditions the
  model on) and the per-frame confidences and areas;
- ``labels.zarr``: the labels, one chunk a frame.

It is written under a temporary name and renamed when complete, so a crash never leaves a
folder that looks saved. Nothing here imports napari.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import uuid
from pathlib import Path

import numpy as np

from .engine.errors import SAM2Error
from .engine.frames import FrameSource, read_frame
from .engine.prompts import PromptSet
from .engine.video.lineage import Division
from .engine.video.session import PropagationSession

FORMAT = "napari-sam2 annotation"
FORMAT_VERSION = 1
SAMPLED_FRAMES = 16
_CHECKED_FILES = ("prompts.json", "arrays.npz")
_SETTINGS = (
    "model",
    "normalization",
    "frame_axis",
    "channel_axis",
    "channels",
    "frame_range",
    "image",
    "labels",
    "names",
    "divisions",
    "checksums",
)


def save_annotation(folder, session: PropagationSession, labels, overwrite: bool = False) -> Path:
    """Write ``session``'s prompts, settings and confidences and ``labels`` into ``folder``.

    ``labels`` has the stack's shape without its channel axis (numpy, zarr, dask). An existing
    ``folder`` is replaced only with ``overwrite=True``.
    """
    folder = Path(folder)
    if folder.exists() and not overwrite:
        raise SAM2Error(
            f"{folder} already exists: choose another folder, or pass overwrite=True to "
            "replace it."
        )
    if session.running:
        raise SAM2Error("A propagation is running: wait for it to finish or cancel it, then save.")
    source = session.source
    shape, labels_axis = labels_layout(source)
    if tuple(labels.shape) != shape or np.dtype(labels.dtype).kind not in "iu":
        raise SAM2Error(
            f"The labels ({labels.shape}, {labels.dtype}) do not fit the stack: give integer "
            f"labels of shape {shape}, the stack's without its channel axis."
        )
    prompts, arrays = _prompts_to_files(session)
    folder.parent.mkdir(parents=True, exist_ok=True)
    temporary = folder.with_name(f".{folder.name}.saving-{uuid.uuid4().hex[:8]}")
    temporary.mkdir()
    try:
        _write_labels(temporary / "labels.zarr", labels, labels_axis)
        (temporary / "prompts.json").write_text(json.dumps(prompts, indent=1))
        np.savez_compressed(temporary / "arrays.npz", **arrays)
        normalization = source.normalization
        manifest = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "model": session.model_name,
            "normalization": {"low": list(normalization.low), "high": list(normalization.high)},
            "frame_axis": source.frame_axis,
            "channel_axis": source.channel_axis,
            "channels": None if source.channels is None else list(source.channels),
            "frame_range": list(session.frame_range),
            "image": image_signature(source),
            "labels": {"shape": list(shape), "dtype": str(np.dtype(labels.dtype))},
            "names": {str(k): v for k, v in session.names.items()},
            "divisions": [
                {"mother": d.mother, "frame": d.frame, "daughters": list(d.daughters)}
                for d in session.record.lineage.divisions.values()
            ],
            "checksums": {name: _sha256(temporary / name) for name in _CHECKED_FILES},
        }
        (temporary / "annotation.json").write_text(json.dumps(manifest, indent=1))
        _move_into_place(temporary, folder)
    except BaseException:
        shutil.rmtree(temporary, ignore_errors=True)
        raise
    return folder


def load_annotation(folder, segmenter, stack) -> tuple[PropagationSession, np.ndarray]:
    """Reopen a saved annotation over ``stack``: a session with the saved prompts, ready to
    correct, and the labels (numpy). Raises ``SAM2Error`` and loads nothing when the folder is
    damaged, from a newer version, or was made on other image data or with another model."""
    folder = Path(folder)
    manifest = _read_manifest(folder)
    if manifest["model"] not in (None, segmenter.model_name):
        raise SAM2Error(
            f"{folder} was made with the model {manifest['model']}, but "
            f"{segmenter.model_name} is loaded: load {manifest['model']} to resume it."
        )
    norm = manifest["normalization"]
    session = segmenter.propagation_session(
        stack,
        frame_axis=manifest["frame_axis"],
        contrast_limits=np.stack([norm["low"], norm["high"]], axis=1),
        channel_axis=manifest["channel_axis"],
        channels=manifest["channels"],
        frame_range=tuple(manifest["frame_range"]),
    )
    try:
        _check_same_image(session.source, manifest["image"], folder)
        labels = _read_labels(folder, labels_layout(session.source)[0])
        prompts, masks, per_frame = _prompts_from_files(folder)
        divisions = [
            Division(int(d["mother"]), int(d["frame"]), tuple(int(i) for i in d["daughters"]))
            for d in manifest["divisions"]
        ]
        session.restore(prompts, masks, per_frame["confidence"], per_frame["area"], divisions)
        session.names.update({int(k): str(v) for k, v in manifest["names"].items()})
    except BaseException:
        session.close()
        raise
    return session, labels


def labels_layout(source: FrameSource) -> tuple[tuple[int, ...], int]:
    """Shape and frame axis of labels for ``source``'s stack: its shape without channels."""
    channel = source.channel_axis
    shape = tuple(n for ax, n in enumerate(source.data.shape) if ax != channel)
    before = channel is not None and channel < source.frame_axis
    return shape, source.frame_axis - before


def image_signature(source: FrameSource) -> dict:
    """Shape, dtype and an xxh3 hash of up to ``SAMPLED_FRAMES`` evenly spaced frames."""
    import xxhash

    n = len(source)
    frames = np.unique(np.linspace(0, n - 1, min(n, SAMPLED_FRAMES)).round().astype(int))
    digest = xxhash.xxh3_64()
    for t in frames.tolist():
        digest.update(np.ascontiguousarray(read_frame(source.data, t, source.frame_axis)))
    return {
        "shape": list(source.data.shape),
        "dtype": str(np.dtype(source.data.dtype)),
        "frames": frames.tolist(),
        "xxh3_64": digest.hexdigest(),
    }


def _check_same_image(source: FrameSource, saved: dict, folder: Path) -> None:
    here = image_signature(source)
    if (here["shape"], here["dtype"]) != (saved["shape"], saved["dtype"]):
        raise SAM2Error(
            f"{folder} was made on an image of shape {tuple(saved['shape'])} ({saved['dtype']}), "
            f"but this one is {tuple(here['shape'])} ({here['dtype']}): open it with the image "
            "it was made on."
        )
    if here["xxh3_64"] != saved["xxh3_64"]:
        raise SAM2Error(
            f"{folder} was made on other image data (its frames differ from this image's): "
            "open it with the image it was made on."
        )


def _read_manifest(folder: Path) -> dict:
    path = folder / "annotation.json"
    if not path.is_file():
        raise SAM2Error(
            f"{folder} holds no annotation.json: it is not a saved annotation, or its saving "
            "did not finish."
        )
    try:
        manifest = json.loads(path.read_text())
        version = int(manifest["format_version"])
        if manifest["format"] != FORMAT:
            raise ValueError(manifest["format"])
        missing = [key for key in _SETTINGS if key not in manifest]
    except (ValueError, KeyError, TypeError) as err:
        raise SAM2Error(f"{path} is damaged ({err!r}): save the annotation again.") from err
    if version > FORMAT_VERSION:
        raise SAM2Error(
            f"{folder} was written by a newer napari-sam2 (format {version}; this one reads up "
            f"to {FORMAT_VERSION}): update napari-sam2 to open it."
        )
    if missing:
        raise SAM2Error(f"{path} is damaged (it lacks {missing}): save the annotation again.")
    for name, checksum in manifest["checksums"].items():
        if not (folder / name).is_file() or _sha256(folder / name) != checksum:
            raise SAM2Error(
                f"{folder / name} is missing, cut short or was edited after saving: restore it "
                "from a backup, or save the annotation again."
            )
    return manifest


def _prompts_to_files(session: PropagationSession) -> tuple[dict, dict[str, np.ndarray]]:
    entries, arrays = [], {}
    for object_id, frames in sorted(session.record.prompts.items()):
        for frame, prompt in sorted(frames.items()):
            entry = {
                "object": object_id,
                "frame": frame,
                "points": None if prompt.points is None else prompt.points.tolist(),
                "point_labels": (
                    None if prompt.point_labels is None else prompt.point_labels.tolist()
                ),
                "box": None if prompt.box is None else prompt.box.tolist(),
                "mask": None,
            }
            if prompt.mask is not None:
                entry["mask"] = f"mask_prompt-{object_id}-{frame}"
                arrays[entry["mask"]] = prompt.mask
            entries.append(entry)
    for object_id, frames in session.record.masks.items():
        for frame, mask in frames.items():
            arrays[f"made-{object_id}-{frame}"] = mask
    for kind in ("confidence", "area"):
        for object_id, values in getattr(session, kind).items():
            arrays[f"{kind}-{object_id}"] = values
    return {"prompts": entries}, arrays


def _prompts_from_files(folder: Path) -> tuple[dict, dict, dict[str, dict]]:
    try:
        entries = json.loads((folder / "prompts.json").read_text())["prompts"]
        with np.load(folder / "arrays.npz") as npz:
            arrays = {key: npz[key] for key in npz.files}
        prompts: dict[int, dict[int, PromptSet]] = {}
        for entry in entries:
            mask = None if entry["mask"] is None else arrays[entry["mask"]]
            prompt = PromptSet.from_arguments(
                entry["points"], entry["point_labels"], entry["box"], mask
            )
            prompts.setdefault(int(entry["frame"]), {})[int(entry["object"])] = prompt
        masks: dict[int, dict[int, np.ndarray]] = {}
        per_frame: dict[str, dict[int, np.ndarray]] = {"confidence": {}, "area": {}}
        for key, value in arrays.items():
            kind, *numbers = key.split("-")
            if kind == "made":
                masks.setdefault(int(numbers[0]), {})[int(numbers[1])] = value
            elif kind in per_frame:
                per_frame[kind][int(numbers[0])] = value
    except (ValueError, KeyError, TypeError, IndexError, OSError) as err:
        raise SAM2Error(
            f"The prompts in {folder} are damaged ({err!r}): save the annotation again."
        ) from err
    return prompts, masks, per_frame


def _write_labels(path: Path, labels, frame_axis: int) -> None:
    import zarr

    chunks = tuple(1 if ax == frame_axis else n for ax, n in enumerate(labels.shape))
    out = zarr.open_array(
        store=str(path), mode="w", shape=labels.shape, chunks=chunks, dtype=labels.dtype
    )
    for t in range(labels.shape[frame_axis]):
        index = (slice(None),) * frame_axis + (t,)
        out[index] = read_frame(labels, t, frame_axis)


def _read_labels(folder: Path, want: tuple[int, ...]) -> np.ndarray:
    import zarr

    try:
        labels = zarr.open_array(store=str(folder / "labels.zarr"), mode="r")
    except Exception as err:  # zarr raises several kinds for a missing or broken array
        raise SAM2Error(
            f"The labels in {folder} cannot be read ({err!r}): save the annotation again."
        ) from err
    if labels.shape != want or labels.dtype.kind not in "iu":
        raise SAM2Error(
            f"The labels in {folder} are {labels.shape} ({labels.dtype}), not integer labels "
            f"of the image's shape {want}: the folder was changed; save the annotation again."
        )
    return labels[...]


def _move_into_place(temporary: Path, folder: Path) -> None:
    """Rename ``temporary`` to ``folder``, replacing what was there only once it is complete."""
    if not folder.exists():
        temporary.rename(folder)
        return
    old = folder.with_name(f".{folder.name}.replaced-{uuid.uuid4().hex[:8]}")
    folder.rename(old)
    temporary.rename(folder)
    if old.is_dir():
        shutil.rmtree(old)
    else:
        old.unlink()


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()
