"""Clicks on planes larger than the model input: native-resolution masks, lazy reading, bad input.

The mosaics tile rotated copies of small labelled images, so each clicked object is compared
with the same object clicked in its small image, in the same run, with the packaged micro model.
"""

from pathlib import Path

import numpy as np
import pytest
from scipy.ndimage import binary_fill_holes

from napari_sam2 import SAM2Error, Segmenter
from napari_sam2.engine.mosaic import crop_iou, make_mosaic
from napari_sam2.engine.synthetic import synthetic_cells
from napari_sam2.engine.window import base_side

from .masks import centre, iou

REAL = Path(__file__).resolve().parents[3] / "shared/data/real-nuclei-3d"


@pytest.fixture(scope="module")
def micro():
    return Segmenter("sam2.1_hiera_micro", device="cpu")


def assert_mosaic_matches_native(seg, images, labels, grid, tile, least):
    """A 4096² mosaic of ``images``: clicks on the objects of ``tile`` score at least 0.95 ×
    the same clicks on the tile alone (which must score ``least``), one normalisation."""
    mosaic = make_mosaic(images, labels, grid, seed=1)
    assert mosaic.image.shape == (4096, 4096)
    limits = tuple(np.percentile(images[:, ::4, ::4], [0.5, 99.8]))
    on_mosaic, native = click_scores(seg, mosaic, [tile], limits)
    print(f"mosaic mIoU {on_mosaic:.3f}, native {native:.3f}")
    assert native > least, native
    assert on_mosaic >= 0.95 * native, (on_mosaic, native)


def click_scores(seg, mosaic, tiles, limits):
    """mIoU of one click per object of ``tiles`` on the mosaic and on each tile alone."""
    seg.set_image(mosaic.image, contrast_limits=limits)
    on_mosaic = []
    for tile in tiles:
        r0, c0 = mosaic.origin(*tile)
        for truth in objects(mosaic.tile_labels(*tile)):
            r, c = centre(truth)
            crop = seg.predict_crop(points=[(r + r0, c + c0)])
            on_mosaic.append(crop_iou(crop, truth, (r0, c0)))
    native = []
    for tile in tiles:
        seg.set_image(mosaic.tile_image(*tile), contrast_limits=limits)
        native += [
            iou(seg.predict(points=[centre(t)]), t) for t in objects(mosaic.tile_labels(*tile))
        ]
    assert len(on_mosaic) >= 5, "too few objects to score"
    return float(np.mean(on_mosaic)), float(np.mean(native))


def objects(labels, min_area=30):
    """The filled objects of a tile, without those its border cuts: in the mosaic they run
    on into the next tile, so they are not the same objects there."""
    masks = [binary_fill_holes(labels == k) for k in np.unique(labels) if k]
    return [m for m in masks if m.sum() >= min_area and not _on_border(m)]


def _on_border(mask) -> bool:
    return bool(mask[0].any() or mask[-1].any() or mask[:, 0].any() or mask[:, -1].any())


@pytest.mark.skipif(not REAL.exists(), reason="real nuclei data (../shared) is not present")
def test_clicks_on_a_real_4096_mosaic_match_the_native_images(micro):
    import tifffile

    stack = tifffile.imread(REAL / "nuclei.tif")[28:38]
    labels = tifffile.imread(REAL / "nuclei_label.tif")[28:38]
    assert_mosaic_matches_native(micro, stack, labels, grid=16, tile=(7, 8), least=0.6)


def test_clicks_on_a_synthetic_4096_mosaic_match_the_native_images(micro):
    """512² native images (the issue's measure), resized whole to the model input (2x at a
    1024 input); the windows show it cells at 2.7x."""
    cells = [synthetic_cells((512, 512), n_cells=10, seed=seed) for seed in range(4)]
    images, labels = (np.stack(parts) for parts in zip(*cells, strict=True))
    assert_mosaic_matches_native(micro, images, labels, grid=8, tile=(7, 7), least=0.7)


def test_a_second_click_in_the_window_costs_no_embedding(micro):
    image, truth = synthetic_cells((1536, 1536), n_cells=12, seed=3, radius=20)
    micro.set_image(image)
    first = micro.predict(points=[centre(truth == 1)])
    before = micro.session.embeddings_computed
    r, c = centre(truth == 1)
    again = micro.predict(points=[(r + 3, c - 3)])
    assert micro.session.embeddings_computed == before
    assert first.shape == again.shape == (1536, 1536)
    assert iou(first, truth == 1) > 0.7


def test_clicks_in_several_windows_share_one_encoder_batch(micro):
    """Clicks on cells of a large plane segmented together (as a propagation's first frame
    does): their windows go through the image encoder in one batch, each mask is the one its
    click gives alone, and each cached embedding holds its own window only (a view into the
    batch would keep the whole batch in memory while any of its windows stays cached)."""
    from napari_sam2.engine.image import ImageSession
    from napari_sam2.engine.prompts import PromptSet
    from napari_sam2.engine.windowed import WindowedPlane

    image, truth = synthetic_cells((1536, 1536), n_cells=12, seed=3, radius=20)
    micro.set_image(image)
    cells = [centre(truth == k) for k in (1, 2, 3, 4, 5)]
    alone = [micro.predict(points=[c]) for c in cells]
    large = micro._windowed
    session = ImageSession(micro.model)
    together = WindowedPlane(large.plane, large.normalization, session, 512, micro.device)
    batches = []
    hook = micro.model.image_encoder.register_forward_hook(
        lambda _m, x, _o: batches.append(len(x[0]))
    )
    try:
        prompts = [PromptSet.from_arguments(points=[c]).validate(image.shape) for c in cells]
        crops = together.predict_many(prompts)
    finally:
        hook.remove()
    assert batches[0] == session.embeddings_computed - sum(batches[1:]) > 1, batches
    for crop, mask in zip(crops, alone, strict=True):
        assert iou(crop.full(image.shape), mask) > 0.99
    for features, _ in session._cache.values():
        for feat in [features["image_embed"], *features["high_res_feats"]]:
            assert feat.untyped_storage().nbytes() == feat.numel() * feat.element_size()


def test_an_object_larger_than_its_first_window_comes_out_whole(micro):
    """A cell 0.78 of the first window across (300 px in the 384 px window of a 1024 input),
    clicked at its centre, overflows that window, where the model sees a part of it as an
    object: that first mask is too large for the window, so the click is predicted again in
    a larger one."""
    radius = 150 * base_side(micro.model.image_size) // 384
    image, truth = synthetic_cells((2048, 2048), n_cells=3, seed=5, radius=radius)
    micro.set_image(image)
    scores = [iou(micro.predict(points=[centre(truth == k)]), truth == k) for k in (1, 2, 3)]
    assert np.mean(scores) > 0.8, scores


def test_a_field_of_view_given_as_region_segments_the_large_object_in_it(micro):
    """Zoomed out over a whole 2048² plane, a click on a 300 px cell is segmented on the field
    of view (downsampled to the model input), not in a native window around the click."""
    image, truth = synthetic_cells((2048, 2048), n_cells=3, seed=5, radius=150)
    micro.set_image(image)
    crop = micro.predict_crop(points=[centre(truth == 2)], region=(0, 0, 2048, 2048))
    assert crop_iou(crop, truth == 2, (0, 0)) > 0.8
    with pytest.raises(SAM2Error, match="region"):
        micro.predict_crop(points=[(5, 5)], region=(100, 100, 50, 500))


class CountingPlane:
    """A numpy plane behind a lazy array's interface that counts the pixels read from it."""

    def __init__(self, data):
        self.data, self.shape, self.dtype, self.ndim = data, data.shape, data.dtype, data.ndim
        self.read = 0

    def __getitem__(self, index):
        out = self.data[index]
        self.read += out.size
        return out


def test_a_dask_plane_is_read_a_window_at_a_time(micro):
    import dask.array as da

    image, truth = synthetic_cells((512, 512), n_cells=10, seed=7)
    big = np.tile(image, (8, 8))  # 4096²: cell 1 in every tile
    counting = CountingPlane(big)
    plane = da.from_array(counting, chunks=512, asarray=False)
    micro.set_image(plane)
    r, c = centre(truth == 1)
    crop = micro.predict_crop(points=[(r + 2048, c + 1024)])
    assert counting.read < big.size / 5, counting.read  # normalisation sample + a window
    assert crop.mask.shape[0] < base_side(micro.model.image_size) and crop.rows.start >= 2048
    assert crop_iou(crop, truth == 1, (2048, 1024)) > 0.7


def test_a_region_is_read_from_a_coarser_level_of_the_image_when_one_is_given(micro):
    """A field of view over a whole 3000 × 4099 plane is read from a level 4 times smaller
    (3.999 along columns): no pixel of the plane is read, and a 600 px cell is found."""
    from skimage.transform import resize

    image, truth = synthetic_cells((3000, 4099), n_cells=3, seed=5, radius=300)
    level = resize(image, (750, 1025), preserve_range=True, anti_aliasing=True)
    level = level.astype(image.dtype)
    counting = CountingPlane(image)
    micro.set_image(counting, contrast_limits=np.percentile(level, [0.5, 99.8]))
    factors = (3000 / 750, 4099 / 1025)
    crop = micro.predict_crop(
        points=[centre(truth == 2)], region=(0, 0, 3000, 4099), level=(level, factors)
    )
    assert counting.read == 0
    assert crop_iou(crop, truth == 2, (0, 0)) > 0.8
    with pytest.raises(SAM2Error, match="does not cover"):
        micro.predict_crop(points=[(5, 5)], region=(0, 0, 3000, 4099), level=(level, (2, 2)))


def test_a_zarr_plane_is_never_read_whole(micro, tmp_path):
    import zarr
    from zarr.storage import LocalStore

    class CountingStore(LocalStore):
        chunks_read = 0

        async def get(self, key, *args, **kwargs):
            CountingStore.chunks_read += key.startswith("c/")
            return await super().get(key, *args, **kwargs)

    image, truth = synthetic_cells((512, 512), n_cells=10, seed=7)
    path = tmp_path / "plane.zarr"
    written = zarr.create_array(path, shape=(6144, 3072), chunks=(256, 256), dtype=image.dtype)
    written[:] = np.tile(image, (12, 6))  # 24 × 12 = 288 chunks
    plane = zarr.open_array(CountingStore(path), mode="r")
    micro.set_image(plane)
    r, c = centre(truth == 2)
    crop = micro.predict_crop(points=[(r + 5120, c + 2048)])
    assert CountingStore.chunks_read < 288 / 2, CountingStore.chunks_read
    assert crop_iou(crop, truth == 2, (5120, 2048)) > 0.7


def test_unreadable_chunks_raise_a_clear_error_naming_the_array(micro):
    import dask
    import dask.array as da

    def broken():
        raise OSError("disk gone")

    good = da.zeros((3000, 3000), dtype=np.uint16, chunks=1000)
    bad = da.from_delayed(dask.delayed(broken)(), (1000, 1000), dtype=np.uint16)
    plane = da.block([[good[:1000, :2000], bad], [good[1000:, :2000], good[1000:, 2000:]]])
    micro.set_image(plane, contrast_limits=(0, 100))
    with pytest.raises(SAM2Error, match=f"{plane.name}.*disk gone"):
        micro.predict(points=[(500, 2500)])


def test_far_edges_a_box_larger_than_the_image_and_a_one_pixel_high_image(micro):
    import dask.array as da

    image, truth = synthetic_cells((1200, 1500), n_cells=6, seed=8)
    micro.set_image(image)
    assert micro.predict(points=[(1199, 1499)]).shape == (1200, 1500)
    whole = micro.predict_crop(box=(-100, -100, 5000, 5000))
    assert whole.mask.any()
    lazy = da.from_array(np.tile(image, (4, 2)), chunks=1000)  # 4800 × 3000: read every 3rd
    micro.set_image(lazy)
    whole = micro.predict_crop(box=(-10, -10, 6000, 4000))
    assert whole.mask.any() and whole.rows.stop <= 4800 and whole.cols.stop <= 3000
    line = np.zeros((1, 100_000), np.uint16)
    line[0, 99_990:] = 1000
    micro.set_image(line)
    crop = micro.predict_crop(points=[(0, 99_995)])
    assert crop.rows == slice(0, 1) and 99_000 < crop.cols.stop <= 100_000


@pytest.mark.parametrize(
    "image, message",
    [
        (np.ones((30, 30), dtype=object), "not numbers.*astype"),
        (np.ones((30, 30), dtype=np.complex64), "complex.*np.abs"),
        (np.ones((3000, 30), dtype=np.complex128), "complex.*np.abs"),
    ],
)
def test_object_and_complex_images_are_refused_with_what_to_do(micro, image, message):
    with pytest.raises(SAM2Error, match=message):
        micro.set_image(image)
