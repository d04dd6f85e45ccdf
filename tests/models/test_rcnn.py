"""R-CNN mode: its crops, its whole-map pooling, that it shares the detector's heads, chunking."""

from __future__ import annotations

import pytest
import torch
from factories import tiny_detector

from sppnet.models.detector import SPPNetDetector
from sppnet.models.rcnn import RCNNDetector
from sppnet.ops import spp

SIZE = 32  # the warped window's side in these tests


def _detector(box_regression: bool = False) -> SPPNetDetector:
    return tiny_detector(
        num_classes=3,
        backbone_kwargs={},
        scales=(SIZE,),
        fc_dims=(16, 16),
        target_side=224.0,
        box_regression=box_regression,
    )


def _image(height: int, width: int, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (3, height, width), generator=g, dtype=torch.uint8)


def _whole_image_scores(detector: SPPNetDetector, image: torch.Tensor) -> torch.Tensor:
    """The network applied to an image as a whole: trunk, SPP over the whole map, heads."""
    x = detector.backbone.normalize(image.float() / 255)[None]
    pooled = spp(detector.backbone(x), detector.pooler.levels, detector.pooler.mode)
    return detector.score_windows(pooled)[0]


@torch.no_grad()
def test_window_equal_to_the_input_is_the_network_on_the_image() -> None:
    # A window that is the whole S x S image, with no context, warps to the image itself, so its
    # R-CNN scores are the network's scores for the image.
    detector = _detector()
    image = _image(SIZE, SIZE)
    rcnn = RCNNDetector(detector, input_size=SIZE, context_padding=0)
    scores, deltas = rcnn.window_scores(
        rcnn.normalize(image), torch.tensor([[0.0, 0.0, SIZE, SIZE]])
    )
    assert deltas is None
    torch.testing.assert_close(scores, _whole_image_scores(detector, image), rtol=1e-5, atol=1e-6)


@torch.no_grad()
def test_context_padding_grows_the_window() -> None:
    # With p = S/4 of context the window [S/4, 3S/4] grows by S / (S - 2p) = 2 to the whole image.
    detector = _detector()
    image = _image(SIZE, SIZE, seed=2)
    rcnn = RCNNDetector(detector, input_size=SIZE, context_padding=SIZE // 4)
    window = torch.tensor([[SIZE / 4, SIZE / 4, 3 * SIZE / 4, 3 * SIZE / 4]])
    crops = next(rcnn.warp_windows(rcnn.normalize(image), window))
    assert crops.shape == (1, 3, SIZE, SIZE)
    torch.testing.assert_close(crops[0], rcnn.normalize(image), rtol=1e-5, atol=1e-5)
    scores, _ = rcnn.window_scores(rcnn.normalize(image), window)
    torch.testing.assert_close(scores, _whole_image_scores(detector, image), rtol=1e-5, atol=1e-6)


@torch.no_grad()
def test_outside_the_image_is_the_mean() -> None:
    # The grown window of a corner box leaves the image: those pixels are 0 after normalisation.
    detector = _detector()
    image = _image(40, 50)
    rcnn = RCNNDetector(detector, input_size=SIZE, context_padding=SIZE // 4)
    crops = next(rcnn.warp_windows(rcnn.normalize(image), torch.tensor([[0.0, 0.0, 20.0, 20.0]])))
    # The box covers output pixels 8..23; the grown window's left 8 columns lie left of x = 0.
    assert torch.all(crops[0, :, :, :7] == 0)
    assert torch.all(crops[0, :, :7, :] == 0)
    assert crops[0, :, 10:20, 10:20].abs().sum() > 0


@torch.no_grad()
def test_chunking_and_order_do_not_change_scores() -> None:
    detector = _detector(box_regression=True)
    image = _image(48, 64, seed=3)
    g = torch.Generator().manual_seed(4)
    xy = torch.rand(9, 2, generator=g) * torch.tensor([40.0, 30.0])
    wh = 4 + torch.rand(9, 2, generator=g) * 20
    boxes = torch.cat([xy, xy + wh], dim=1)
    one = RCNNDetector(detector, input_size=SIZE, context_padding=4, chunk_size=1)
    many = RCNNDetector(detector, input_size=SIZE, context_padding=4, chunk_size=4)
    s1, d1 = one.window_scores(one.normalize(image), boxes)
    s4, d4 = many.window_scores(many.normalize(image), boxes)
    torch.testing.assert_close(s1, s4, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(d1, d4, rtol=1e-5, atol=1e-6)
    assert s1.shape == (9, 3) and d1.shape == (9, 3, 4)
    perm = torch.randperm(9, generator=g)
    sp, _ = many.window_scores(many.normalize(image), boxes[perm])
    torch.testing.assert_close(sp, s1[perm], rtol=1e-5, atol=1e-6)
    # Different windows see different pixels: their scores differ.
    assert not torch.allclose(s1[0], s1[1])


@torch.no_grad()
def test_forward_matches_the_detector_output_format() -> None:
    detector = _detector()
    images = [_image(40, 50, seed=5), _image(30, 60, seed=6)]
    proposals = [
        torch.tensor([[0.0, 0.0, 25.0, 20.0], [10.0, 5.0, 50.0, 40.0]]),
        torch.zeros((0, 4)),
    ]
    rcnn = RCNNDetector(detector, input_size=SIZE, context_padding=4)
    assert not rcnn.training  # mirrors the detector's mode
    out = rcnn(images, proposals)
    assert len(out) == 2
    first, empty = out
    assert first["boxes"].dtype == torch.float32 and first["labels"].dtype == torch.int64
    # Without a box regressor every detection is one of the proposals.
    for box in first["boxes"]:
        assert any(torch.equal(box, p) for p in proposals[0])
    assert set(first["labels"].tolist()) <= {1, 2, 3}
    assert empty["boxes"].shape == (0, 4)
    # The scores are the R-CNN window scores, kept through per-class NMS.
    scores, _ = rcnn.window_scores(rcnn.normalize(images[0]), proposals[0])
    assert first["scores"].max() == pytest.approx(float(scores.max()), rel=1e-6)


def test_errors() -> None:
    detector = _detector()
    with pytest.raises(ValueError, match="context_padding"):
        RCNNDetector(detector, input_size=SIZE, context_padding=SIZE // 2)
    with pytest.raises(ValueError, match="minimum input side"):
        RCNNDetector(detector, input_size=2)
    with pytest.raises(ValueError, match="chunk_size"):
        RCNNDetector(detector, chunk_size=0)
    rcnn = RCNNDetector(detector, input_size=SIZE, context_padding=4)
    with pytest.raises(ValueError, match=r"2 images but 1 proposal"):
        rcnn([_image(40, 40), _image(40, 40)], [torch.zeros((0, 4))])
    with pytest.raises(ValueError, match=r"proposals\[0\] must be Tensor\[M, 4\]"):
        rcnn([_image(40, 40)], [torch.zeros((3, 5))])
    rcnn.train()
    with pytest.raises(RuntimeError, match="for inference"):
        rcnn([_image(40, 40)], [torch.zeros((0, 4))])
