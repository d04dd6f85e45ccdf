"""The feature-caching stage under torch.distributed: each rank computes its shard of the images,
and every rank ends with the same cache as a single process."""

import os

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from sppnet.engine.detection import DetectionSet, FeatureCache


def _setup():
    # The detection tests' toy detector and data (same seeds, so every rank builds the same ones).
    from test_detection import _small_detector, _toy_set

    det = _small_detector(scales=(48, 64))
    items, proposals = _toy_set(n=5)
    return det, DetectionSet(items, proposals, keep_images=True)


def _rank_main(rank: int, world_size: int, init_file: str, out_dir: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group(
        "gloo", init_method=f"file://{init_file}", rank=rank, world_size=world_size
    )
    try:
        det, data = _setup()
        computed: list[int] = []
        compute = det.compute_features

        def counting(images, *args, **kwargs):
            computed.append(len(images))
            return compute(images, *args, **kwargs)

        det.compute_features = counting
        cache = FeatureCache.build(det, data, torch.float32)
        torch.save(
            {
                "computed": len(computed),
                "maps": cache.maps,
                "factors": cache.factors,
                "sizes": cache.image_sizes,
            },
            os.path.join(out_dir, f"rank{rank}.pt"),
        )
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_two_ranks_share_the_work_and_hold_the_whole_cache(tmp_path):
    mp.spawn(
        _rank_main,
        args=(2, str(tmp_path / "init"), str(tmp_path)),
        nprocs=2,
        join=True,
    )
    det, data = _setup()
    single = FeatureCache.build(det, data, torch.float32)
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(2)]
    # 5 images: rank 0 computes images 0, 2, 4 and rank 1 images 1, 3.
    assert [r["computed"] for r in ranks] == [3, 2]
    for r in ranks:
        assert r["sizes"] == single.image_sizes
        for got, want in zip(r["maps"], single.maps, strict=True):
            for a, b in zip(got, want, strict=True):
                torch.testing.assert_close(a, b)
        for a, b in zip(r["factors"], single.factors, strict=True):
            torch.testing.assert_close(a, b)
