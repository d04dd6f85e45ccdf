import pytest
import torch
from factories import tiny_detector

from sppnet.config import DetectorConfig, preset
from sppnet.engine.checkpoint import CheckpointError
from sppnet.models import SPPNetDetector, create_backbone
from sppnet.models.detector import WindowSampling, label_windows, sample_windows
from sppnet.models.heads import SoftmaxHead
from sppnet.models.score_fusion import SoftmaxSVMFusion
from sppnet.models.svm import LinearSVMs
from sppnet.ops import roi_spp


def _detector(**overrides) -> SPPNetDetector:
    settings = dict(num_classes=3, scales=(96,), fc_dims=(16, 16), score_threshold=0.0)
    return tiny_detector(**{**settings, "target_side": 64.0, **overrides})


def _image(h=80, w=120, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (3, h, w), generator=g, dtype=torch.uint8)


def _boxes(n, h=80, w=120, seed=0):
    g = torch.Generator().manual_seed(seed)
    xy = torch.rand(n, 2, generator=g) * torch.tensor([w * 0.6, h * 0.6])
    wh = torch.rand(n, 2, generator=g) * torch.tensor([w * 0.4, h * 0.4]) + 4
    return torch.cat([xy, xy + wh], dim=1)


def test_structure_names_the_bench_engineer_relies_on():
    det = _detector()
    for name in (
        "backbone",
        "transform",
        "pooler",
        "box_head",
        "box_predictor",
        "box_regressor",
        "postprocess",
    ):
        assert hasattr(det, name), name
    assert det.pooler.mapping == "paper"
    assert det.pooler.spatial_scale == pytest.approx(1 / det.backbone.stride)
    assert det.pooled_features == det.backbone.out_channels * 5


def test_eval_output_format():
    det = _detector()
    images = [_image(), _image(60, 90, seed=1)]
    proposals = [_boxes(30), _boxes(20, 60, 90, seed=1)]
    with torch.no_grad():
        out = det(images, proposals)
    assert len(out) == 2
    for res, img in zip(out, images, strict=True):
        assert set(res) == {"boxes", "labels", "scores"}
        assert res["boxes"].dtype == torch.float32 and res["boxes"].shape[1] == 4
        assert res["labels"].dtype == torch.int64
        assert ((res["labels"] >= 1) & (res["labels"] <= 3)).all()
        h, w = img.shape[1:]
        assert (res["boxes"][:, 0::2] <= w).all() and (res["boxes"][:, 1::2] <= h).all()
        assert (res["boxes"] >= 0).all()
        assert res["boxes"].shape[0] <= det.config.detections_per_image
        assert (res["scores"][:-1] >= res["scores"][1:]).all()


def test_pool_windows_equals_roi_spp_on_the_resized_map():
    det = _detector()
    img = _image()
    props = _boxes(25)
    with torch.no_grad():
        feats = det.compute_features([img])
        pooled = det.pool_windows(feats, [props])
        fx, fy = feats.factors[0][0].tolist()
        scaled = props * torch.tensor([fx, fy, fx, fy])
        expected = roi_spp(feats.maps[0], [scaled], (2, 1), 1 / det.backbone.stride, "max")
    torch.testing.assert_close(pooled, expected)
    assert pooled.shape == (25, det.pooled_features)


def test_multi_scale_pools_each_window_at_its_assigned_scale():
    det = _detector(scales=(64, 96, 160))
    img = _image()
    props = torch.cat([_boxes(20), torch.tensor([[0.0, 0.0, 119.0, 79.0], [3, 3, 9, 9]])])
    with torch.no_grad():
        feats = det.compute_features([img])
        pooled = det.pool_windows(feats, [props])
        index = det.window_scales(feats, [props])
        assert set(index.tolist()) >= {0, 2}  # the big window goes small, the tiny one large
        for k in range(3):
            one = det.pool_windows(
                type(feats)([feats.maps[k]], [feats.factors[k]], feats.image_sizes), [props]
            )
            rows = index == k
            torch.testing.assert_close(pooled[rows], one[rows])


def test_images_of_different_sizes_give_the_same_features_as_alone():
    det = _detector()
    a, b = _image(), _image(50, 70, seed=3)
    pa, pb = _boxes(10), _boxes(8, 50, 70, seed=3)
    with torch.no_grad():
        together = det.pool_windows(det.compute_features([a, b]), [pa, pb])
        alone_a = det.pool_windows(det.compute_features([a]), [pa])
        alone_b = det.pool_windows(det.compute_features([b]), [pb])
    torch.testing.assert_close(together, torch.cat([alone_a, alone_b]))


def test_training_mode_returns_a_loss_that_reaches_fc_and_trunk():
    det = _detector().train()
    img = _image()
    gt = torch.tensor([[10.0, 10.0, 50.0, 60.0]])
    props = torch.cat([gt + torch.randn(20, 4), _boxes(40)])
    losses = det([img], [props], [{"boxes": gt, "labels": torch.tensor([2])}])
    assert set(losses) == {"loss_classifier", "loss_box_reg"}
    loss = losses["loss_classifier"]
    assert torch.isfinite(loss) and loss > 0
    loss.backward()
    assert det.box_head.fc6.weight.grad.abs().sum() > 0
    assert det.box_predictor.fc8.weight.grad.abs().sum() > 0
    trunk_grads = [p.grad for p in det.backbone.parameters() if p.grad is not None]
    assert trunk_grads and sum(g.abs().sum() for g in trunk_grads) > 0
    assert det.box_regressor.linear.weight.grad is None  # not part of this loss


@pytest.mark.parametrize("regression_input", ["pool5", "fc7"])
def test_box_loss_reaches_the_regressor_and_through_it_the_trunk(regression_input):
    det = _detector(box_regression_input=regression_input).train()
    with torch.no_grad():  # a regressor at zero passes no gradient on to its input
        det.box_regressor.linear.weight.normal_(0, 0.01)
    gt = torch.tensor([[10.0, 10.0, 50.0, 60.0]])
    props = torch.cat([gt + torch.randn(20, 4), _boxes(40)])
    losses = det([_image()], [props], [{"boxes": gt, "labels": torch.tensor([2])}])
    losses["loss_box_reg"].backward()
    grad = det.box_regressor.linear.weight.grad.view(3, 4, -1)
    assert grad[1].abs().sum() > 0  # class 2's rows
    assert grad[0].abs().sum() == 0 and grad[2].abs().sum() == 0
    assert det.box_predictor.fc8.weight.grad is None
    trunk_grads = [p.grad for p in det.backbone.parameters() if p.grad is not None]
    assert trunk_grads and sum(g.abs().sum() for g in trunk_grads) > 0


def test_box_loss_is_fast_rcnn_smooth_l1_over_all_sampled_windows():
    det = _detector(box_coder_weights=(1.0, 1.0, 1.0, 1.0)).train()
    det.window_sampling = WindowSampling(windows_per_image=64, fg_fraction=1.0)
    gt = torch.tensor([[10.0, 10.0, 50.0, 60.0]])
    shifted = torch.tensor([[12.0, 10.0, 52.0, 60.0]])  # IoU 0.9: foreground, dx = -2 / 40
    background = torch.tensor([[30.0, 10.0, 70.0, 60.0]])  # IoU 1/3
    far = torch.tensor([[90.0, 60.0, 110.0, 75.0]])  # IoU 0: not sampled
    props = torch.cat([shifted, background, far])
    losses = det([_image()], [props], [{"boxes": gt, "labels": torch.tensor([1])}])
    # Sampled: the ground-truth box (target 0), the shifted window (target dx = -0.05) and the
    # background one (no box target). The zero-initialised regressor predicts 0; smooth L1 with
    # beta 1/9 is 0.5 * x^2 / beta below beta; summed over the foreground, divided by all three.
    expected = 0.5 * 0.05**2 * 9 / 3
    assert losses["loss_box_reg"].item() == pytest.approx(expected, rel=1e-4)


def test_a_detector_without_box_regressor_has_only_the_classifier_loss():
    det = _detector(box_regression=False).train()
    gt = torch.tensor([[10.0, 10.0, 50.0, 60.0]])
    losses = det([_image()], [_boxes(30)], [{"boxes": gt, "labels": torch.tensor([1])}])
    assert set(losses) == {"loss_classifier"}


def test_train_keeps_batch_norm_frozen():
    det = _detector(backbone="mobilenet_v2_c4", backbone_kwargs={}, scales=(64,), levels=(1,))
    det.train()
    norms = [m for m in det.backbone.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert norms and all(not m.training for m in norms)
    assert all(not p.requires_grad for m in norms for p in m.parameters())


def test_sampling_rules():
    windows = torch.tensor(
        [[0, 0, 10, 10], [0, 0, 10, 9], [0, 0, 10, 4], [0, 0, 10, 1], [50, 50, 60, 60]],
        dtype=torch.float32,
    )
    gt = torch.tensor([[0.0, 0.0, 10.0, 10.0]])
    max_iou, matched, labels = label_windows(windows, gt, torch.tensor([7]))
    torch.testing.assert_close(max_iou, torch.tensor([1.0, 0.9, 0.4, 0.1, 0.0]))
    assert labels.tolist() == [7] * 5 and matched.tolist() == [0] * 5
    fg, bg = sample_windows(max_iou, num_samples=8, fg_fraction=0.25)
    assert sorted(fg.tolist()) == [0, 1]  # 25% of 8 = 2 foreground
    assert sorted(bg.tolist()) == [2, 3]  # IoU in [0.1, 0.5); 0.0 is not background
    fg, bg = sample_windows(max_iou, num_samples=4, fg_fraction=0.25)
    assert fg.numel() == 1 and bg.numel() == 2


def test_save_and_load_round_trip(tmp_path):
    det = _detector()
    det.set_box_predictor(LinearSVMs(det.representation_size, 3))
    with torch.no_grad():
        det.box_predictor.weight.normal_()
    img, props = _image(), _boxes(30)
    det.save_pretrained(tmp_path / "m")
    again = SPPNetDetector.from_pretrained(tmp_path / "m")
    assert again.config == det.config
    assert isinstance(again.box_predictor, LinearSVMs)
    assert again.postprocess.score_threshold == det.config.svm_score_threshold
    with torch.no_grad():
        a, b = det([img], [props])[0], again([img], [props])[0]
    for k in a:
        torch.testing.assert_close(a[k], b[k])


def test_from_pretrained_rejects_a_foreign_or_damaged_checkpoint(tmp_path):
    from sppnet.engine.checkpoint import save_model

    save_model(tmp_path / "other", {"w": torch.zeros(2)}, {"kind": "something else"})
    with pytest.raises(CheckpointError, match="SPPNetDetector"):
        SPPNetDetector.from_pretrained(tmp_path / "other")
    det = _detector()
    det.save_pretrained(tmp_path / "m")
    weights = tmp_path / "m" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-10])
    with pytest.raises(CheckpointError):
        SPPNetDetector.from_pretrained(tmp_path / "m")


def test_set_box_predictor_switches_threshold_and_checks_type():
    det = _detector(score_threshold=0.05, svm_score_threshold=-0.5)
    det.set_box_predictor(LinearSVMs(det.representation_size, 3))
    assert det.config.scoring == "svm" and det.postprocess.score_threshold == -0.5
    det.set_box_predictor(SoftmaxHead(det.representation_size, 3))
    assert det.config.scoring == "softmax" and det.postprocess.score_threshold == 0.05
    with pytest.raises(TypeError):
        det.set_box_predictor(torch.nn.Linear(16, 4))
    with pytest.raises(ValueError, match="classes"):
        det.set_box_predictor(SoftmaxHead(det.representation_size, 5))


def test_detector_builds_saves_and_reloads_the_fused_head(tmp_path):
    det = _detector(scoring="softmax+svm", score_threshold=0.02, svm_score_threshold=-0.7)
    assert isinstance(det.box_predictor, SoftmaxSVMFusion)
    assert det.postprocess.score_threshold == 0.02
    with torch.no_grad():
        det.box_predictor.svms.weight.normal_()
    det.save_pretrained(tmp_path / "m")
    again = SPPNetDetector.from_pretrained(tmp_path / "m")
    assert again.config.scoring == "softmax+svm"
    assert isinstance(again.box_predictor, SoftmaxSVMFusion)
    x = torch.randn(5, det.representation_size)
    torch.testing.assert_close(again.box_predictor(x), det.box_predictor(x))
    # Swapping heads moves the config and the threshold with them.
    again.set_box_predictor(again.box_predictor.svms)
    assert again.config.scoring == "svm" and again.postprocess.score_threshold == -0.7
    again.set_box_predictor(
        SoftmaxSVMFusion(
            SoftmaxHead(again.representation_size, 3), LinearSVMs(again.representation_size, 3)
        )
    )
    assert again.config.scoring == "softmax+svm" and again.postprocess.score_threshold == 0.02


def test_bad_input_is_reported():
    det = _detector()
    with pytest.raises(ValueError, match="proposal"):
        det([_image()], [])
    with pytest.raises(ValueError, match=r"Tensor\[M, 4\]"):
        det([_image()], [torch.zeros(3, 5)])
    with pytest.raises(ValueError, match="RGB"):
        det([torch.zeros(1, 20, 20, dtype=torch.uint8)], [torch.zeros(0, 4)])
    det.train()
    with pytest.raises(ValueError, match="target"):
        det([_image()], [_boxes(3)])


def test_presets_and_config_round_trip(tmp_path):
    paper = preset("paper")
    assert paper.levels == (6, 3, 2, 1) and paper.scales == (688,) and paper.target_side == 224
    assert preset("paper5").scales == (480, 576, 688, 864, 1200)
    demo5 = preset("demo5")
    assert demo5.scales == (335, 402, 480, 603, 837)
    assert demo5.target_side == pytest.approx(224 * 480 / 688)
    assert DetectorConfig.from_dict(demo5.to_dict()) == demo5
    import json

    import yaml

    assert DetectorConfig.from_dict(json.loads(demo5.to_json())) == demo5
    assert DetectorConfig.from_dict(yaml.safe_load(demo5.to_yaml())) == demo5
    with pytest.raises(ValueError, match="unknown key"):
        DetectorConfig.from_dict({"levelz": [1]})
    with pytest.raises(ValueError, match="scoring"):
        DetectorConfig(scoring="svn")
    with pytest.raises(ValueError, match="max_size"):
        DetectorConfig(scales=(800,), max_size=600)


def test_mobilenet_c4_trunk_is_the_prefix_of_mobilenet_v2():
    c4 = create_backbone("mobilenet_v2_c4")
    full = create_backbone("mobilenet_v2")
    assert (c4.stride, c4.out_channels, c4.offset) == (16, 96, 0.0)
    c4.body.load_state_dict(full.body[:14].state_dict())
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(c4.eval()(x), full.body[:14].eval()(x))
