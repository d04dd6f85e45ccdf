import torch

from sppnet.data.images import read_image
from sppnet.proposals import (
    CacheStatus,
    ProposalCache,
    ProposalSource,
    SelectiveSearch,
    SlidingWindows,
)
from sppnet.proposals.runner import fill_cache, list_voc_images


class Recording(ProposalSource):
    name = "recording"

    def __init__(self):
        self.windows = SlidingWindows(sizes=(16, 32), aspect_ratios=(1.0,))
        self.calls = []

    def params(self):
        return self.windows.params()

    def __call__(self, image, image_id):
        self.calls.append(image_id)
        return self.windows(image, image_id)


def test_list_voc_images(voc_folder):
    root, ids = voc_folder
    assert [i for i, _ in list_voc_images(root)] == ids
    assert [i for i, _ in list_voc_images(root, ["a"])] == ids[::2]
    assert [i for i, _ in list_voc_images(root, ["b", "a"])] == ids
    assert list_voc_images(root)[0][1] == root / "JPEGImages" / f"{ids[0]}.jpg"


def test_resume_recomputes_only_missing_stale_and_corrupt_files(voc_folder, tmp_path):
    root, ids = voc_folder
    images = list_voc_images(root)
    source = Recording()
    cache = ProposalCache(tmp_path / "cache", source)
    first = fill_cache(cache, images)
    assert [r.status for r in first.results] == ["missing"] * 6 and source.calls == ids
    assert all(r.count > 0 and r.seconds >= 0 for r in first.results)

    # An interrupted run, a crash mid-write elsewhere, a bit flip on disk:
    cache.path(ids[1]).unlink()
    cache.path(ids[4]).unlink()
    data = cache.path(ids[2]).read_bytes()
    cache.path(ids[2]).write_bytes(data[: len(data) // 2])
    flipped = bytearray(cache.path(ids[3]).read_bytes())
    flipped[-3] ^= 0x10
    cache.path(ids[3]).write_bytes(bytes(flipped))

    source.calls.clear()
    seen = []
    second = fill_cache(cache, images, on_result=seen.append)
    assert seen == second.results
    status = {r.image_id: r.status for r in second.results}
    assert status == {
        ids[0]: "hit",
        ids[1]: "missing",
        ids[2]: "corrupt",
        ids[3]: "corrupt",
        ids[4]: "missing",
        ids[5]: "hit",
    }
    assert "truncated" in second.results[2].message or "parsed" in second.results[2].message
    assert "checksum" in second.results[3].message
    assert source.calls == [ids[1], ids[2], ids[3], ids[4]]
    assert all(cache.lookup(i)[0] is CacheStatus.HIT for i in ids)


def test_worker_processes_give_the_same_boxes(voc_folder, tmp_path):
    root, _ = voc_folder
    images = list_voc_images(root)[:4]
    source = SelectiveSearch(shorter_side=64)
    cache = ProposalCache(tmp_path / "cache", source)
    summary = fill_cache(cache, images, workers=2)
    assert sorted(r.status for r in summary.results) == ["missing"] * 4
    for image_id, path in images:
        status, boxes, _ = cache.lookup(image_id)
        assert status is CacheStatus.HIT
        assert torch.equal(boxes, source(read_image(path), image_id))


def test_unreadable_image_is_reported_and_the_rest_done(voc_folder, tmp_path):
    root, ids = voc_folder
    (root / "JPEGImages" / f"{ids[2]}.jpg").write_bytes(b"not a jpeg")
    cache = ProposalCache(tmp_path / "cache", Recording())
    summary = fill_cache(cache, list_voc_images(root))
    assert [r.image_id for r in summary.failed] == [ids[2]]
    assert f"{ids[2]}.jpg" in summary.failed[0].message
    assert summary.count("missing") == 5
