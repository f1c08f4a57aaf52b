"""Colouring and blending: the LUT path gives the palette's colours, and colouring small ids then
enlarging the colours gives the same pixels as colouring ids enlarged to the frame's size."""
import numpy as np
import pytest

from rtseg.engines.base import Engine
from rtseg.viz import VIEWS, colorize, compose, overlay, palette_lut

PALETTE = [(128, 128, 128), (128, 0, 0), (192, 192, 128), (128, 64, 128), (60, 40, 222), (128, 128, 0)]


class _Ids(Engine):
    def infer(self, batch):
        raise NotImplementedError


def _ids(h: int, w: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, len(PALETTE) + 2, (h, w), dtype=np.uint8)  # 2 ids past the palette


def test_colorize_is_the_palette_in_bgr_and_black_past_it():
    ids = _ids(37, 53)
    rgb = np.array(PALETTE + [(0, 0, 0)] * 250, np.uint8)
    assert np.array_equal(colorize(ids, PALETTE), rgb[ids][..., ::-1])


@pytest.mark.parametrize("small, frame", [((64, 128), (128, 256)), ((512, 1024), (1024, 2048)),
                                          ((360, 480), (1080, 1920)), ((45, 60), (100, 77))])
@pytest.mark.parametrize("view", VIEWS)
def test_small_ids_give_the_same_picture_as_ids_at_the_frame_size(small, frame, view):
    ids = _ids(*small, seed=1)
    image = np.random.default_rng(2).integers(0, 256, (*frame, 3), dtype=np.uint8)
    big = _Ids().postprocess(ids[None], [frame])[0]  # the ids at the frame's size (what --masks writes)
    lut = palette_lut(PALETTE)
    picture = compose(image, ids, lut, view, 0.4)
    assert np.array_equal(picture, compose(image, big, lut, view, 0.4))
    assert picture.shape == ((*frame, 3) if view != "side-by-side" else (frame[0], 2 * frame[1], 3))


@pytest.mark.parametrize("small, big", [((512, 1024), (1024, 2048)), ((45, 60), (90, 180)), ((45, 60), (100, 77)),
                                        ((360, 480), (540, 720)), ((64, 64), (32, 32))])
def test_resize_nearest_is_centre_aligned_at_every_scale(small, big):
    import cv2

    from rtseg.viz import resize_nearest

    ids = _ids(*small, seed=3)
    want = cv2.resize(ids, big[::-1], interpolation=cv2.INTER_NEAREST_EXACT)
    assert np.array_equal(resize_nearest(ids, big), want)  # whole-number scales take the faster path
    colours = colorize(ids, PALETTE)
    assert np.array_equal(resize_nearest(colours, big), cv2.resize(colours, big[::-1], interpolation=cv2.INTER_NEAREST_EXACT))


def test_overlay_weights_the_colours_by_alpha():
    frame = np.full((4, 4, 3), 200, np.uint8)
    colors = np.full((4, 4, 3), 100, np.uint8)
    assert np.all(overlay(frame, colors, 0.25) == 175)
    assert np.array_equal(overlay(frame, colors, 0.0), frame) and np.array_equal(overlay(frame, colors, 1.0), colors)


def test_unknown_view_is_refused():
    with pytest.raises(ValueError, match="unknown view"):
        compose(np.zeros((8, 8, 3), np.uint8), np.zeros((8, 8), np.uint8), palette_lut(PALETTE), "heatmap", 0.5)


# --- I420: the same pictures drawn in the format the H.264 writer encodes --------------------


@pytest.mark.parametrize("small, frame", [((64, 128), (128, 256)), ((512, 1024), (1024, 2048)),
                                          ((360, 480), (540, 720)), ((45, 60), (100, 78))])
@pytest.mark.parametrize("view", VIEWS)
def test_i420_picture_is_the_bgr_picture_converted_to_within_rounding(small, frame, view):
    import cv2

    from rtseg.viz import compose_i420, yuv_luts

    # regions of a few pixels, as a segmentation has (not a different id at every pixel)
    ids = cv2.resize(_ids(small[0] // 4 + 1, small[1] // 4 + 1, seed=4), small[::-1], interpolation=cv2.INTER_NEAREST)
    image = np.random.default_rng(5).integers(0, 256, (*frame, 3), dtype=np.uint8)
    want = cv2.cvtColor(compose(image, ids, palette_lut(PALETTE), view, 0.4), cv2.COLOR_BGR2YUV_I420)
    got = compose_i420(image, ids, yuv_luts(PALETTE), view, 0.4)
    assert got.shape == want.shape == (frame[0] * 3 // 2, frame[1] * (2 if view == "side-by-side" else 1))
    h, w = frame
    diff = np.abs(got.astype(int) - want)
    assert diff[:h].max() <= 1  # luma: rounding only
    if small[0] * 2 == h and small[1] * 2 == w:
        assert diff.max() <= 1  # one id per chroma sample: the writer's 2x2 average is that id's colour
    else:
        # a chroma sample straddling two ids takes one id's colour instead of an average of both:
        # only along region borders
        assert np.mean(diff[h:] <= 1) > 0.75


def test_yuv_luts_are_opencvs_conversion_of_each_palette_colour():
    import cv2

    from rtseg.viz import yuv_luts

    y, u, v = yuv_luts(PALETTE)
    for i, (r, g, b) in enumerate(PALETTE + [(0, 0, 0)]):
        tile = cv2.cvtColor(np.full((2, 2, 3), (b, g, r), np.uint8), cv2.COLOR_BGR2YUV_I420)
        assert (y[i], u[i], v[i]) == (tile[0, 0], tile[2, 0], tile[2, 1])


def test_i420_needs_even_sides_and_a_known_view():
    from rtseg.viz import compose_i420, yuv_luts

    with pytest.raises(ValueError, match="even frame sides"):
        compose_i420(np.zeros((9, 8, 3), np.uint8), np.zeros((9, 8), np.uint8), yuv_luts(PALETTE), "overlay", 0.5)
    with pytest.raises(ValueError, match="unknown view"):
        compose_i420(np.zeros((8, 8, 3), np.uint8), np.zeros((8, 8), np.uint8), yuv_luts(PALETTE), "heatmap", 0.5)


@pytest.mark.parametrize("fmt", ["bgr", "i420"])
def test_the_legend_shows_each_class_colour_and_leaves_the_rest_alone(fmt):
    import cv2

    from rtseg.classes import CAMVID_CLASSES, CAMVID_PALETTE
    from rtseg.viz import Legend, i420_to_bgr

    legend = Legend(CAMVID_CLASSES, CAMVID_PALETTE)
    frame = np.full((540, 960, 3), 90, np.uint8)
    picture = frame.copy() if fmt == "bgr" else cv2.cvtColor(frame, cv2.COLOR_BGR2YUV_I420)
    legend.draw(picture, fmt, (540, 960))
    shown = picture if fmt == "bgr" else i420_to_bgr(picture)
    panel, alpha = legend.panel(540)
    h, w = panel.shape[:2]
    assert 11 * 12 < h < 540 / 2 and w < 960 / 4  # small: it hides little
    margin = 540 // 60 // 2 * 2
    # every class's swatch is drawn in its palette colour (BGR), to within I420's chroma rounding
    row = Legend._row(540)  # the legend's own row height (it scales with the frame)
    pad = max(2, row // 4)
    sw = row - 2 * pad // 2
    for i, (r, g, b) in enumerate(CAMVID_PALETTE):
        y = margin + pad + i * row + (row - sw) // 2 + sw // 2
        x = margin + pad + sw // 2
        assert np.abs(shown[y, x].astype(int) - (b, g, r)).max() <= (2 if fmt == "bgr" else 40), CAMVID_CLASSES[i]
    outside = np.ones(shown.shape[:2], bool)
    outside[margin:margin + h, margin:margin + w] = False
    assert np.abs(shown[outside].astype(int) - 90).max() <= 1  # the rest of the picture untouched


def test_with_more_classes_than_fit_the_legend_lists_those_in_the_frame():
    from rtseg.viz import Legend

    legend = Legend([f"class{i}" for i in range(150)], [(i, 255 - i, 0) for i in range(150)])  # ADE20K-sized
    picture = np.zeros((240, 320, 3), np.uint8)
    ids = np.array([[3, 3, 77], [149, 3, 3]], np.uint8)
    legend.draw(picture, "bgr", (240, 320), ids)
    panel, _ = legend.panel(240, [3, 77, 149])
    assert panel.shape[0] < 240 / 2  # three rows, not 150
    assert legend.fits(240) < 150 and legend.fits(1080) >= 19  # Cityscapes' 19 classes fit a 1080p frame


@pytest.mark.parametrize("frame_h, min_letters", [(360, 9), (1024, 20)])
def test_the_legend_is_readable_on_small_and_large_frames(frame_h, min_letters):
    """#38: at 360x480 the names were about 7 px tall. Letters (a capital's height, measured on the
    panel) are at least 9 px on a 360-line frame and grow with the frame; every CamVid class fits."""
    from rtseg.classes import CAMVID_CLASSES, CAMVID_PALETTE
    from rtseg.viz import Legend

    legend = Legend(CAMVID_CLASSES, CAMVID_PALETTE)
    assert legend.fits(frame_h) >= len(CAMVID_CLASSES)
    panel, _ = legend.panel(frame_h, [1])  # "Building": its capital B and the l, d stand as tall as letters go
    white = (panel.min(axis=2) > 200)
    white[:, : panel.shape[0]] = False  # not the swatch
    rows = np.flatnonzero(white.any(axis=1))
    assert rows.size and rows[-1] - rows[0] + 1 >= min_letters
