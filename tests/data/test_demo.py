import json

import numpy as np
import pytest
import torch

from sppnet.cli.main import main as cli_main
from sppnet.data.demo import (
    DEMO_CLASSES,
    INK_THRESHOLD,
    DemoConfig,
    _digit_pools,
    load_demo,
    make_demo_dataset,
    paste_digit,
)
from sppnet.data.mnist import load_mnist_5k
from sppnet.data.photos import PHOTO_NAMES, load_photo

SMALL = {"num_train": 6, "num_val": 2, "num_test": 4}


@pytest.fixture(scope="module")
def demo_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("demo") / "set"
    summary = make_demo_dataset(root, **SMALL, seed=5)
    return root, summary


def _files(root):
    return {p.relative_to(root): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_layout_and_summary(demo_root):
    root, summary = demo_root
    assert summary["images"] == {"train": 6, "val": 2, "test": 4, "trainval": 8}
    for split, count in (("train", 6), ("val", 2), ("trainval", 8), ("test", 4)):
        ids = (root / "ImageSets" / "Main" / f"{split}.txt").read_text().split()
        assert len(ids) == count
    assert len(list((root / "JPEGImages").glob("*.jpg"))) == 12
    assert (root / "classes.txt").read_text().split() == list(DEMO_CLASSES)
    assert not [p for p in root.parent.iterdir() if p.name.startswith(".")]  # no temp left


def test_reads_back_as_voc_with_manifest_boxes(demo_root):
    root, summary = demo_root
    manifest = {m["image_id"]: m for m in json.loads((root / "demo.json").read_text())["images"]}
    total = 0
    for split in ("train", "val", "test"):
        ds = load_demo(root, split)
        assert ds.classes == list(DEMO_CLASSES) and ds.invalid == []
        for i in range(len(ds)):
            image, target = ds[i]
            record = manifest[target["image_id"]]
            h, w = target["size"]
            assert 320 <= max(h, w) <= 400 and image.shape == (3, h, w)
            assert 1 <= len(target["boxes"]) <= 6
            expected = torch.tensor([o["box"] for o in record["objects"]], dtype=torch.float32)
            assert torch.equal(target["boxes"], expected)
            labels = [int(o["label"]) + 1 for o in record["objects"]]
            assert target["labels"].tolist() == labels
            heights = target["boxes"][:, 3] - target["boxes"][:, 1]
            assert heights.min() >= 24 * 3 // 4 and heights.max() <= 160
            total += len(target["boxes"])
    assert total == sum(summary["objects"].values())


def test_same_seed_same_bytes_other_seed_differs(tmp_path, demo_root):
    root, _ = demo_root
    again = tmp_path / "again"
    make_demo_dataset(again, **SMALL, seed=5)
    assert _files(again) == _files(root)
    other = tmp_path / "other"
    make_demo_dataset(other, **SMALL, seed=6)
    assert _files(other) != _files(root)


def test_test_digits_never_in_train_or_val(demo_root):
    root, _ = demo_root
    images = json.loads((root / "demo.json").read_text())["images"]
    used = {
        s: {o["mnist_index"] for m in images if m["split"] == s for o in m["objects"]}
        for s in ("train", "val", "test")
    }
    assert used["test"] and used["train"]
    assert not used["test"] & (used["train"] | used["val"])
    _, labels = load_mnist_5k()
    pools = _digit_pools(labels.numpy(), DemoConfig(seed=5))
    assert not set(pools["test"].tolist()) & set(pools["trainval"].tolist())
    assert len(pools["test"]) == 1000 and len(pools["trainval"]) == 4000
    assert used["test"] <= set(pools["test"].tolist())


def test_paste_digit_box_is_exactly_the_changed_pixels():
    images, _ = load_mnist_5k()
    canvas = np.full((120, 150, 3), 200, dtype=np.uint8)
    before = canvas.copy()
    for index, height in ((0, 24), (1, 61), (7, 100)):
        canvas[:] = before
        box = paste_digit(canvas, images[index].numpy(), 10, 7, height, (0, 0, 0))
        changed = np.nonzero((canvas != before).any(axis=2))
        assert box == (
            int(changed[1].min()),
            int(changed[0].min()),
            int(changed[1].max()) + 1,
            int(changed[0].max()) + 1,
        )
        assert box[3] - box[1] == height  # the ink is exactly `height` rows tall
        # The faintest ink that is drawn blends at least INK_THRESHOLD of the colour.
        faintest_change = (before - canvas)[changed].min()
        assert faintest_change >= round(200 * INK_THRESHOLD)
    with pytest.raises(ValueError, match="does not fit"):
        paste_digit(canvas, images[0].numpy(), 140, 0, 60, (0, 0, 0))


def test_photos_are_real_and_varied():
    assert len(PHOTO_NAMES) >= 8 and {"astronaut", "china", "flower"} <= set(PHOTO_NAMES)
    for name in ("astronaut", "china", "camera"):
        photo = load_photo(name)
        assert photo.dtype == np.uint8 and photo.ndim == 3 and photo.shape[2] == 3
        assert photo.std() > 20  # a photograph, not a flat fill
    with pytest.raises(KeyError, match="known"):
        load_photo("lena")


def test_refuses_existing_and_overwrites(tmp_path):
    out = tmp_path / "d"
    make_demo_dataset(out, num_train=1, num_val=0, num_test=1)
    with pytest.raises(FileExistsError, match="overwrite"):
        make_demo_dataset(out, num_train=1, num_val=0, num_test=1)
    summary = make_demo_dataset(out, num_train=2, num_val=0, num_test=0, overwrite=True)
    assert summary["images"]["train"] == 2 and not (out / "JPEGImages" / "000003.jpg").exists()
    assert summary["reused"] is False


def test_reuse_only_a_complete_set_with_the_same_parameters(tmp_path):
    out = tmp_path / "d"
    built = make_demo_dataset(out, num_train=2, num_val=1, num_test=1)
    before = _files(out)
    again = make_demo_dataset(out, num_train=2, num_val=1, num_test=1, reuse=True)
    assert again["reused"] is True and _files(out) == before
    assert again["images"] == built["images"] and again["objects"] == built["objects"]
    with pytest.raises(FileExistsError, match="other parameters"):
        make_demo_dataset(out, num_train=3, num_val=1, num_test=1, reuse=True)
    (out / "JPEGImages" / "000002.jpg").unlink()
    with pytest.raises(FileExistsError, match="incomplete"):
        make_demo_dataset(out, num_train=2, num_val=1, num_test=1, reuse=True)
    (out / "demo.json").write_text("{")
    with pytest.raises(FileExistsError, match="not a demo dataset"):
        make_demo_dataset(out, num_train=2, num_val=1, num_test=1, reuse=True)


@pytest.mark.parametrize(
    ("override", "match"),
    [
        ({"num_train": -1}, "num_train"),
        ({"digit_height": (30, 20)}, "digit_height"),
        ({"digit_height": (200, 300)}, "does not fit"),
        ({"test_digit_fraction": 1.0}, "test_digit_fraction"),
    ],
)
def test_config_validated(override, match):
    with pytest.raises(ValueError, match=match):
        DemoConfig(**override)


def test_cli(tmp_path, capsys):
    out, report = tmp_path / "cli", tmp_path / "r.json"
    argv = ["data", "make-demo", str(out), "--train", "2", "--val", "1", "--test", "1"]
    assert cli_main([*argv, "--json", str(report)]) == 0
    data = json.loads(report.read_text())
    assert data["images"] == {"train": 2, "val": 1, "test": 1, "trainval": 3}
    assert set(data) == {"root", "images", "objects", "seconds", "reused", "config"}
    assert "train" in capsys.readouterr().out
    assert cli_main(argv) == 2  # exists
    assert "exists" in capsys.readouterr().out
    assert cli_main([*argv, "--reuse"]) == 0
    assert "reused" in capsys.readouterr().out
