"""The ``napari-sam2`` command line: headless entry points, one subcommand each.

A subcommand is a function that adds its parser to the ``subparsers`` of the main parser and
sets ``handler`` to a function taking the parsed arguments and returning an exit status; to add
one, write such a function and list it in ``SUBCOMMANDS``.

Exit status: 0 all went well, 1 some files failed (the others are done), 2 a usage error
(bad option, unreachable scheduler, unwritable output), 130 interrupted.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from .engine.errors import SAM2Error


def add_batch(subparsers) -> None:
    """``napari-sam2 batch``: segment files with automatic masks or CSV prompts."""
    from .batch import FORMATS

    parser = subparsers.add_parser(
        "batch",
        help="segment a folder or glob of images/stacks",
        description="Segment images, stacks and OME-Zarr stores with SAM2 automatic masks, or "
        "with prompts from napari Points/Shapes CSV files. Writes labels and COCO RLE JSON; "
        "files whose outputs exist are skipped, so an interrupted run can be re-run.",
    )
    parser.add_argument("inputs", nargs="+", metavar="INPUT", help="files, folders or globs")
    parser.add_argument("-o", "--output", required=True, metavar="DIR", help="output folder")
    parser.add_argument("--format", default="tif", choices=FORMATS, help="labels file format")
    parser.add_argument("--model", default="sam2.1_hiera_tiny", help="model name")
    parser.add_argument("--checkpoint", metavar="FILE", help="local checkpoint for --model")
    parser.add_argument("--device", help="cuda, mps or cpu (default: the best available)")
    parser.add_argument("--overwrite", action="store_true", help="redo files already done")

    prompts = parser.add_argument_group(
        "prompts", "a CSV for every file, or a folder holding <stem>.csv for each file"
    )
    prompts.add_argument("--points", metavar="CSV", help="napari Points CSV (one object/point)")
    prompts.add_argument("--boxes", metavar="CSV", help="napari Shapes CSV (one box/shape)")

    auto = parser.add_argument_group("automatic masks (when no prompts are given)")
    auto.add_argument("--points-per-side", type=int, default=32)
    auto.add_argument("--pred-iou-thresh", type=float, default=0.7)
    auto.add_argument("--stability-thresh", type=float, default=0.9)
    auto.add_argument("--crop-layers", type=int, default=0)
    auto.add_argument("--min-area", type=int, default=16, help="drop smaller masks")
    auto.add_argument(
        "--large-on-top", action="store_true", help="paint larger masks over smaller ones"
    )

    post = parser.add_argument_group("post-processing")
    post.add_argument("--min-size", type=int, default=0, help="remove smaller objects")
    post.add_argument("--fill-holes", action="store_true")
    post.add_argument("--remove-border", action="store_true", help="drop objects at the edge")
    post.add_argument("--relabel", action="store_true", help="make ids 1..n")

    where = parser.add_mutually_exclusive_group()  # where to run
    where.add_argument("--scheduler", metavar="ADDR", help="Dask scheduler, e.g. tcp://h:8786")
    where.add_argument(
        "--workers", type=int, default=1, help="LocalCluster workers (0: in this process)"
    )
    parser.set_defaults(handler=run_batch_command)


def run_batch_command(args: argparse.Namespace) -> int:
    from .batch import PostProcessing, iter_batch
    from .engine.automatic import AutomaticOptions

    automatic = AutomaticOptions.from_kwargs(
        points_per_side=args.points_per_side,
        pred_iou_thresh=args.pred_iou_thresh,
        stability_score_thresh=args.stability_thresh,
        crop_n_layers=args.crop_layers,
        min_area=args.min_area,
        larger_first=not args.large_on_top,
    )
    work = iter_batch(
        args.inputs,
        args.output,
        fmt=args.format,
        model=args.model,
        checkpoint=args.checkpoint,
        device=args.device,
        automatic=automatic,
        points=args.points,
        boxes=args.boxes,
        postprocessing=PostProcessing(
            args.min_size, args.fill_holes, args.remove_border, args.relabel
        ),
        scheduler=args.scheduler,
        workers=args.workers,
        overwrite=args.overwrite,
    )
    counts = {"done": 0, "skipped": 0, "failed": 0}
    bar = None
    try:
        for progress in work:
            if bar is None:
                bar = _progress_bar(progress.total)
            result = progress.result
            if result is None:  # a tile of a large file
                name, done, tiles = progress.tile
                bar.set_postfix_str(f"{Path(name).name}: tile {done}/{tiles}")
                continue
            counts[result.status] += 1
            if result.status == "failed":
                bar.write(f"failed: {result.source}: {result.error}", file=sys.stderr)
            bar.set_postfix(counts, refresh=False)
            bar.update(1)
    except KeyboardInterrupt:
        work.close()
        print("Interrupted: finished files are kept; run again to resume.", file=sys.stderr)
        return 130
    finally:
        if bar is not None:
            bar.close()
    print(
        f"{counts['done']} done, {counts['skipped']} skipped (already done), "
        f"{counts['failed']} failed; outputs in {args.output}"
    )
    return 1 if counts["failed"] else 0


def _progress_bar(total: int):
    from tqdm import tqdm

    return tqdm(total=total, unit="file", desc="napari-sam2 batch", file=sys.stderr)


SUBCOMMANDS: list[Callable] = [add_batch]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="napari-sam2", description="Segment Anything 2 without the GUI."
    )
    subparsers = parser.add_subparsers(title="commands", dest="command", required=True)
    for add in SUBCOMMANDS:
        add(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``napari-sam2`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.handler(args)
    except SAM2Error as err:
        print(f"napari-sam2 {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
