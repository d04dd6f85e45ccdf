"""The frozen-trunk-prefix cache of end-to-end fine-tuning (sppnet.engine.prefix_cache)."""

import re

import pytest
import torch
from test_detection import _small_detector
from torch import nn

from sppnet.config import TrainingConfig
from sppnet.engine.detection import DetectionSet, finetune_end_to_end, trunk_parameters
from sppnet.engine.prefix_cache import TrunkPrefixCache, split_trunk
from sppnet.models import SPPNetDetector
from sppnet.models.heads import SoftmaxHead


def _detector(scales=(64,)) -> SPPNetDetector:
    return _small_detector(scales=scales, scoring="softmax")


def _images(sizes, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randint(0, 256, (3, h, w), generator=g, dtype=torch.uint8) for h, w in sizes]


@pytest.mark.parametrize("sizes", [[(64, 80), (64, 80)], [(64, 80), (50, 90), (70, 60)]])
def test_cached_prefix_gives_the_trunks_own_maps(sizes):
    detector = _detector()
    images = _images(sizes)
    cache = TrunkPrefixCache(detector, images.__getitem__, 3, max_bytes=2**20)
    expected = detector.compute_features(images, [72])
    for _ in range(2):  # the second pass reads the kept entries
        got = cache.features(list(range(len(images))), 72)
        torch.testing.assert_close(got.maps[0], expected.maps[0], rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(got.factors[0], expected.factors[0])
        assert got.image_sizes == expected.image_sizes
    assert (cache.misses, cache.hits, len(cache)) == (len(images), len(images), len(images))


def test_kept_entries_hold_no_autograd_graph():
    # Even with the prefix's parameters still requiring grad, an entry must not keep the graph
    # alive (memory) or be back-propagated into twice.
    detector = _detector()
    assert any(p.requires_grad for p in split_trunk(detector, 3)[0].parameters())
    cache = TrunkPrefixCache(detector, _images([(64, 80)]).__getitem__, 3, max_bytes=2**20)
    cache.features([0], 64)
    (entry, _, _) = cache._prefix(0, 64)
    assert not entry.requires_grad and entry.grad_fn is None


def test_gradient_reaches_the_trained_blocks_as_without_the_cache():
    detector = _detector()
    images = _images([(64, 80), (64, 80)])
    trained = trunk_parameters(detector, 3)
    assert trained
    cache = TrunkPrefixCache(detector, images.__getitem__, 3, max_bytes=2**20)
    grads = []
    for use_cache in (False, True):
        detector.zero_grad()
        if use_cache:
            maps = cache.features([0, 1], 64).maps[0]
        else:
            maps = detector.compute_features(images).maps[0]
        (maps * torch.linspace(-1, 1, maps.shape[-1])).sum().backward()
        grads.append([p.grad.clone() for p in trained])
    for a, b in zip(*grads, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


def test_budget_zero_keeps_nothing_and_still_answers():
    detector = _detector()
    images = _images([(64, 80)])
    cache = TrunkPrefixCache(detector, images.__getitem__, 3, max_bytes=0)
    a = cache.features([0], 64).maps[0]
    b = cache.features([0], 64).maps[0]
    torch.testing.assert_close(a, b)
    assert (len(cache), cache.nbytes, cache.misses, cache.hits) == (0, 0, 2, 0)


def test_budget_caps_the_kept_bytes():
    detector = _detector()
    images = _images([(64, 80)] * 4)
    one = TrunkPrefixCache(detector, images.__getitem__, 3, max_bytes=2**20)
    one.features([0], 64)
    per_entry = one.nbytes
    cache = TrunkPrefixCache(detector, images.__getitem__, 3, max_bytes=2 * per_entry + 1)
    cache.features([0, 1, 2, 3], 64)
    assert len(cache) == 2 and cache.nbytes == 2 * per_entry


def test_split_trunk_errors():
    detector = _detector()
    n = len(list(detector.backbone.body.children()))
    prefix, suffix = split_trunk(detector, 2)
    assert len(prefix) == 2 and len(suffix) == n - 2
    for bad in (0, n):
        with pytest.raises(ValueError, match="frozen_prefix"):
            split_trunk(detector, bad)
    with_dropout = _detector()
    with_dropout.backbone.body.insert(1, nn.Dropout2d(0.1))
    with pytest.raises(TypeError, match="dropout"):
        split_trunk(with_dropout, 3)
    split_trunk(with_dropout, 1)  # the dropout is after the prefix: fine
    detector.backbone.body = nn.ModuleList(list(detector.backbone.body.children()))
    with pytest.raises(TypeError, match=r"not an nn\.Sequential"):
        split_trunk(detector, 2)
    with pytest.raises(ValueError, match="max_bytes"):
        TrunkPrefixCache(_detector(), lambda i: None, 2, max_bytes=-1)


def _toy_data(n=4):
    g = torch.Generator().manual_seed(1)
    items, proposals = [], []
    for i in range(n):
        image = torch.randint(0, 256, (3, 64, 80), generator=g, dtype=torch.uint8)
        boxes = torch.tensor([[8.0, 8.0, 40.0, 40.0], [44.0, 20.0, 76.0, 60.0]])
        target = {"boxes": boxes, "labels": torch.tensor([1, 2]), "image_id": f"img{i}"}
        items.append((image, target))
        jitter = boxes.repeat(6, 1) + torch.randn(12, 4, generator=g) * 3
        xy = torch.rand(20, 2, generator=g) * 50
        proposals.append(torch.cat([jitter, torch.cat([xy, xy + 10], dim=1)]))
    return DetectionSet(items, proposals, keep_images=True)


def train_toy_end_to_end(data, scales, trunk_cache_mb, epochs, out, train_scales=(), cache=None):
    """A fresh toy detector fine-tuned end to end on ``data``; returns it and the stage log.
    ``cache`` (a function of the detector) builds the trunk cache to pass in, if given."""
    detector = _detector(scales)
    detector.set_box_predictor(SoftmaxHead(detector.representation_size, 2))
    cfg = TrainingConfig(
        stages=("end_to_end",),
        epochs_e2e=epochs,
        lr_e2e=0.01,
        lr_e2e_trunk=0.01,
        trunk_frozen_prefix=3,
        trunk_cache_mb=trunk_cache_mb,
        windows_per_batch=16,
        train_scales=train_scales,
    )
    trunk_cache = None if cache is None else cache(detector)
    torch.manual_seed(0)
    return detector, finetune_end_to_end(detector, data, cfg, out, trunk_cache=trunk_cache)


@pytest.mark.parametrize("scales", [(64,), (56, 72)])
def test_end_to_end_training_is_the_same_with_and_without_the_cache(tmp_path, scales):
    data = _toy_data()
    states, logs = [], []
    for mb in (0, 16):
        detector, log = train_toy_end_to_end(data, scales, mb, 3, tmp_path / f"mb{mb}")
        states.append({k: v.clone() for k, v in detector.state_dict().items()})
        logs.append(log)
    assert logs[0].info["trunk_cache"] == "off (trunk_cache_mb = 0)"
    # 4 images, 3 epochs of 2 steps of 2 images: 12 requests, at most 4 per scale computed.
    kept, hits, misses = map(
        int, re.findall(r"(\d+) (?:entries|hits|misses)", logs[1].info["trunk_cache"])
    )
    assert kept == misses <= 4 * len(scales) and hits + misses == 12, logs[1].info
    changed = False
    for k, v in states[0].items():
        torch.testing.assert_close(states[1][k], v, rtol=1e-4, atol=1e-5, msg=k)
        changed |= not torch.equal(v, _detector(scales).state_dict().get(k, v))
    assert changed  # training did move the weights


def test_end_to_end_draws_each_steps_scale_from_train_scales(tmp_path):
    data = _toy_data()
    caches = []

    def cache(detector):
        caches.append(TrunkPrefixCache(detector, data.image, 3, max_bytes=2**20))
        return caches[-1]

    states = []
    for mb, make in ((0, None), (16, cache)):
        detector, _ = train_toy_end_to_end(
            data, (64,), mb, 3, tmp_path / f"mb{mb}", train_scales=(56, 72), cache=make
        )
        states.append(detector.state_dict())
    # 6 steps of 2 images: the model's own scale (64) is never used, both train scales are.
    assert {scale for _, scale in caches[0].cached_keys()} == {56, 72}
    assert detector.config.scales == (64,)
    for k, v in states[0].items():
        torch.testing.assert_close(states[1][k], v, rtol=1e-4, atol=1e-5, msg=k)


def test_train_scales_must_be_positive():
    with pytest.raises(ValueError, match="train_scales"):
        TrainingConfig(train_scales=(480, 0))
    assert TrainingConfig(train_scales=[402, 480]).train_scales == (402, 480)


def test_feature_cache_built_through_the_prefix_cache_matches_the_plain_one():
    from sppnet.engine.detection import FeatureCache

    data = _toy_data(3)
    detector = _detector(scales=(56, 72))
    trunk = TrunkPrefixCache(detector, data.image, 3, max_bytes=2**20)
    plain = FeatureCache.build(detector, data, torch.float32)
    through = FeatureCache.build(detector, data, torch.float32, trunk=trunk)
    assert len(trunk) == 6  # 3 images x 2 scales, now ready for end-to-end fine-tuning
    for a, b in zip(plain.maps, through.maps, strict=True):
        for x, y in zip(a, b, strict=True):
            torch.testing.assert_close(y, x, rtol=1e-5, atol=1e-5)
    for a, b in zip(plain.factors, through.factors, strict=True):
        torch.testing.assert_close(b, a)
    assert plain.image_sizes == through.image_sizes


@pytest.mark.slow
def test_two_process_end_to_end_is_the_same_with_and_without_the_cache(tmp_path):
    """Under torchrun (2 gloo ranks, DDP), the cached prefix feeds DDP's gradient sync too."""
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    from safetensors.torch import load_file

    script = Path(__file__).with_name("e2e_prefix_ddp.py")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TORCH_DISABLE_SHARE_RDZV_TCP_STORE": "1"}
    states, infos = [], []
    for mb in (0, 16):
        out = tmp_path / f"mb{mb}"
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
        cmd += ["--nproc_per_node=2", str(script), str(mb), str(out)]
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
        assert proc.returncode == 0, proc.stderr[-3000:]
        states.append(load_file(str(out / "final.safetensors")))
        infos.append(json.loads((out / "info.json").read_text()))
    assert infos[0]["trunk_cache"].startswith("off") and "hits" in infos[1]["trunk_cache"]
    assert infos[0]["steps"] == infos[1]["steps"] == 4  # 8 images / 2 ranks / batch 2, 2 epochs
    for k, v in states[0].items():
        torch.testing.assert_close(states[1][k], v, rtol=1e-5, atol=1e-6, msg=k)
