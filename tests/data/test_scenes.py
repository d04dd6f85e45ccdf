import json
import math

import numpy as np
import pytest
import torch

from sppnet.cli.main import main as cli_main
from sppnet.data.demo import DEMO_CLASSES
from sppnet.data.mnist import load_mnist_5k
from sppnet.data.photos import PHOTO_NAMES, photo_path
from sppnet.data.scenes import (
    SCENE_CLASSES,
    SCENE_PHOTOS,
    SceneConfig,
    _photo,
    digits_used_for_training,
    load_scenes,
    make_scenes_dataset,
    render_scene,
)

SMALL = {"num_train": 4, "num_val": 1, "num_test": 3}


@pytest.fixture(scope="module")
def scenes_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("scenes") / "set"
    summary = make_scenes_dataset(root, **SMALL, seed=3)
    return root, summary


@pytest.fixture(scope="module")
def mnist():
    images, labels = load_mnist_5k()
    return images.numpy(), labels.numpy()


def _files(root):
    return {p.relative_to(root): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_layout_reads_back_as_voc_with_manifest_boxes(scenes_root):
    root, summary = scenes_root
    assert summary["images"] == {"train": 4, "val": 1, "test": 3, "trainval": 5}
    manifest = {m["image_id"]: m for m in json.loads((root / "scenes.json").read_text())["images"]}
    assert (root / "classes.txt").read_text().split() == list(SCENE_CLASSES)
    total = 0
    for split in ("train", "val", "test"):
        ds = load_scenes(root, split)
        assert ds.invalid == [] and ds.classes == list(SCENE_CLASSES)
        for i in range(len(ds)):
            image, target = ds[i]
            record = manifest[target["image_id"]]
            assert record["split"] == split
            h, w = target["size"]
            assert 500 <= max(h, w) <= 800 and 0.6 * max(h, w) - 1 <= min(h, w)
            assert image.shape == (3, h, w)
            expected = torch.tensor([o["box"] for o in record["objects"]], dtype=torch.float32)
            assert torch.equal(target["boxes"], expected)
            assert target["labels"].tolist() == [int(o["label"]) + 1 for o in record["objects"]]
            assert 1 <= len(expected) <= 9
            total += len(expected)
    assert total == sum(summary["objects"].values())
    assert not [p for p in root.parent.iterdir() if p.name.startswith(".")]


def test_same_seed_same_bytes_other_seed_differs(tmp_path, scenes_root):
    root, _ = scenes_root
    make_scenes_dataset(tmp_path / "again", **SMALL, seed=3)
    assert _files(tmp_path / "again") == _files(root)
    make_scenes_dataset(tmp_path / "other", **SMALL, seed=4)
    assert _files(tmp_path / "other") != _files(root)


def test_existing_folder_needs_overwrite(tmp_path):
    make_scenes_dataset(tmp_path / "s", num_train=1, num_val=0, num_test=0)
    with pytest.raises(FileExistsError, match="overwrite"):
        make_scenes_dataset(tmp_path / "s", num_train=1, num_val=0, num_test=0)
    make_scenes_dataset(tmp_path / "s", num_train=2, num_val=0, num_test=0, overwrite=True)
    assert len(load_scenes(tmp_path / "s", "train")) == 2


@pytest.mark.parametrize("max_occlusion", [0.0, 0.3])
def test_boxes_are_tight_around_each_digits_ink(mnist, max_occlusion):
    config = SceneConfig(max_occlusion=max_occlusion)
    pool = np.arange(5000)
    seen_occlusion = False
    for index in range(12):
        rng = np.random.default_rng([11, index])
        pixels, record, owner = render_scene(rng, *mnist, pool, config)
        assert pixels.shape[:2] == owner.shape and pixels.dtype == np.uint8
        for i, obj in enumerate(record["objects"]):
            x1, y1, x2, y2 = obj["box"]
            ys, xs = np.nonzero(owner == i)
            # every visible ink pixel is inside the box ...
            assert xs.min() >= x1 and xs.max() < x2 and ys.min() >= y1 and ys.max() < y2
            # ... the ink fills it edge to edge unless a later digit covers that edge ...
            if obj["visible"] == 1.0:
                assert (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1) == (x1, y1, x2, y2)
            # ... and no digit loses more of its ink than allowed.
            assert obj["visible"] >= 1 - max_occlusion - 1e-4
            seen_occlusion |= obj["visible"] < 1.0
    assert seen_occlusion == (max_occlusion > 0)


def test_sizes_colours_and_counts_in_the_documented_ranges(mnist):
    config = SceneConfig()
    pool = np.arange(5000)
    heights, contrasts, counts = [], [], []
    for index in range(30):
        rng = np.random.default_rng([5, index])
        _, record, _ = render_scene(rng, *mnist, pool, config)
        counts.append(len(record["objects"]))
        for obj in record["objects"]:
            heights.append(obj["box"][3] - obj["box"][1])
            contrasts.append(obj["contrast"])
            assert 0.6 <= obj["opacity"] <= 1.0 and all(0 <= c <= 255 for c in obj["color"])
            assert abs(obj["angle"]) <= 12
            assert obj["contrast"] >= config.min_contrast
        assert all(r["photo"] in SCENE_PHOTOS for r in record["photos"])
    heights, contrasts = np.array(heights), np.array(contrasts)
    # rotation by <= 12 degrees and the width stretch can make the ink taller than drawn
    assert heights.min() >= 8 and heights.max() <= 160 * 1.35
    assert (heights < 32).mean() > 0.15  # small digits are common
    assert min(counts) >= 2 and max(counts) <= 9
    low = (contrasts <= config.low_contrast_max).mean()
    assert 0.25 < low < 0.8 and contrasts.max() > 120  # 30 % drawn low, others by chance


def test_scene_photos_are_not_demo_photos():
    demo_files = {photo_path(name).name for name in PHOTO_NAMES}
    for name, (_, file) in SCENE_PHOTOS.items():
        assert file.rsplit("/", 1)[-1] not in demo_files, name
        photo = _photo(name)
        assert photo.ndim == 3 and photo.shape[2] == 3 and min(photo.shape[:2]) >= 128
    assert SCENE_CLASSES == DEMO_CLASSES


def test_test_split_avoids_excluded_and_train_digits(tmp_path, scenes_root):
    root, _ = scenes_root
    used = digits_used_for_training(root / "scenes.json")
    images = json.loads((root / "scenes.json").read_text())["images"]
    train_digits = {o["mnist_index"] for m in images if m["split"] != "test" for o in m["objects"]}
    test_digits = {o["mnist_index"] for m in images if m["split"] == "test" for o in m["objects"]}
    assert used == train_digits and not (train_digits & test_digits)
    out = tmp_path / "excl"
    excluded = set(range(0, 5000, 2))  # every even index
    make_scenes_dataset(out, num_train=0, num_val=0, num_test=3, exclude_test_digits=excluded)
    manifest = json.loads((out / "scenes.json").read_text())
    digits = [o["mnist_index"] for m in manifest["images"] for o in m["objects"]]
    assert digits and all(d % 2 == 1 for d in digits)
    assert manifest["exclude_test_digits"] == sorted(excluded)
    with pytest.raises(ValueError, match="no MNIST digit"):
        make_scenes_dataset(tmp_path / "none", num_test=1, exclude_test_digits=range(5000))
    (tmp_path / "bad.json").write_text("{}")
    with pytest.raises(ValueError, match=r"bad\.json"):
        digits_used_for_training(tmp_path / "bad.json")


def test_config_errors():
    with pytest.raises(ValueError, match="max_occlusion"):
        SceneConfig(max_occlusion=1.0)
    with pytest.raises(ValueError, match="digit_height"):
        SceneConfig(digit_height=(200, 300))
    with pytest.raises(ValueError, match="min_contrast"):
        SceneConfig(min_contrast=80, low_contrast_max=60)


def test_cli(tmp_path, capsys, scenes_root):
    root, _ = scenes_root
    out, summary = tmp_path / "cli", tmp_path / "s.json"
    argv = ["data", "make-scenes", str(out), "--train", "2", "--val", "0", "--test", "1"]
    argv += ["--seed", "9", "--json", str(summary), "--test-unseen-by", str(root / "scenes.json")]
    assert cli_main(argv) == 0
    report = json.loads(summary.read_text())
    assert report["images"]["train"] == 2 and report["images"]["test"] == 1
    assert report["excluded_test_digits"] == len(digits_used_for_training(root / "scenes.json"))
    assert report["config"]["seed"] == 9 and math.isclose(report["config"]["max_occlusion"], 0.3)
    assert "scenes dataset in" in capsys.readouterr().out
    assert cli_main(argv) == 2  # exists
    assert "overwrite" in capsys.readouterr().out
