"""The ``napari-sam2`` command line, run in-process (random-weight micro model, point prompts)."""

import subprocess
import sys

import numpy as np
import pytest
import tifffile

from napari_sam2.cli import main


@pytest.fixture
def images(tmp_path):
    folder = tmp_path / "images"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(3):
        tifffile.imwrite(folder / f"im{i}.tif", rng.integers(0, 4000, (48, 56), np.uint16))
    (tmp_path / "points.csv").write_text("index,axis-0,axis-1\n0,10.0,12.0\n1,30.0,40.0\n")
    return folder


def _args(tmp_path, images, random_checkpoint, *extra):
    return [
        "batch",
        str(images / "*.tif"),
        "--output",
        str(tmp_path / "out"),
        "--model",
        "sam2.1_hiera_micro",
        "--checkpoint",
        random_checkpoint,
        "--device",
        "cpu",
        "--points",
        str(tmp_path / "points.csv"),
        "--workers",
        "0",
        *extra,
    ]


def test_batch_writes_outputs_and_resumes(tmp_path, images, random_checkpoint, capsys):
    args = _args(tmp_path, images, random_checkpoint, "--format", "npy", "--relabel")
    assert main(args) == 0
    out = capsys.readouterr()
    assert "3 done, 0 skipped" in out.out and "napari-sam2 batch" in out.err  # progress bar
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(
        [f"im{i}.npy" for i in range(3)] + [f"im{i}.json" for i in range(3)]
    )
    assert main(args) == 0
    assert "0 done, 3 skipped" in capsys.readouterr().out


def test_failed_file_gives_status_1(tmp_path, images, random_checkpoint, capsys):
    (images / "bad.tif").write_bytes(b"not a tiff")
    assert main(_args(tmp_path, images, random_checkpoint)) == 1
    out = capsys.readouterr()
    assert "failed: " in out.err and "bad.tif" in out.err
    assert "3 done, 0 skipped (already done), 1 failed" in out.out


def test_user_errors_give_status_2_and_a_message(tmp_path, images, random_checkpoint, capsys):
    args = _args(tmp_path, images, random_checkpoint)
    args[args.index("--workers") : args.index("--workers") + 2] = [
        "--scheduler",
        "tcp://127.0.0.1:9",
    ]
    assert main(args) == 2
    assert "did not answer" in capsys.readouterr().err
    assert main([*_args(tmp_path, images, random_checkpoint)[:-2], "--model", "nope"]) == 2
    assert "Unknown model 'nope'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["batch", str(images), "--output", "x", "--scheduler", "a", "--workers", "2"])


def test_module_help_lists_the_batch_command():
    result = subprocess.run(
        [sys.executable, "-m", "napari_sam2.cli", "--help"], capture_output=True, text=True
    )
    assert result.returncode == 0 and "batch" in result.stdout
