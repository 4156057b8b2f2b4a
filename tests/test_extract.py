"""Object extraction checked pixel by pixel against the masks."""

import numpy as np
import pytest
import tifffile

from napari_sam2 import SAM2Error
from napari_sam2.extract import extract_objects, save_objects


@pytest.fixture
def scene():
    rng = np.random.default_rng(1)
    image = rng.integers(1, 60000, (30, 40), dtype=np.uint16)
    labels = np.zeros((30, 40), np.int32)
    labels[5:12, 6:20] = 2
    labels[8:10, 8:10] = 0  # a hole stays background
    labels[20:29, 30:38] = 5
    return image, labels


def test_transparent_crops_of_a_gray_image(scene):
    image, labels = scene
    crops = extract_objects(labels, image)
    assert [c.label for c in crops] == [2, 5]
    for crop in crops:
        r0, c0, r1, c1 = crop.box
        window, mask = image[r0:r1, c0:c1], labels[r0:r1, c0:c1] == crop.label
        assert crop.data.shape == (r1 - r0, c1 - c0, 4) and crop.data.dtype == np.uint16
        assert np.array_equal(crop.mask, mask)
        for channel in range(3):
            assert np.array_equal(crop.data[..., channel], np.where(mask, window, 0))
        assert np.array_equal(crop.data[..., 3], np.where(mask, 65535, 0))
    assert crops[0].box == (5, 6, 12, 20)


def test_zeroed_rgb_crops_with_padding_and_ids(scene):
    _, labels = scene
    rgb = np.random.default_rng(2).integers(1, 255, (30, 40, 3), dtype=np.uint8)
    (crop,) = extract_objects(labels, rgb, background="zero", ids=[5, 9], padding=3)
    assert crop.box == (17, 27, 30, 40)  # padded and clipped at the image edge
    r0, c0, r1, c1 = crop.box
    mask = labels[r0:r1, c0:c1] == 5
    assert np.array_equal(crop.data, np.where(mask[..., None], rgb[r0:r1, c0:c1], 0))


def test_objects_through_time_share_one_box(scene):
    image, labels = scene
    video = np.stack([image, np.roll(image, 1, 0), image])
    moving = np.stack([labels, np.roll(labels, 3, axis=1), np.where(labels == 2, 0, labels)])
    crops = {c.label: c for c in extract_objects(moving, video, background="zero")}
    two = crops[2]
    assert two.frames == (0, 2) and two.box == (5, 6, 12, 23)
    assert two.data.shape == (2, 7, 17)
    for i, t in enumerate(range(*two.frames)):
        window = video[t, 5:12, 6:23]
        mask = moving[t, 5:12, 6:23] == 2
        assert np.array_equal(two.data[i], np.where(mask, window, 0))
    assert crops[5].frames == (0, 3)


def test_save_objects_png_and_tif(tmp_path, scene):
    import imageio.v3 as iio

    image, labels = scene
    crops = extract_objects(labels, image)
    with pytest.raises(SAM2Error, match="contrast_limits"):
        save_objects(crops, tmp_path / "png")
    paths = save_objects(crops, tmp_path / "png", contrast_limits=(0, 65535))
    assert [p.name for p in paths] == ["object_0002.png", "object_0005.png"]
    png = iio.imread(paths[0])
    assert png.shape == (7, 14, 4) and png.dtype == np.uint8
    assert np.array_equal(png[..., 3] > 0, crops[0].mask)
    video_crops = extract_objects(np.stack([labels] * 2), np.stack([image] * 2))
    (first, _) = save_objects(video_crops, tmp_path / "tif")
    assert tifffile.imread(first).shape == (2, 7, 14, 4)


def test_bad_inputs(scene):
    image, labels = scene
    with pytest.raises(SAM2Error, match="does not match"):
        extract_objects(labels, image[:10])
    with pytest.raises(SAM2Error, match="background must be"):
        extract_objects(labels, image, background="blue")
    with pytest.raises(SAM2Error, match="channels"):
        extract_objects(labels, np.zeros((30, 40, 6), np.uint8))
