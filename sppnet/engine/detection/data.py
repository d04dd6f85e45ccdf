"""The training (or test) set of the detection engine: targets and proposals of every image in
memory, the images read on demand."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from torch import Tensor

from sppnet.utils.progress import progress_bar

__all__ = ["DetectionSet", "positives"]


class DetectionSet:
    """The images of a detection dataset with their targets and proposals.

    Targets and proposals are held in memory (small); images are read from ``dataset`` when
    needed, or held too with ``keep_images=True`` (the demo's 200 images take ~80 MB).

    Args:
        dataset: items ``(image uint8 [3, H, W], target dict)``, ``len(dataset)`` of them.
        proposals: ``(image, image_id) -> Tensor[M, 4]`` (e.g. a
            :class:`~sppnet.proposals.ProposalCache`), or a sequence of tensors in dataset order.
        max_proposals: keep only the first (highest-ranked) this many per image.
        keep_images: hold the decoded images in memory.
        progress: show a progress bar for the one pass over the dataset.
    """

    def __init__(
        self,
        dataset: Any,
        proposals: Callable[[Tensor, str], Tensor] | Sequence[Tensor],
        max_proposals: int | None = None,
        keep_images: bool = False,
        progress: bool = False,
    ) -> None:
        if not callable(proposals) and len(proposals) != len(dataset):
            raise ValueError(
                f"got {len(proposals)} proposal tensors for a dataset of {len(dataset)} images"
            )
        self.dataset = dataset
        self.targets: list[dict[str, Any]] = []
        self.proposals: list[Tensor] = []
        self._images: list[Tensor] | None = [] if keep_images else None
        for i in progress_bar(range(len(dataset)), "images", progress):
            image, target = dataset[i]
            boxes = proposals(image, target["image_id"]) if callable(proposals) else proposals[i]
            if boxes.ndim != 2 or boxes.shape[-1] != 4:
                raise ValueError(
                    f"proposals of image {target['image_id']!r} must be Tensor[M, 4], got "
                    f"{tuple(boxes.shape)}"
                )
            self.proposals.append(boxes[:max_proposals].float())
            self.targets.append(target)
            if self._images is not None:
                self._images.append(image)

    def __len__(self) -> int:
        return len(self.targets)

    def image(self, index: int) -> Tensor:
        """The image ``index``, Tensor[3, H, W] uint8."""
        if self._images is not None:
            return self._images[index]
        return self.dataset[index][0]

    def positives(self, index: int) -> tuple[Tensor, Tensor]:
        """Ground-truth ``(boxes [G, 4] float32, labels [G])`` of an image, difficult ones left out
        (as in the paper's training)."""
        return positives(self.targets[index])


def positives(target: dict[str, Any]) -> tuple[Tensor, Tensor]:
    """A target's ``(boxes [G, 4] float32, labels [G])`` without its difficult objects."""
    boxes, labels = target["boxes"].float(), target["labels"]
    difficult = target.get("difficult")
    if difficult is not None and difficult.numel():
        keep = ~difficult.bool()
        boxes, labels = boxes[keep], labels[keep]
    return boxes, labels
