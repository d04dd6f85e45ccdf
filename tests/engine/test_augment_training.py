"""Photometric augmentation in end-to-end fine-tuning (TrainingConfig.augment_*)."""

import re

import pytest
import torch
from test_prefix_cache import _detector, _toy_data

from sppnet.config import TrainingConfig
from sppnet.data.augment import Compose, RandomHorizontalFlip, RandomInvert
from sppnet.engine.detection import DetectionSet, finetune_end_to_end
from sppnet.engine.detection.finetune import augmented_batch, batch_augment
from sppnet.models.heads import SoftmaxHead


def _train(out, trunk_cache_mb=0, record=None, **augment):
    """A fresh toy detector fine-tuned end to end for 3 epochs (6 steps); ``record`` collects the
    images each step feeds the trunk (through ``compute_features``)."""
    detector = _detector((56, 72))
    detector.set_box_predictor(SoftmaxHead(detector.representation_size, 2))
    if record is not None:
        original = detector.compute_features

        def recording(images, scales=None):
            record.append([im.clone() for im in images])
            return original(images, scales)

        detector.compute_features = recording
    cfg = TrainingConfig(
        stages=("end_to_end",),
        epochs_e2e=3,
        lr_e2e=0.01,
        lr_e2e_trunk=0.01,
        trunk_frozen_prefix=3,
        trunk_cache_mb=trunk_cache_mb,
        windows_per_batch=16,
        **augment,
    )
    torch.manual_seed(0)
    log = finetune_end_to_end(detector, _toy_data(), cfg, out)
    state = {k: v.clone() for k, v in detector.state_dict().items()}
    return state, log


def _losses(log):
    return [r["loss"] for r in log.records]


def test_off_by_default_trains_exactly_as_before(tmp_path):
    # The augment_* parts are inert while augment_prob is 0: no draw, same losses, same weights.
    state_a, log_a = _train(tmp_path / "a")
    state_b, log_b = _train(tmp_path / "b", augment_prob=0.0, augment_invert=1.0, augment_hue=0.5)
    assert _losses(log_a) == _losses(log_b) and len(_losses(log_a)) > 0
    for k, v in state_a.items():
        assert torch.equal(v, state_b[k]), k
    assert "augmented_steps" not in log_a.info


def test_off_feeds_the_trunk_the_dataset_images(tmp_path):
    record = []
    _train(tmp_path / "off", record=record)
    data = _toy_data()
    originals = [data.image(i) for i in range(len(data))]
    assert len(record) == 6
    for images in record:
        for image in images:
            assert any(torch.equal(image, o) for o in originals)


def test_on_changes_the_images_fed_to_the_trunk(tmp_path):
    record = []
    _, log = _train(tmp_path / "on", record=record, augment_prob=1.0)
    data = _toy_data()
    originals = [data.image(i) for i in range(len(data))]
    assert log.info["augmented_steps"] == 6 == len(record)
    fed = [image for images in record for image in images]
    assert all(image.shape == (3, 64, 80) and image.dtype == torch.uint8 for image in fed)
    unchanged = sum(any(torch.equal(image, o) for o in originals) for image in fed)
    assert unchanged == 0, f"{unchanged} of {len(fed)} images reached the trunk unaugmented"


def test_augmented_batches_bypass_the_prefix_cache(tmp_path):
    _, log = _train(tmp_path / "all", trunk_cache_mb=16, augment_prob=1.0)
    hits, misses = map(int, re.findall(r"(\d+) (?:hits|misses)", log.info["trunk_cache"]))
    assert (hits, misses) == (0, 0) and log.info["augmented_steps"] == 6
    _, log = _train(tmp_path / "half", trunk_cache_mb=16, augment_prob=0.5)
    hits, misses = map(int, re.findall(r"(\d+) (?:hits|misses)", log.info["trunk_cache"]))
    augmented = log.info["augmented_steps"]
    assert 0 < augmented < 6 and hits + misses == 2 * (6 - augmented), log.info


def test_seeded_runs_reproduce_and_differ_from_unaugmented(tmp_path):
    state_a, log_a = _train(tmp_path / "a", augment_prob=0.5)
    state_b, log_b = _train(tmp_path / "b", augment_prob=0.5)
    _, log_off = _train(tmp_path / "off")
    assert _losses(log_a) == _losses(log_b)
    assert log_a.info["augmented_steps"] == log_b.info["augmented_steps"]
    for k, v in state_a.items():
        assert torch.equal(v, state_b[k]), k
    assert _losses(log_a) != _losses(log_off)


def test_flip_moves_proposals_and_targets_with_the_image():
    data = _toy_data(1)
    flip = Compose([RandomHorizontalFlip(1.0)])
    images, props, targets = augmented_batch(data, [0], flip, torch.device("cpu"))
    width = data.image(0).shape[-1]
    assert torch.equal(images[0], data.image(0).flip(-1))
    boxes, labels = data.positives(0)
    expected = boxes[:, [2, 1, 0, 3]] * torch.tensor([-1.0, 1, -1, 1]) + torch.tensor(
        [width, 0.0, width, 0]
    )
    torch.testing.assert_close(targets[0]["boxes"], expected)
    assert torch.equal(targets[0]["labels"], labels)
    torch.testing.assert_close(props[0][:, 0], width - data.proposals[0][:, 2])
    torch.testing.assert_close(props[0][:, 1::2], data.proposals[0][:, 1::2])


def test_photometric_augmentation_keeps_the_boxes():
    data = _toy_data(1)
    images, props, targets = augmented_batch(
        data, [0], Compose([RandomInvert(1.0)]), torch.device("cpu")
    )
    assert torch.equal(images[0], 255 - data.image(0))
    assert torch.equal(props[0], data.proposals[0])
    assert torch.equal(targets[0]["boxes"], data.positives(0)[0])


def _two_sizes(stroke=False):
    """Two images of other sizes (40 x 60 and 80 x 30), one box and two proposals each; with
    ``stroke``, a dark stroke inside the first image's box."""
    items, proposals = [], []
    for i, (h, w, value) in enumerate(((40, 60, 200), (80, 30, 0))):
        image = torch.full((3, h, w), value, dtype=torch.uint8)
        if stroke and i == 0:
            image[:, 15:25, 14:16] = 0
        boxes = torch.tensor([[10.0, 10.0, 20.0, 30.0]])
        items.append((image, {"boxes": boxes, "labels": torch.tensor([i + 1]), "image_id": i}))
        proposals.append(torch.tensor([[0.0, 0.0, 10.0, 10.0], [5.0, 5.0, 15.0, 25.0]]))
    return DetectionSet(items, proposals, keep_images=True)


def test_mixup_keeps_both_images_objects_scaled_onto_the_first():
    data = _two_sizes()
    torch.manual_seed(0)
    images, props, targets = augmented_batch(
        data, [0], Compose([]), torch.device("cpu"), mixup_prob=1.0
    )
    assert images[0].shape == (3, 40, 60)
    # 200 * w + 0 * (1 - w) with w in [0.3, 0.7]: a flat image of 60..140
    value = int(images[0][0, 0, 0])
    assert 60 <= value <= 140 and (images[0] == value).all()
    # image 1 (80 x 30) maps onto 40 x 60: x times 2, y times 1/2
    assert torch.equal(
        targets[0]["boxes"], torch.tensor([[10.0, 10.0, 20.0, 30.0], [20.0, 5.0, 40.0, 15.0]])
    )
    assert targets[0]["labels"].tolist() == [1, 2]
    assert torch.equal(props[0][:2], data.proposals[0])
    assert torch.equal(props[0][2:], torch.tensor([[0.0, 0.0, 20.0, 5.0], [10.0, 2.5, 30.0, 12.5]]))


def test_fade_fades_the_ground_truth_only():
    data = _two_sizes()
    torch.manual_seed(0)
    images, props, targets = augmented_batch(
        data, [0], Compose([]), torch.device("cpu"), fade_prob=1.0
    )
    # a flat image has nothing to fade: pixels, boxes and proposals are as they were
    assert torch.equal(images[0], data.image(0))
    assert torch.equal(targets[0]["boxes"], data.positives(0)[0])
    assert torch.equal(props[0], data.proposals[0])
    # with a dark stroke inside the box it comes out lighter, and nothing else changes
    data = _two_sizes(stroke=True)
    striped = data.image(0)
    torch.manual_seed(0)
    images, _, _ = augmented_batch(data, [0], Compose([]), torch.device("cpu"), fade_prob=1.0)
    assert 0 < int(images[0][0, 20, 14]) < 200
    assert torch.equal(images[0][:, :, 30:], striped[:, :, 30:])


def test_mixup_off_draws_nothing():
    data = _two_sizes()
    torch.manual_seed(3)
    augmented_batch(data, [0, 1], Compose([]), torch.device("cpu"), mixup_prob=0.0, fade_prob=0.0)
    after = torch.rand(())
    torch.manual_seed(3)
    assert torch.equal(after, torch.rand(()))


_COLOUR_PARTS = ("brightness", "contrast", "saturation", "hue", "greyscale", "invert")


def test_mixup_in_training_feeds_mixed_images(tmp_path):
    record = []
    no_colour = {f"augment_{part}": 0.0 for part in _COLOUR_PARTS}
    _, log = _train(
        tmp_path / "mix", record=record, augment_prob=1.0, augment_mixup=1.0, **no_colour
    )
    data = _toy_data()
    originals = [data.image(i).float() for i in range(len(data))]
    assert log.info["augmented_steps"] == 6
    for images in record:
        for image in images:
            # a blend w * a + (1 - w) * b of two different toy images, none of them as it was
            assert not any(torch.equal(image.float(), o) for o in originals)
            fits = []
            for a in range(len(originals)):
                for b in range(len(originals)):
                    if a != b:
                        d = originals[a] - originals[b]
                        w = ((image.float() - originals[b]) * d).sum() / (d * d).sum()
                        fits.append((image.float() - w * d - originals[b]).abs().max())
            assert min(fits) <= 1.0


def test_batch_augment_follows_the_config():
    assert batch_augment(TrainingConfig()) is None
    aug = batch_augment(TrainingConfig(augment_prob=0.5, augment_invert=0.0, augment_hflip=True))
    names = [type(t).__name__ for t in aug.transforms]
    assert names == ["ColorJitter", "RandomGreyscale", "RandomInvert", "RandomHorizontalFlip"]
    assert aug.transforms[2].p == 0.0 and aug.transforms[0].hue == 0.1
    both = batch_augment(TrainingConfig(augment_prob=1.0, augment_blur=0.3, augment_noise=0.2))
    names = [type(t).__name__ for t in both.transforms]
    assert names[3:] == ["RandomBlur", "RandomNoise"]
    assert both.transforms[3].p == 0.3 and both.transforms[4].p == 0.2


@pytest.mark.parametrize(
    ("field", "value", "match"),
    [
        ("augment_prob", 1.5, r"augment_prob must be in \[0, 1.0\]"),
        ("augment_prob", -0.1, "augment_prob"),
        ("augment_hue", 0.6, r"augment_hue must be in \[0, 0.5\]"),
        ("augment_invert", "often", "augment_invert must be a number"),
        ("augment_greyscale", True, "augment_greyscale must be a number"),
        ("augment_hflip", 1, "augment_hflip must be true or false"),
        ("augment_blur", 1.2, r"augment_blur must be in \[0, 1.0\]"),
        ("augment_noise", -0.5, "augment_noise"),
        ("augment_mixup", 2.0, r"augment_mixup must be in \[0, 1.0\]"),
        ("augment_fade", -1.0, "augment_fade"),
    ],
)
def test_config_validation(field, value, match):
    with pytest.raises(ValueError, match=match):
        TrainingConfig(**{field: value})


@pytest.mark.parametrize(
    "field", ["augment_blur", "augment_noise", "augment_mixup", "augment_fade"]
)
def test_parts_that_need_augmented_batches_are_refused_without_them(field):
    with pytest.raises(ValueError, match=f"{field} = 0.5 acts only on augmented batches"):
        TrainingConfig(**{field: 0.5})
    assert getattr(TrainingConfig(augment_prob=0.1, **{field: 0.5}), field) == 0.5


def test_config_round_trip():
    cfg = TrainingConfig(augment_prob=0.5, augment_invert=0.3)
    again = TrainingConfig.from_dict(cfg.to_dict())
    assert again == cfg and again.augment_prob == 0.5 and not again.augment_hflip
    assert TrainingConfig().augment_prob == 0.0


def test_resume_after_a_crash_is_bit_identical(tmp_path):
    # Augmented steps draw from the global RNG, which the checkpoints carry: a run that dies in
    # its fourth step and resumes from the last epoch-end checkpoint ends with the same weights.
    def run(out, crash_at=None):
        detector = _detector((56, 72))
        detector.set_box_predictor(SoftmaxHead(detector.representation_size, 2))
        cfg = TrainingConfig(
            stages=("end_to_end",),
            epochs_e2e=3,
            trunk_frozen_prefix=3,
            trunk_cache_mb=16,
            windows_per_batch=16,
            augment_prob=0.5,
        )
        data = _toy_data()
        if crash_at is not None:
            calls, image = [0], data.image

            def failing(index):
                calls[0] += 1
                if calls[0] == crash_at:
                    raise RuntimeError("simulated crash")
                return image(index)

            data.image = failing
        torch.manual_seed(0)
        log = finetune_end_to_end(detector, data, cfg, out, resume=crash_at is None)
        return detector.state_dict(), log

    reference, log = run(tmp_path / "straight")
    assert 0 < log.info["augmented_steps"] < 6 and "resumed_from" not in log.info
    out = tmp_path / "crashed"
    with pytest.raises(RuntimeError, match="simulated crash"):
        run(out, crash_at=7)
    resumed, log = run(out)
    assert "resumed_from" in log.info and log.info["augmented_steps"] < 6, log.info
    for k, v in reference.items():
        assert torch.equal(v, resumed[k]), k
