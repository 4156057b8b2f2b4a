"""Small holes inside masks are filled; large holes and open notches stay."""

import numpy as np

from napari_sam2.engine.holes import fill_small_holes


def _disk(shape, centre, radius):
    rr, cc = np.ogrid[: shape[0], : shape[1]]
    return (rr - centre[0]) ** 2 + (cc - centre[1]) ** 2 <= radius**2


def test_pinholes_are_filled_and_counted():
    mask = _disk((80, 90), (40, 45), 20)
    truth = mask.copy()
    mask[35:37, 40:42] = False  # 4 px
    mask[48, 50] = False  # 1 px
    assert fill_small_holes(mask) == 5
    np.testing.assert_array_equal(mask, truth)


def test_large_holes_open_notches_and_other_objects_stay():
    ring = _disk((80, 90), (40, 45), 20) & ~_disk((80, 90), (40, 45), 9)  # hole: 20 % of it
    notch = _disk((80, 90), (40, 45), 20)
    notch[38:42, 25:45] = False  # reaches the outside: not a hole
    for mask in (ring, notch, np.zeros((5, 5), bool)):
        kept = mask.copy()
        assert fill_small_holes(mask) == 0
        np.testing.assert_array_equal(mask, kept)


def test_a_hole_of_a_mask_on_the_image_edge_is_a_hole():
    mask = np.zeros((30, 30), bool)
    mask[:, :12] = True
    mask[0:3, 4:6] = False  # open at the image's top edge: outside the mask
    mask[10:12, 0:2] = False  # open at the left edge
    mask[20:22, 5:7] = False  # enclosed
    assert fill_small_holes(mask) == 4
    assert not mask[0:3, 4:6].any() and not mask[10:12, 0:2].any() and mask[20:22, 5:7].all()
