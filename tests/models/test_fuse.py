"""Inference copies: batch norm folded into the convolutions (sppnet.models.fuse)."""

import pytest
import torch
from torch import nn
from torchvision.ops import FrozenBatchNorm2d

from sppnet.config import DetectorConfig
from sppnet.models import SPPNetDetector
from sppnet.models.fuse import fold_batchnorm, fuse_for_inference


def _random_stats(module: nn.Module, seed: int = 0) -> None:
    """Non-trivial running statistics and affine parameters in every batch norm."""
    g = torch.Generator().manual_seed(seed)
    for m in module.modules():
        if isinstance(m, (nn.BatchNorm2d, FrozenBatchNorm2d)):
            c = m.weight.shape[0]
            m.running_mean.copy_(torch.randn(c, generator=g))
            m.running_var.copy_(torch.rand(c, generator=g) * 2 + 0.1)
            m.weight.data.copy_(torch.randn(c, generator=g))
            m.bias.data.copy_(torch.randn(c, generator=g))


@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("norm", [nn.BatchNorm2d, FrozenBatchNorm2d])
def test_folded_conv_computes_the_same_function(bias, norm):
    torch.manual_seed(0)
    block = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1, bias=bias),
        norm(8),
        nn.ReLU(),
        nn.Conv2d(8, 8, 3, groups=8, padding=1, bias=False),  # depthwise, as in MobileNetV2
        norm(8),
    ).eval()
    _random_stats(block)
    x = torch.randn(2, 3, 11, 13)
    expected = block(x)
    assert fold_batchnorm(block) == 2
    assert not any(isinstance(m, norm) for m in block.modules())
    torch.testing.assert_close(block(x), expected, rtol=1e-5, atol=1e-5)


def test_fold_leaves_a_norm_that_follows_no_conv_and_refuses_training_mode():
    block = nn.Sequential(nn.ReLU(), nn.BatchNorm2d(4)).eval()
    assert fold_batchnorm(block) == 0 and isinstance(block[1], nn.BatchNorm2d)
    with pytest.raises(ValueError, match="eval-mode"):
        fold_batchnorm(nn.Sequential(nn.Conv2d(3, 4, 1), nn.BatchNorm2d(4)).train())


def _mobilenet_detector() -> SPPNetDetector:
    torch.manual_seed(0)
    cfg = DetectorConfig(
        num_classes=3,
        backbone="mobilenet_v2_c4",
        backbone_weights=None,
        levels=(2, 1),
        scales=(96, 128),
        fc_dims=(16,),
        score_threshold=0.0,
        max_size=400,
        target_side=64.0,
    )
    detector = SPPNetDetector(cfg).eval()
    _random_stats(detector.backbone)
    return detector


def test_inference_copy_detects_the_same_and_leaves_the_original_alone():
    detector = _mobilenet_detector()
    g = torch.Generator().manual_seed(1)
    image = torch.randint(0, 256, (3, 90, 120), generator=g, dtype=torch.uint8)
    xy = torch.rand(40, 2, generator=g) * 60
    boxes = torch.cat([xy, xy + 10 + torch.rand(40, 2, generator=g) * 50], dim=1)
    norms_before = sum(isinstance(m, nn.BatchNorm2d) for m in detector.modules())

    fused = fuse_for_inference(detector)
    assert sum(isinstance(m, nn.BatchNorm2d) for m in fused.modules()) == 0
    assert sum(isinstance(m, nn.BatchNorm2d) for m in detector.modules()) == norms_before > 0
    conv = next(m for m in fused.backbone.modules() if isinstance(m, nn.Conv2d))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    assert not any(p.requires_grad for p in fused.parameters())

    with torch.no_grad():
        a = detector.compute_features([image])
        b = fused.compute_features([image])
        for x, y in zip(a.maps, b.maps, strict=True):
            torch.testing.assert_close(y, x, rtol=1e-4, atol=1e-4)
        # Per-window scores, before NMS (whose keep/drop decisions near-ties could flip).
        expected, got = (
            det.box_predictor(det.box_head(det.pool_windows(feats, [boxes])))
            for det, feats in ((detector, a), (fused, b))
        )
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)


def test_inference_copy_refuses_to_be_saved(tmp_path):
    fused = fuse_for_inference(_mobilenet_detector())
    with pytest.raises(ValueError, match="inference copy"):
        fused.save_pretrained(tmp_path / "model")
    assert not (tmp_path / "model").exists()
