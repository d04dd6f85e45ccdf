"""The detector's training stages (sppnet.engine.detection)."""

import numpy as np
import pytest
import torch
from factories import tiny_detector

from sppnet.config import DetectorConfig, TrainingConfig
from sppnet.engine.detection import (
    DetectionSet,
    FeatureCache,
    ridge_regression,
    svm_training_set,
    train_detector,
)
from sppnet.inference import predict, predict_variants
from sppnet.models import SPPNetDetector
from sppnet.ops.boxes import box_iou


def _small_detector(**overrides) -> SPPNetDetector:
    return tiny_detector(**{"max_size": 200, **overrides})


def _toy_set(n=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    items, proposals = [], []
    for i in range(n):
        image = torch.randint(0, 256, (3, 64, 80), generator=g, dtype=torch.uint8)
        boxes = torch.tensor([[8.0, 8.0, 40.0, 40.0], [44.0, 20.0, 76.0, 60.0]])
        target = {
            "boxes": boxes,
            "labels": torch.tensor([1, 2]),
            "difficult": torch.tensor([False, False]),
            "image_id": f"img{i}",
            "size": (64, 80),
        }
        items.append((image, target))
        jitter = boxes.repeat(10, 1) + torch.randn(20, 4, generator=g) * 3
        rand_xy = torch.rand(30, 2, generator=g) * 50
        rand = torch.cat([rand_xy, rand_xy + 8 + torch.rand(30, 2, generator=g) * 20], dim=1)
        proposals.append(torch.cat([jitter, rand]))
    return items, proposals


def test_ridge_regression_matches_the_normal_equations_in_both_forms():
    g = torch.Generator().manual_seed(0)
    for n, d in ((50, 8), (8, 50)):  # primal and dual forms
        x = torch.randn(n, d, generator=g)
        y = torch.randn(n, 3, generator=g)
        w, b = ridge_regression(x, y, lam=2.0)
        xn, yn = x.double().numpy(), y.double().numpy()
        xc, yc = xn - xn.mean(0), yn - yn.mean(0)
        w_ref = np.linalg.solve(xc.T @ xc + 2.0 * np.eye(d), xc.T @ yc)
        b_ref = yn.mean(0) - xn.mean(0) @ w_ref
        np.testing.assert_allclose(w.numpy(), w_ref, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(b.numpy(), b_ref, rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError):
        ridge_regression(x, y, lam=0.0)


def test_feature_cache_matches_live_features():
    det = _small_detector(scales=(48, 64))
    items, proposals = _toy_set()
    data = DetectionSet(items, proposals, keep_images=True)
    cache = FeatureCache.build(det, data, torch.float32)
    assert len(cache) == 3
    assert cache.nbytes == sum(m.numel() * 4 for per in cache.maps for m in per)
    with torch.no_grad():
        live = det.compute_features([data.image(1), data.image(2)])
    cached = cache.features([1, 2])
    for a, b in zip(live.maps, cached.maps, strict=True):
        torch.testing.assert_close(a, b)
    half = FeatureCache.build(det, data, torch.float16)
    assert half.nbytes * 2 == cache.nbytes


def test_svm_training_set_labels():
    det = _small_detector()
    gt = torch.tensor([[10.0, 10.0, 30.0, 30.0]])
    proposals = torch.tensor(
        [
            [10.0, 10.0, 30.0, 29.0],  # IoU 0.95 with the class-1 box: ignored for class 1
            [10.0, 10.0, 30.0, 18.0],  # IoU 0.4: ignored for class 1 (>= 0.3)
            [10.0, 10.0, 30.0, 14.0],  # IoU 0.2: negative
            [40.0, 40.0, 60.0, 60.0],  # far away: negative
        ]
    )
    image = torch.zeros(3, 64, 80, dtype=torch.uint8)
    target = {"boxes": gt, "labels": torch.tensor([1]), "image_id": "a", "size": (64, 80)}
    data = DetectionSet([(image, target)], [proposals], keep_images=True)
    cfg = TrainingConfig(svm_neg_nms=1.0)
    x, y, owner = svm_training_set(det, data, FeatureCache.build(det, data), cfg)
    assert x.shape == (5, det.representation_size)
    assert owner.tolist() == [0] * 5
    # Row 0 is the ground truth; class 2 has no box in the image, so every row is its negative.
    assert y[:, 0].tolist() == [1, 0, 0, -1, -1]
    assert y[:, 1].tolist() == [-1, -1, -1, -1, -1]


def test_predict_variants_agrees_with_the_detector():
    det = _small_detector(score_threshold=0.0)
    items, proposals = _toy_set(2)
    data = DetectionSet(items, proposals, keep_images=True)
    preds, _ = predict_variants(det, data, {"softmax": det.box_predictor})
    direct, _ = predict(det, data)
    assert set(preds) == {"softmax", "softmax/no_bbox"}
    for a, b in zip(preds["softmax"], direct, strict=True):
        for k in a:
            torch.testing.assert_close(a[k], b[k])


def test_train_detector_installs_the_fused_head_for_softmax_plus_svm(tmp_path):
    from sppnet.models.score_fusion import SoftmaxSVMFusion

    items, proposals = _toy_set(2)
    data = DetectionSet(items, proposals, keep_images=True)
    stages = TrainingConfig(
        stages=("finetune_fc", "svm"), epochs_fc=1, images_per_batch=2, windows_per_batch=16
    )
    det = _small_detector(scoring="softmax+svm")
    heads = train_detector(det, data, stages, tmp_path / "a")
    assert isinstance(det.box_predictor, SoftmaxSVMFusion)
    assert det.box_predictor.softmax is heads.softmax and det.box_predictor.svms is heads.svm
    assert det.config.scoring == "softmax+svm"
    assert det.postprocess.score_threshold == det.config.score_threshold
    det = _small_detector(scoring="softmax+svm")
    with pytest.raises(ValueError, match="'svm' stage did not run"):
        train_detector(det, data, stages.replace(stages=("finetune_fc",)), tmp_path / "b")


@pytest.mark.parametrize("regression_input", ["pool5", "fc7"])
def test_box_loss_weight_trains_the_regressor_beside_the_classifier(tmp_path, regression_input):
    items, proposals = _toy_set(2)
    data = DetectionSet(items, proposals, keep_images=True)
    # Every foreground window in every step: the regressor fits a fixed set.
    cfg = TrainingConfig(
        stages=("finetune_fc",),
        epochs_fc=30,
        lr_fc=0.01,
        images_per_batch=2,
        windows_per_batch=128,
        fg_fraction=1.0,
    )
    model = dict(box_regression_input=regression_input, box_coder_weights=(10.0, 10.0, 5.0, 5.0))
    plain = _small_detector(**model)
    heads = train_detector(plain, data, cfg, tmp_path / "plain")
    assert plain.box_regressor.linear.weight.abs().sum() == 0  # left to the ridge stage
    assert "loss_box_reg" not in heads.logs[-1].records[0]

    joint = _small_detector(**model)
    heads = train_detector(joint, data, cfg.replace(box_loss_weight=1.0), tmp_path / "joint")
    records = heads.logs[-1].records
    assert {"loss", "loss_classifier", "loss_box_reg"} <= set(records[0])
    for r in records:
        assert r["loss"] == pytest.approx(r["loss_classifier"] + r["loss_box_reg"], rel=1e-5)
    assert records[-1]["loss_box_reg"] < records[0]["loss_box_reg"]
    # The learned deltas move the training windows towards their boxes.
    gt = data.targets[0]["boxes"]
    windows = data.proposals[0][:20]  # jittered copies of the two boxes, alternating
    labels = torch.tensor([1, 2] * 10)
    with torch.no_grad():
        pooled = joint.pool_windows(joint.compute_features([data.image(0)]), [windows])
        _, deltas = joint.score_windows(pooled)
    moved = joint.box_coder.decode(deltas[torch.arange(20), labels - 1], windows)
    before = box_iou(windows, gt)[torch.arange(20), labels - 1].mean()
    after = box_iou(moved, gt)[torch.arange(20), labels - 1].mean()
    assert after > before + 0.005, (before, after)


def test_box_loss_weight_needs_a_box_regressor(tmp_path):
    items, proposals = _toy_set(2)
    data = DetectionSet(items, proposals, keep_images=True)
    cfg = TrainingConfig(stages=("finetune_fc",), epochs_fc=1, box_loss_weight=1.0)
    with pytest.raises(ValueError, match="box_loss_weight > 0 needs a box regressor"):
        train_detector(_small_detector(box_regression=False), data, cfg, tmp_path)
    with pytest.raises(ValueError, match="box_loss_weight must be >= 0"):
        TrainingConfig(box_loss_weight=-1.0)


@pytest.mark.slow
def test_small_end_to_end_training_learns_the_demo_objects(tmp_path):
    """A handful of demo images: the loss falls and a trained-on digit is found again."""
    from sppnet.data.demo import load_demo, make_demo_dataset

    make_demo_dataset(tmp_path / "data", num_train=6, num_val=0, num_test=1, seed=0)
    dataset = load_demo(tmp_path / "data", "train")
    g = torch.Generator().manual_seed(0)
    proposals = []
    for i in range(len(dataset)):
        # Proposal quality is not under test here: jittered ground truth plus random boxes.
        _, target = dataset[i]
        boxes = target["boxes"]
        jitter = boxes.repeat(8, 1) * (1 + 0.08 * torch.randn(8 * len(boxes), 4, generator=g))
        h, w = target["size"]
        xy = torch.rand(60, 2, generator=g) * torch.tensor([w * 0.8, h * 0.8])
        wh = 16 + torch.rand(60, 2, generator=g) * 100
        proposals.append(torch.cat([jitter, torch.cat([xy, xy + wh], dim=1)]))
    data = DetectionSet(dataset, proposals, keep_images=True)
    config = DetectorConfig(
        num_classes=10,
        class_names=[str(d) for d in range(10)],
        backbone="mobilenet_v2_c4",
        backbone_weights="imagenet",
        levels=(3, 2, 1),
        scales=(320,),
        fc_dims=(128,),
        scoring="svm",
        target_side=104.0,
    )
    detector = SPPNetDetector(config)
    train_cfg = TrainingConfig(
        stages=("finetune_fc", "svm", "box_regression"),
        epochs_fc=12,
        lr_fc=0.01,
        images_per_batch=2,
        windows_per_batch=64,
        svm_rounds=1,
    )
    heads = train_detector(detector, data, train_cfg, tmp_path / "train")
    fc_log = next(log for log in heads.logs if log.name == "finetune_fc")
    assert fc_log.info["loss_last"] < 0.6 * fc_log.info["loss_first"], fc_log.info
    assert detector.config.scoring == "svm"
    # Each training image: its top-scoring detection hits one of its digits with the right label.
    preds, _ = predict(detector, data)
    hits = 0
    for pred, target in zip(preds, data.targets, strict=True):
        assert len(pred["boxes"]) > 0
        iou = box_iou(pred["boxes"][:1], target["boxes"])[0]
        best = int(iou.argmax())
        hits += int(iou[best] >= 0.5 and pred["labels"][0] == target["labels"][best])
    assert hits >= 5, hits
    # The saved model detects the same.
    detector.save_pretrained(tmp_path / "model")
    again = SPPNetDetector.from_pretrained(tmp_path / "model")
    preds_again, _ = predict(again, data)
    torch.testing.assert_close(preds_again[0]["boxes"], preds[0]["boxes"])
