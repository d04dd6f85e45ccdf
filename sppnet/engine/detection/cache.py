"""Stage 1 of the paper's training: the conv maps of every training image at every scale,
computed once with the trunk frozen and kept in a reduced dtype.

The paper cached the *pooled* features of every window, which is ``K * C * 50`` floats per image
(2,000 windows x 96 channels x 50 bins x 4 bytes = 38 MB per image with the demo trunk); the conv
maps are ``C * h * w`` values per scale (96 x 30 x 34 x 2 bytes = 0.2 MB for a 480 x 550 demo
image), so windows are re-pooled from them on demand, which costs little next to fc6.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from sppnet.engine.detection.data import DetectionSet
from sppnet.engine.distributed import all_gather_object, get_world_size, shard
from sppnet.engine.prefix_cache import TrunkPrefixCache
from sppnet.models.detector import SPPNetDetector
from sppnet.models.features import MultiScaleFeatures, pad_stack
from sppnet.utils.progress import progress_bar

__all__ = ["CACHE_DTYPES", "FeatureCache"]

#: ``TrainingConfig.cache_dtype`` -> torch dtype.
CACHE_DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32}


class FeatureCache:
    """Per image and scale, the trunk's conv map ``Tensor[C, h, w]`` in a reduced dtype.

    Build with :meth:`build`; :meth:`features` assembles any subset of images as
    :class:`~sppnet.models.detector.MultiScaleFeatures` for ``pool_windows``.
    """

    def __init__(self) -> None:
        self.maps: list[list[Tensor]] = []  # [image][scale] -> Tensor[C, h, w]
        self.factors: list[Tensor] = []  # [image] -> Tensor[S, 2]
        self.image_sizes: list[tuple[int, int]] = []

    @classmethod
    @torch.no_grad()
    def build(
        cls,
        detector: SPPNetDetector,
        data: DetectionSet,
        dtype: torch.dtype = torch.float16,
        progress: bool = False,
        trunk: TrunkPrefixCache | None = None,
    ) -> FeatureCache:
        """Run the trunk once per image and scale (eval mode) and keep the maps in ``dtype``.

        With ``trunk`` (a :class:`~sppnet.engine.prefix_cache.TrunkPrefixCache` of this
        detector), the trunk's frozen first blocks are taken from, or added to, that cache.

        Under ``torchrun`` each rank computes the maps of its shard of the images
        (:func:`~sppnet.engine.distributed.shard`), then the shards are exchanged so that every
        rank holds the whole cache (the fine-tuning sampler may give any rank any image).
        """
        was_training = detector.training
        detector.eval()
        entries: dict[int, tuple[list[Tensor], Tensor, tuple[int, int]]] = {}
        try:
            for i in progress_bar(shard(range(len(data))), "conv features", progress):
                if trunk is None:
                    feats = detector.compute_features([data.image(i)])
                else:
                    per_scale = [trunk.features([i], s) for s in detector.config.scales]
                    feats = MultiScaleFeatures(
                        [f.maps[0] for f in per_scale],
                        [f.factors[0] for f in per_scale],
                        per_scale[0].image_sizes,
                    )
                entries[i] = (
                    [m[0].to(dtype) for m in feats.maps],
                    torch.stack([f[0] for f in feats.factors]),
                    feats.image_sizes[0],
                )
        finally:
            detector.train(was_training)
        if get_world_size() > 1:
            entries = _exchange_shards(entries, device=next(detector.parameters()).device)
        cache = cls()
        for i in range(len(data)):
            maps, factors, size = entries[i]
            cache.maps.append(maps)
            cache.factors.append(factors)
            cache.image_sizes.append(size)
        return cache

    def __len__(self) -> int:
        return len(self.maps)

    @property
    def nbytes(self) -> int:
        """Bytes held by the cached maps."""
        return sum(m.numel() * m.element_size() for per_image in self.maps for m in per_image)

    def features(
        self,
        indices: Sequence[int],
        dtype: torch.dtype = torch.float32,
        device: torch.device | str | None = None,
    ) -> MultiScaleFeatures:
        """The features of the images ``indices`` (maps cast to ``dtype``, on ``device``)."""
        num_scales = len(self.maps[indices[0]])
        maps = [
            pad_stack([self.maps[i][k].to(device=device, dtype=dtype) for i in indices])
            for k in range(num_scales)
        ]
        factors = [
            torch.stack([self.factors[i][k] for i in indices]).to(device) for k in range(num_scales)
        ]
        return MultiScaleFeatures(maps, factors, [self.image_sizes[i] for i in indices])


def _exchange_shards(
    entries: dict[int, tuple[list[Tensor], Tensor, tuple[int, int]]], device: torch.device
) -> dict[int, tuple[list[Tensor], Tensor, tuple[int, int]]]:
    """Every rank's cache entries, merged; tensors travel through host memory (pickled by
    ``all_gather_object``, which cannot carry one rank's GPU tensors to another) and come back
    on ``device``."""
    host = {
        i: ([m.to("cpu") for m in maps], factors.to("cpu"), size)
        for i, (maps, factors, size) in entries.items()
    }
    merged: dict[int, tuple[list[Tensor], Tensor, tuple[int, int]]] = {}
    for part in all_gather_object(host):
        for i, (maps, factors, size) in part.items():
            merged[i] = ([m.to(device) for m in maps], factors.to(device), size)
    return merged
