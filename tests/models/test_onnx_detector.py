"""The whole detector in ONNX: RoI-SPP from gathers, the exported graph against PyTorch in
onnxruntime (three image sizes, three box counts, a map smaller than the coarsest level), the numpy
post-processing against the detector's, and ``sppnet export-onnx``."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import torch

from sppnet.cli.main import main
from sppnet.models.detector import DetectionPostprocess, SPPNetDetector
from sppnet.models.detector_config import DetectorConfig
from sppnet.models.onnx_postprocess import postprocess_detections
from sppnet.models.onnx_roi_spp import GatherRoISPP
from sppnet.ops import roi_spp

needs_onnxruntime = pytest.mark.skipif(
    importlib.util.find_spec("onnxruntime") is None or importlib.util.find_spec("onnx") is None,
    reason="onnx/onnxruntime are not installed (pip install 'sppnet[onnx]')",
)


def _random_boxes(k, height, width, spatial_scale, seed):
    """Boxes inside, across and outside the map, degenerate and inverted ones included."""
    g = torch.Generator().manual_seed(seed)
    size = torch.tensor([width, height]) / spatial_scale
    xy = torch.rand(k, 2, generator=g) * size * 1.3 - 0.15 * size
    wh = torch.rand(k, 2, generator=g) * size * 0.8 - 0.05 * size
    return torch.cat([xy, xy + wh], dim=1)


@pytest.mark.parametrize("mode", ["max", "avg"])
@pytest.mark.parametrize("levels", [(6, 3, 2, 1), (4, 2, 1), (5, 7)])
@pytest.mark.parametrize("size", [(1, 1), (2, 3), (5, 7), (23, 31), (40, 9)])
def test_gather_roi_spp_equals_the_op(mode, levels, size):
    height, width = size
    x = torch.randn(1, 6, height, width, generator=torch.Generator().manual_seed(1))
    boxes = _random_boxes(60, height, width, 1 / 16, seed=height * 100 + width)
    expected = roi_spp(x, [boxes], levels, 1 / 16, mode, "paper")
    ours = GatherRoISPP(levels, 1 / 16, mode, table_levels=6)(x, boxes)
    torch.testing.assert_close(ours, expected, rtol=0, atol=1e-6 if mode == "avg" else 0)


def _detector(**overrides) -> SPPNetDetector:
    torch.manual_seed(0)
    cfg = dict(
        num_classes=3,
        class_names=["a", "b", "c"],
        backbone="small",
        backbone_kwargs={"channels": [8, 8, 16]},
        backbone_weights=None,
        levels=(6, 3, 2, 1),
        scales=(96,),
        fc_dims=(16, 16),
        score_threshold=0.05,
        max_size=400,
        target_side=64.0,
        box_voting_iou=0.5,
    )
    cfg.update(overrides)
    det = SPPNetDetector(DetectorConfig(**cfg)).eval()
    if det.box_regressor is not None:  # zero at start: give the decoding something to do
        torch.nn.init.normal_(det.box_regressor.linear.weight, std=0.05)
        torch.nn.init.normal_(det.box_regressor.linear.bias, std=0.05)
    return det


def _image(height, width, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (3, height, width), generator=g, dtype=torch.uint8)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    from sppnet.models.onnx_detector import export_detector_onnx

    det = _detector()
    path = export_detector_onnx(det, tmp_path_factory.mktemp("onnx") / "detector.onnx")
    return det, path


@needs_onnxruntime
@pytest.mark.parametrize(
    "scale, num_boxes",
    # Shorter side 96 px (24 x 36 cells), 40 px (10 x 15) and 16 px (4 x 6: below level 6).
    [(96, 1), (96, 400), (40, 17), (40, 400), (16, 1), (16, 17)],
)
def test_graph_matches_pytorch(exported, scale, num_boxes):
    from sppnet.models.onnx_detector import compare_with_pytorch

    det, path = exported
    diff = compare_with_pytorch(
        det, path, image=_image(80, 120), scale=scale, num_boxes=num_boxes, seed=scale
    )
    assert diff["num_boxes"] == num_boxes
    if scale == 16:
        assert diff["map_height"] < 6
    assert diff["scores"] < 1e-5
    assert diff["boxes"] < 1e-3


@needs_onnxruntime
def test_onnx_detector_equals_the_detector(exported):
    from sppnet.models.onnx_detector import OnnxDetector

    det, path = exported
    onnx_detector = OnnxDetector(path, threads=1)
    assert onnx_detector.settings["class_names"] == ["a", "b", "c"]
    for height, width, k in [(80, 120, 60), (50, 40, 5), (200, 150, 300)]:
        image = _image(height, width, seed=k)
        proposals = _random_boxes(k, height, width, 1.0, seed=k).clamp(min=0)
        with torch.no_grad():
            expected = det([image], [proposals])[0]
        ours = onnx_detector(image, proposals)
        assert ours["labels"].tolist() == expected["labels"].tolist()
        np.testing.assert_allclose(ours["scores"], expected["scores"].numpy(), atol=1e-5)
        np.testing.assert_allclose(ours["boxes"], expected["boxes"].numpy(), atol=1e-3)
    empty = onnx_detector(_image(80, 120), torch.zeros(0, 4))
    assert empty["boxes"].shape == (0, 4) and empty["labels"].shape == (0,)


@needs_onnxruntime
def test_onnx_detector_refuses_maps_beyond_its_table_and_foreign_files(exported, tmp_path):
    import onnx
    from onnx import TensorProto, helper

    from sppnet.models.onnx_detector import OnnxDetector

    _, path = exported
    onnx_detector = OnnxDetector(path)
    side = onnx_detector.settings["max_map_side"] * onnx_detector.settings["stride"]
    with pytest.raises(ValueError, match="table_levels"):
        onnx_detector.run_windows(
            np.zeros((1, 3, 8, side), np.float32), np.zeros((1, 4)), np.ones(2)
        )
    identity = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["y"])],
        "identity",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])],
    )
    foreign = tmp_path / "identity.onnx"
    onnx.save(helper.make_model(identity), foreign)
    with pytest.raises(ValueError, match="not an sppnet detector export"):
        OnnxDetector(foreign)


@needs_onnxruntime
@pytest.mark.slow
@pytest.mark.parametrize(
    "overrides",
    [
        {"pool_mode": "avg", "box_regression_input": "fc7"},
        {"scoring": "svm", "box_regression": False, "box_voting_iou": None},
        {"scoring": "softmax+svm", "levels": (4, 2, 1)},
    ],
)
def test_other_heads_and_pooling_export(overrides, tmp_path):
    from sppnet.models.onnx_detector import compare_with_pytorch, export_detector_onnx

    det = _detector(**overrides)
    path = export_detector_onnx(det, tmp_path / "variant.onnx", example_boxes=3)
    for scale, k in [(96, 50), (16, 9)]:
        diff = compare_with_pytorch(det, path, image=_image(80, 120), scale=scale, num_boxes=k)
        assert diff["scores"] < 1e-5 and diff["boxes"] < 1e-3


@pytest.mark.parametrize("voting", [None, 0.5])
def test_numpy_postprocess_equals_detection_postprocess(voting):
    g = torch.Generator().manual_seed(3)
    k, c = 300, 4
    xy = torch.rand(k, c, 2, generator=g) * 180 - 10
    boxes = torch.cat([xy, xy + 5 + torch.rand(k, c, 2, generator=g) * 80], dim=2)
    scores = torch.rand(k, c, generator=g)
    post = DetectionPostprocess(0.2, 0.3, 50, min_box_size=2.0, box_voting_iou=voting)
    expected = post(boxes, scores, (150, 170))
    ours = postprocess_detections(
        scores.numpy(),
        boxes.numpy(),
        (150, 170),
        score_threshold=0.2,
        nms_threshold=0.3,
        detections_per_image=50,
        min_box_size=2.0,
        box_voting_iou=voting,
    )
    assert ours["labels"].tolist() == expected["labels"].tolist()
    np.testing.assert_allclose(ours["scores"], expected["scores"].numpy())
    np.testing.assert_allclose(ours["boxes"], expected["boxes"].numpy(), atol=1e-4)
    with pytest.raises(ValueError, match="expected scores"):
        postprocess_detections(scores.numpy(), boxes.numpy()[:, :2], (9, 9), score_threshold=0)


@needs_onnxruntime
def test_export_onnx_command(tmp_path, capsys):
    model_dir = tmp_path / "model"
    _detector().save_pretrained(model_dir)
    out = tmp_path / "detector.onnx"
    assert main(["export-onnx", "--weights", str(model_dir), "--out", str(out), "--check"]) == 0
    printed = capsys.readouterr().out
    assert out.is_file() and "max |scores| difference" in printed
    assert main(["export-onnx", "--weights", str(tmp_path / "nothing"), "--out", str(out)]) == 2
    assert "sppnet export-onnx" in capsys.readouterr().err


@needs_onnxruntime
def test_onnx_timing_reports_both_runtimes(tmp_path):
    from sppnet.benchmarks.onnx_detect import format_onnx_row, time_onnx_detector

    image = _image(80, 120)
    proposals = _random_boxes(40, 80, 120, 1.0, seed=5).clamp(min=0)
    result = time_onnx_detector(
        _detector(), image, proposals, threads=1, repeats=1, onnx_path=tmp_path / "d.onnx"
    )
    assert (tmp_path / "d.onnx").is_file()
    assert result["windows"] == 40 and result["image_size"] == [80, 120]
    assert result["pytorch_seconds"] > 0 and result["onnxruntime_seconds"] > 0
    assert result["detections"][0] == result["detections"][1] > 0
    assert result["max_score_difference"] < 1e-5 and result["max_box_difference"] < 1e-3
    assert "onnxruntime vs PyTorch (120x80, 40 windows, 1 threads)" in format_onnx_row(result)
