"""R-CNN crop-and-warp against plain per-box crop + resize on a real photograph."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from skimage import data

from sppnet.ops.warp import crop_and_warp, expand_boxes_for_context, iter_crop_and_warp


@pytest.fixture(scope="module")
def photo() -> torch.Tensor:
    """scikit-image's chelsea (a cat), 300 x 451, float in [0, 1]."""
    return torch.from_numpy(data.chelsea()).permute(2, 0, 1).float().div(255)


def _boxes_with_integer_context(seed, count, height, width):
    """Boxes whose context-padded windows are whole-pixel rectangles inside the image.

    With S = 224 and p = 16 the window is the box grown by S / (S - 2p) = 7/6, so a window W px
    wide (W a multiple of 14) holds a box W/14 px in from each side.
    """
    g = torch.Generator().manual_seed(seed)
    windows, boxes = [], []
    for _ in range(count):
        w = 14 * int(torch.randint(2, width // 14, (1,), generator=g))
        h = 14 * int(torch.randint(2, height // 14, (1,), generator=g))
        x1 = int(torch.randint(0, width - w + 1, (1,), generator=g))
        y1 = int(torch.randint(0, height - h + 1, (1,), generator=g))
        windows.append((x1, y1, x1 + w, y1 + h))
        boxes.append([x1 + w / 14, y1 + h / 14, x1 + w - w / 14, y1 + h - h / 14])
    return windows, torch.tensor(boxes)


def _reference_warp(image, window, size):
    """Crop the window's pixels and resize them: F.interpolate, bilinear, pixel centres."""
    x1, y1, x2, y2 = window
    crop = image[None, :, y1:y2, x1:x2]
    return F.interpolate(crop, size=(size, size), mode="bilinear", align_corners=False)[0]


def test_matches_per_box_crop_and_resize(photo):
    windows, boxes = _boxes_with_integer_context(0, 24, *photo.shape[1:])
    out = crop_and_warp(photo, boxes, 224, 16)
    assert out.shape == (24, 3, 224, 224) and out.dtype == torch.float32
    for k, window in enumerate(windows):
        ref = _reference_warp(photo, window, 224)
        # Inside, the two sample the same points. Output pixels whose sample lies within half an
        # input pixel of the window's edge differ: the reference clamps to the crop's edge pixel,
        # the warp reads the image beyond it. With W input px to S output px that is a border
        # of S / (2 W) output pixels.
        x1, y1, x2, y2 = window
        bx, by = math.ceil(224 / (2 * (x2 - x1))), math.ceil(224 / (2 * (y2 - y1)))
        inner = (slice(None), slice(by, 224 - by), slice(bx, 224 - bx))
        torch.testing.assert_close(out[k][inner], ref[inner], atol=1e-5, rtol=0)
        assert (out[k] - ref).abs().mean() < 2e-3


def test_box_lands_on_central_region(photo):
    # With padding p the box itself fills the central (S - 2p)^2 pixels: the same samples as
    # warping the bare box to S - 2p.
    boxes = torch.tensor([[50.0, 60.0, 200.0, 130.0], [10.5, 20.25, 60.0, 290.0]])
    padded = crop_and_warp(photo, boxes, 224, 16)
    bare = crop_and_warp(photo, boxes, 192, 0)
    torch.testing.assert_close(padded[:, :, 16:208, 16:208], bare, atol=1e-5, rtol=0)
    grown = expand_boxes_for_context(boxes, 224, 16)
    torch.testing.assert_close(grown[0], torch.tensor([37.5, 54.1666667, 212.5, 135.8333333]))


def test_outside_the_image_is_filled(photo):
    # Box [0, 0, 96, 96] -> window [-8, -8, 104, 104], 0.5 px per output pixel: output pixels
    # 0..13 sample at x < -1 px (outside), and take the fill.
    mean = [0.485, 0.456, 0.406]
    out = crop_and_warp(photo, torch.tensor([[0.0, 0.0, 96.0, 96.0]]), 224, 16, fill=mean)[0]
    expected = torch.tensor(mean)[:, None, None].expand(3, 14, 224)
    torch.testing.assert_close(out[:, :14, :], expected)
    torch.testing.assert_close(out[:, :, :14], expected.transpose(1, 2))
    # Pixels inside the image are the image's, whatever the fill.
    torch.testing.assert_close(
        out[:, 20:, 20:], crop_and_warp(photo, torch.tensor([[0.0, 0, 96, 96]]))[0, :, 20:, 20:]
    )
    zero = crop_and_warp(photo, torch.tensor([[0.0, 0.0, 96.0, 96.0]]), 224, 16)[0]
    assert zero[:, :14, :].abs().max() == 0


def test_antialias_averages_samples(photo):
    # A 448 px window to 224: two samples per output pixel each way, on pixel centres, so the
    # antialiased warp is a 2 x 2 mean of the window's pixels.
    box = torch.tensor([[0.0, 0.0, 448.0, 298.0]])
    out = crop_and_warp(photo, box, (149, 224), 0, antialias=True)[0]
    torch.testing.assert_close(
        out, F.avg_pool2d(photo[None, :, :298, :448], 2)[0], atol=1e-5, rtol=0
    )


def test_batches_chunks_and_box_formats(photo):
    other = photo.flip(-1) * 0.5
    images = torch.stack([photo, other])
    _, b0 = _boxes_with_integer_context(1, 5, *photo.shape[1:])
    _, b1 = _boxes_with_integer_context(2, 7, *photo.shape[1:])
    as_list = crop_and_warp(images, [b0, b1], 64, 4)
    assert as_list.shape == (12, 3, 64, 64)
    torch.testing.assert_close(as_list[:5], crop_and_warp(photo, b0, 64, 4))
    torch.testing.assert_close(as_list[5:], crop_and_warp(other, b1, 64, 4))
    rois = torch.cat([torch.cat([torch.zeros(5, 1), b0], 1), torch.cat([torch.ones(7, 1), b1], 1)])
    torch.testing.assert_close(crop_and_warp(images, rois, 64, 4), as_list)
    chunks = list(iter_crop_and_warp(images, [b0, b1], 64, 4, chunk_size=5))
    assert [c.shape[0] for c in chunks] == [5, 5, 2]
    torch.testing.assert_close(torch.cat(chunks), as_list)
    assert crop_and_warp(photo, torch.zeros(0, 4), 32, 2).shape == (0, 3, 32, 32)


def test_float64_and_rectangular_output(photo):
    box = torch.tensor([[100.0, 50.0, 300.0, 250.0]], dtype=torch.float64)
    out = crop_and_warp(photo.double(), box, (100, 50), 5)
    assert out.shape == (1, 3, 100, 50) and out.dtype == torch.float64


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu(photo):
    _, boxes = _boxes_with_integer_context(3, 10, *photo.shape[1:])
    cpu = crop_and_warp(photo, boxes)
    gpu = crop_and_warp(photo.cuda(), boxes.cuda())
    assert gpu.is_cuda
    torch.testing.assert_close(gpu.cpu(), cpu, atol=1e-5, rtol=0)


def test_bad_input(photo):
    box = torch.tensor([[0.0, 0.0, 10.0, 10.0]])
    with pytest.raises(TypeError, match="float"):
        crop_and_warp((photo * 255).to(torch.uint8), box)
    with pytest.raises(ValueError, match="context_padding"):
        crop_and_warp(photo, box, 32, 16)
    with pytest.raises(ValueError, match="2 images"):
        crop_and_warp(torch.stack([photo, photo]), box)
    with pytest.raises(ValueError, match="fill"):
        crop_and_warp(photo, box, fill=[0.0, 0.0])
    with pytest.raises(ValueError, match="shape"):
        crop_and_warp(photo, torch.zeros(2, 3))
    with pytest.raises(ValueError, match=r"image indices in 0\.\.0"):
        crop_and_warp(photo, torch.tensor([[1.0, 0.0, 0.0, 10.0, 10.0]]))
