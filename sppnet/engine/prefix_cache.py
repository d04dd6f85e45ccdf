"""A cache of the frozen first blocks of the trunk, for end-to-end fine-tuning.

End-to-end fine-tuning trains only the trunk's blocks after ``trunk_frozen_prefix``; the blocks
before it have no trainable parameter and their batch norms are frozen, so their output is a
pure function of the image and the scale. Computing it once per (image, scale) instead of once
per step removes the frozen blocks' share of every later step (for the demo's MobileNetV2 trunk,
blocks 0-6 are about 45 % of a training step's conv time: they run at stride 2-8, the trained
blocks at stride 16).

The first request for an (image, scale) computes the prefix, later ones reuse it, so the first
epoch costs what it cost before and each later one skips the prefix. Entries are kept up to a
memory budget; past it, the prefix is recomputed on each request (same values, no caching).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from sppnet.models.detector import SPPNetDetector
from sppnet.models.features import MultiScaleFeatures, pad_stack
from sppnet.models.fuse import inference_copy

__all__ = ["TrunkPrefixCache", "split_trunk"]


def split_trunk(detector: SPPNetDetector, frozen_prefix: int) -> tuple[nn.Module, nn.Module]:
    """The trunk's ``body`` as ``(prefix, suffix)``: its first ``frozen_prefix`` children and the
    rest, each an ``nn.Sequential`` sharing the body's modules.

    Raises:
        TypeError: the body is not an ``nn.Sequential`` (its forward may not simply chain its
            children, so it cannot be split), or the prefix holds dropout.
        ValueError: ``frozen_prefix`` is not in [1, number of children - 1].

    The caller keeps the prefix constant (out of the optimizer, batch norms in eval mode):
    :func:`~sppnet.engine.detection.trunk_parameters` never returns its parameters.
    """
    body = getattr(detector.backbone, "body", detector.backbone)
    if not isinstance(body, nn.Sequential):
        raise TypeError(
            f"cannot split the trunk of {type(detector.backbone).__name__}: its body is a "
            f"{type(body).__name__}, not an nn.Sequential"
        )
    children = list(body.children())
    if not 1 <= frozen_prefix < len(children):
        raise ValueError(
            f"frozen_prefix must be in [1, {len(children) - 1}] for a trunk of "
            f"{len(children)} blocks, got {frozen_prefix}"
        )
    prefix = nn.Sequential(*children[:frozen_prefix])
    if any(isinstance(m, nn.modules.dropout._DropoutNd) for m in prefix.modules()):
        raise TypeError(
            f"the trunk's first {frozen_prefix} blocks hold dropout: their output in training "
            "mode is not a function of the image, so it cannot be cached"
        )
    return prefix, nn.Sequential(*children[frozen_prefix:])


class TrunkPrefixCache:
    """Per (image, scale), the output of the trunk's frozen first blocks.

    Args:
        detector: supplies the transform (resize, normalise) and the trunk.
        images: ``index -> Tensor[3, H, W]`` (e.g. ``DetectionSet.image``).
        frozen_prefix: how many of the trunk body's children are frozen (see
            :func:`split_trunk`).
        max_bytes: memory budget of the kept entries; 0 keeps none.
        dtype: dtype of the kept entries (float32 keeps the values those of the whole trunk,
            up to float rounding).

    :meth:`features` assembles :class:`MultiScaleFeatures` of one scale whose maps carry the
    gradient of the trunk's trained blocks.
    """

    def __init__(
        self,
        detector: SPPNetDetector,
        images: object,
        frozen_prefix: int,
        max_bytes: int,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        if max_bytes < 0:
            raise ValueError(f"max_bytes must be >= 0, got {max_bytes}")
        self.detector = detector
        self.images = images
        prefix, self.suffix = split_trunk(detector, frozen_prefix)
        # The prefix never trains, so an inference copy of it runs: batch norms folded into the
        # convolutions, channels-last weights (~1.6x faster on CPU, the same values to ~1e-6).
        self.prefix = inference_copy(prefix)
        self.max_bytes = max_bytes
        self.dtype = dtype
        self._entries: dict[tuple[int, int], tuple[Tensor, Tensor, tuple[int, int]]] = {}
        self.nbytes = 0
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._entries)

    def cached_keys(self) -> list[tuple[int, int]]:
        """The ``(image index, scale)`` pairs whose prefix output is kept."""
        return list(self._entries)

    @torch.no_grad()
    def _prefix(self, index: int, scale: int) -> tuple[Tensor, Tensor, tuple[int, int]]:
        """``(prefix output Tensor[1, C', h', w'], factors Tensor[2], original (H, W))``."""
        key = (index, scale)
        entry = self._entries.get(key)
        if entry is not None:
            self.hits += 1
            return entry
        self.misses += 1
        device = next(self.detector.parameters()).device
        image = self.images(index).to(device)  # type: ignore[operator]
        batch = self.detector.transform([image], [scale])[0]
        out = self.prefix(batch.images[0][None]).to(
            self.dtype, memory_format=torch.contiguous_format
        )
        entry = (out, batch.factors[0], (int(image.shape[-2]), int(image.shape[-1])))
        size = out.numel() * out.element_size()
        if self.nbytes + size <= self.max_bytes:
            self._entries[key] = entry
            self.nbytes += size
        return entry

    def features(self, indices: Sequence[int], scale: int) -> MultiScaleFeatures:
        """Conv maps of the images ``indices`` at ``scale`` (shorter side, pixels): the cached
        prefix output through the trunk's remaining blocks, with autograd as the module's mode
        and ``torch.is_grad_enabled()`` allow."""
        entries = [self._prefix(i, scale) for i in indices]
        inputs = [e[0].float() for e in entries]
        if all(x.shape == inputs[0].shape for x in inputs):
            maps = self.suffix(torch.cat(inputs))
        else:
            maps = pad_stack([self.suffix(x)[0] for x in inputs])
        factors = torch.stack([e[1] for e in entries])
        return MultiScaleFeatures([maps], [factors], [e[2] for e in entries])
