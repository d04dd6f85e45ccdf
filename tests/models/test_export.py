"""ONNX export with dynamic height and width, checked with onnxruntime against PyTorch."""

from __future__ import annotations

import importlib.util
import os

import numpy as np
import pytest
import torch

from sppnet.models import SPPNetClassifier, create_backbone
from sppnet.models.export import SlicedSpatialPyramidPooling, export_onnx
from sppnet.ops import spp

needs_onnxruntime = pytest.mark.skipif(
    importlib.util.find_spec("onnxruntime") is None or importlib.util.find_spec("onnx") is None,
    reason="onnx/onnxruntime are not installed (pip install 'sppnet[onnx]')",
)


@pytest.mark.parametrize("levels", [(6, 3, 2, 1), (4, 2, 1), (1,), (5, 7)])
@pytest.mark.parametrize("mode", ["max", "avg"])
@pytest.mark.parametrize("size", [(1, 1), (2, 9), (5, 7), (13, 13), (30, 17)])
def test_sliced_spp_equals_the_op(levels, mode, size):
    x = torch.randn(2, 4, *size)
    torch.testing.assert_close(SlicedSpatialPyramidPooling(levels, mode)(x), spp(x, levels, mode))


def _model() -> SPPNetClassifier:
    torch.manual_seed(0)
    backbone = create_backbone("small", channels=(8, 8, 16))
    return SPPNetClassifier(backbone, 10, (6, 3, 2, 1), "max", (32,), 0.2).eval()


def _check_with_onnxruntime(path, model, sizes):
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["images"]
    for batch, (height, width) in zip((1, 3, 2), sizes, strict=False):
        x = torch.randn(batch, 3, height, width)
        (ours,) = session.run(None, {"images": x.numpy()})
        with torch.no_grad():
            expected = model(x).numpy()
        assert ours.shape == (batch, 10)
        np.testing.assert_allclose(ours, expected, rtol=1e-4, atol=1e-5)


@needs_onnxruntime
def test_onnx_export_dynamic_height_and_width(tmp_path):
    model = _model()
    path = export_onnx(model, tmp_path / "classifier.onnx", example_size=(28, 28))
    # Three sizes, none the example's, one below a level's grid (5 x 5 map for level 6).
    _check_with_onnxruntime(path, model, [(20, 20), (36, 60), (113, 90)])


@needs_onnxruntime
@pytest.mark.slow
@pytest.mark.skipif(
    not os.environ.get("SPPNET_TEST_TORCH_EXPORT"),
    reason="the torch.export-based ONNX exporter takes minutes on 2 CPU cores; "
    "set SPPNET_TEST_TORCH_EXPORT=1 to run it",
)
def test_onnx_export_with_torch_export(tmp_path):
    model = _model()
    path = export_onnx(model, tmp_path / "dynamo.onnx", example_size=(28, 28), dynamo=True)
    _check_with_onnxruntime(path, model, [(20, 20), (36, 60), (113, 90)])


def test_export_refuses_bad_arguments(tmp_path):
    with pytest.raises(TypeError, match="SPPNetClassifier"):
        export_onnx(torch.nn.Linear(2, 2), tmp_path / "x.onnx")
    with pytest.raises(ValueError, match="below the minimum"):
        export_onnx(_model(), tmp_path / "x.onnx", example_size=(2, 28))
    assert not (tmp_path / "x.onnx").exists()
