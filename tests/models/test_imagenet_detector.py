"""The untrained ImageNet window classifier: SPP (1,) avg + MobileNetV2's own head vs the network.

With the paper's mapping the whole-image window drops the first row and column of cells (their
centres lie on the image edge), so its logits are close to the network's; they are equal exactly
when the mapped window is the whole map: a 1 x 1 map (a 32 x 32 image at stride 32), or a window
reaching past the image on every side.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
import torchvision

from sppnet.models import WeightsNotFoundError
from sppnet.models.imagenet_detector import (
    ImageNetClassifierHead,
    TopClassPostprocess,
    imagenet_class_names,
    imagenet_detector,
)

CAT_CLASSES = {"tabby", "tiger cat", "Persian cat", "Siamese cat", "Egyptian cat"}


def _detector(scales: tuple[int, ...]):
    try:
        return imagenet_detector(scales=scales)
    except WeightsNotFoundError as err:  # pragma: no cover - depends on the environment
        pytest.skip(f"MobileNetV2 ImageNet weights not installed: {err}")


@pytest.fixture(scope="module")
def chelsea() -> torch.Tensor:
    skimage_data = pytest.importorskip("skimage.data")
    return torch.from_numpy(skimage_data.chelsea()).permute(2, 0, 1).contiguous()


def _torchvision_logits(detector, image: torch.Tensor) -> torch.Tensor:
    """torchvision's MobileNetV2 forward (features, global average pool, classifier) with the
    detector's weights, on the image as the detector's transform sees it (no resize here)."""
    model = torchvision.models.mobilenet_v2()
    model.features = detector.backbone.body
    model.classifier = detector.box_predictor.classifier
    model.eval()
    return model(detector.backbone.normalize(image.float() / 255)[None])[0]


def _window_logits(detector, image: torch.Tensor, box: list[float]) -> torch.Tensor:
    features = detector.compute_features([image])
    pooled = detector.pool_windows(features, [torch.tensor([box])])
    return detector.box_predictor(pooled)[0]


@torch.no_grad()
def test_one_cell_map_is_exactly_the_network() -> None:
    # 32 x 32 at stride 32: a 1 x 1 map; the whole-image window maps to that one cell.
    detector = _detector((32,))
    g = torch.Generator().manual_seed(0)
    image = torch.randint(0, 256, (3, 32, 32), generator=g, dtype=torch.uint8)
    assert detector.backbone.feature_size(32, 32) == (1, 1)
    logits = _window_logits(detector, image, [0.0, 0.0, 32.0, 32.0])
    assert torch.equal(logits, _torchvision_logits(detector, image))


@torch.no_grad()
def test_window_past_the_image_is_the_network_and_whole_image_window_is_close(
    chelsea: torch.Tensor,
) -> None:
    height, width = chelsea.shape[-2:]
    detector = _detector((min(height, width),))  # shorter side unchanged: no resize
    reference = _torchvision_logits(detector, chelsea)
    assert imagenet_class_names()[int(reference.argmax())] in CAT_CLASSES
    # x1 < 0 and x2 > S * (W' - 1): the mapped window is the whole 10 x 15 map.
    around = _window_logits(detector, chelsea, [-0.5, -0.5, width + 0.5, height + 0.5])
    torch.testing.assert_close(around, reference, rtol=1e-4, atol=1e-4)
    # The whole-image window loses row 0 and column 0 of the map: close, not equal.
    whole = _window_logits(detector, chelsea, [0.0, 0.0, float(width), float(height)])
    assert not torch.allclose(whole, reference, atol=1e-3)
    assert int(whole.argmax()) == int(reference.argmax())
    assert F.cosine_similarity(whole, reference, dim=0) > 0.98
    torch.testing.assert_close(
        whole.softmax(0).max(), reference.softmax(0).max(), rtol=0.05, atol=0.0
    )


@torch.no_grad()
def test_detects_the_cat(chelsea: torch.Tensor) -> None:
    detector = _detector((224, 320))
    height, width = chelsea.shape[-2:]
    # The whole photo and the cat's face: both are labelled as a cat; the two windows overlap
    # (IoU 0.54) so class-agnostic NMS keeps the better one.
    windows = torch.tensor([[0.0, 0.0, width, height], [120.0, 0.0, 380.0, 280.0]])
    (out,) = detector([chelsea], [windows])
    assert out["boxes"].shape == (1, 4) and out["labels"].dtype == torch.int64
    names = detector.config.class_names
    assert names[int(out["labels"][0]) - 1] in CAT_CLASSES
    assert 0.3 < float(out["scores"][0]) <= 1.0
    assert any(torch.equal(out["boxes"][0], w) for w in windows)


def test_class_names() -> None:
    names = imagenet_class_names()
    assert len(names) == 1000 and names[0] == "tench" and names[285] == "Egyptian cat"


def test_head_scores_are_a_distribution() -> None:
    head = ImageNetClassifierHead(torch.nn.Linear(8, 5), num_classes=5)
    scores = head.class_scores(torch.randn(4, 8))
    assert scores.shape == (4, 5)
    torch.testing.assert_close(scores.sum(1), torch.ones(4))


def test_top_class_postprocess() -> None:
    post = TopClassPostprocess(score_threshold=0.3, nms_threshold=0.3, detections_per_image=10)
    # Window 0: class 2 (0.6); window 1 overlaps it (IoU 0.81) with class 1 (0.5): suppressed
    # across classes. Window 2 is elsewhere, class 3 at 0.35. Window 3 is below the threshold.
    scores = torch.tensor(
        [[0.1, 0.6, 0.3], [0.5, 0.4, 0.1], [0.3, 0.35, 0.35 + 1e-3], [0.25, 0.25, 0.25]]
    )
    base = torch.tensor(
        [[0.0, 0.0, 10.0, 10.0], [0.0, 0.0, 9.0, 9.0], [20.0, 20.0, 30.0, 30.0], [40, 0, 50, 9.0]]
    )
    boxes = base[:, None, :].expand(4, 3, 4).clone()
    boxes[0, 1] = torch.tensor([1.0, 1.0, 11.0, 11.0])  # class 2's own box for window 0
    out = post(boxes, scores, (40, 60))
    assert out["labels"].tolist() == [2, 3]
    torch.testing.assert_close(out["scores"], torch.tensor([0.6, 0.351]))
    torch.testing.assert_close(out["boxes"][0], torch.tensor([1.0, 1.0, 11.0, 11.0]))
    capped = TopClassPostprocess(0.3, 0.3, detections_per_image=1)(boxes, scores, (40, 60))
    assert capped["labels"].tolist() == [2]


def test_weights_none_is_refused() -> None:
    with pytest.raises(ValueError, match="random network"):
        imagenet_detector(weights=None)
