"""What the VOC and COCO readers share: records parsed up front, invalid ones raised or skipped.

A reader parses every annotation when it is built, so ``image_ids``, ``classes`` and every target
are known without decoding an image (:meth:`DetectionDataset.get_target`), and invalid records
are found at once: with ``on_invalid="raise"`` (the default) the first one raises
:class:`~sppnet.data.errors.AnnotationError` (or :class:`~sppnet.data.errors.ImageReadError`);
with ``on_invalid="skip"`` each is left out, listed in :attr:`DetectionDataset.invalid` as
``(file, reason)`` and counted in a logged warning. Nothing is dropped silently.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from sppnet.data.errors import AnnotationError, ImageReadError
from sppnet.data.images import DEFAULT_MAX_PIXELS, read_image, read_image_size

__all__ = ["ON_INVALID", "DetectionDataset", "Record"]

logger = logging.getLogger("sppnet.data")

ON_INVALID = ("raise", "skip")


@dataclass(frozen=True)
class Record:
    """One image: its file and its (validated) target, tensors held as numpy arrays (a numpy
    array costs about a fifth of the memory of a small tensor; COCO train has 118k targets)."""

    image_path: Path
    target: dict


class DetectionDataset(torch.utils.data.Dataset):
    """A list of :class:`Record` with the dataset protocol of ``docs/architecture.md``.

    Items are ``(image, target)``: Tensor[3, H, W] uint8 RGB and the target dict of
    :mod:`sppnet.data.target`. Subclasses fill ``records`` through :meth:`_add` / :meth:`_reject`.

    ``category_ids`` are the dataset's own class ids, for results files: label ``i + 1`` is
    category ``category_ids[i]`` (COCO: the file's ids; YOLO: the class indices 0..K-1; VOC and
    others: 1..K). ``format`` names the layout (``"voc"``, ``"coco"``, ``"yolo"``).
    """

    format: str = "detection"

    def __init__(
        self,
        classes: list[str],
        *,
        on_invalid: str = "raise",
        verify_images: bool = True,
        apply_exif: bool = True,
        max_pixels: int = DEFAULT_MAX_PIXELS,
        category_ids: list[int] | None = None,
    ) -> None:
        if on_invalid not in ON_INVALID:
            raise ValueError(f"on_invalid must be one of {ON_INVALID}, got {on_invalid!r}")
        if (
            not classes
            or len(set(classes)) != len(classes)
            or not all(isinstance(c, str) and c for c in classes)
        ):
            raise ValueError(
                f"classes must be a non-empty list of distinct non-empty names, got {classes}"
            )
        self.classes: list[str] = list(classes)
        if category_ids is None:
            category_ids = list(range(1, len(classes) + 1))
        if len(category_ids) != len(classes) or len(set(category_ids)) != len(category_ids):
            raise ValueError(
                f"category_ids must be {len(classes)} distinct ids, one per class, got "
                f"{category_ids}"
            )
        self.category_ids: list[int] = [int(c) for c in category_ids]
        self.on_invalid = on_invalid
        self.verify_images = verify_images
        self.apply_exif = apply_exif
        self.max_pixels = max_pixels
        self.records: list[Record] = []
        self.invalid: list[tuple[str, str]] = []

    # -- the dataset protocol ------------------------------------------------------------------

    @property
    def num_classes(self) -> int:
        """Number of object classes, background excluded (labels are 1..num_classes)."""
        return len(self.classes)

    @property
    def image_ids(self) -> list[str]:
        return [r.target["image_id"] for r in self.records]

    @property
    def result_image_ids(self) -> list[int | str]:
        """The ids a COCO results file uses for these images (COCO: the integer ids)."""
        return self.image_ids

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, dict]:
        """Decode image ``index``; its shape is checked against the annotated size.

        Raises:
            ImageReadError: the file cannot be decoded (always raised: the index is taken).
            AnnotationError: the decoded size disagrees with the annotation.
        """
        record = self.records[index]
        image = read_image(
            record.image_path, apply_exif=self.apply_exif, max_pixels=self.max_pixels
        )
        expected = record.target["size"]
        if tuple(image.shape[1:]) != expected:
            raise AnnotationError(self._size_message(record.image_path, expected, image.shape[1:]))
        return image, self.get_target(index)

    def get_target(self, index: int) -> dict:
        """The target of image ``index`` without decoding the image (a fresh copy)."""
        target = self.records[index].target
        return {
            k: torch.from_numpy(v.copy()) if isinstance(v, np.ndarray) else v
            for k, v in target.items()
        }

    def image_path(self, index: int) -> Path:
        return self.records[index].image_path

    # -- for subclasses --------------------------------------------------------------------------

    def _check_image(self, path: Path, annotated: tuple[int, int], where: str) -> None:
        """With ``verify_images``: the file exists, its header parses, its size is ``annotated``."""
        if not self.verify_images:
            if not path.is_file():
                raise AnnotationError(f"{where}: image file {path} is missing")
            return
        try:
            real = read_image_size(path, apply_exif=self.apply_exif, max_pixels=self.max_pixels)
        except ImageReadError as exc:
            raise AnnotationError(f"{where}: image {exc}") from exc
        if real != annotated:
            raise AnnotationError(f"{where}: " + self._size_message(path, annotated, real))

    def _size_message(self, path: Path, annotated: tuple[int, int], real) -> str:
        real = tuple(int(v) for v in real)
        message = (
            f"image {path} is {real[0]}x{real[1]} (HxW) but the annotation says "
            f"{annotated[0]}x{annotated[1]}"
        )
        if real == annotated[::-1]:
            message += (
                " (transposed: the annotation ignores the EXIF orientation, pass apply_exif="
                f"{not self.apply_exif})"
            )
        return message

    def _add(self, image_path: Path, target: dict) -> None:
        stored = {  # numpy arrays (from make_target_arrays) are stored as they are
            k: v.numpy().copy() if isinstance(v, torch.Tensor) else v for k, v in target.items()
        }
        self.records.append(Record(Path(image_path), stored))

    def _reject(self, file: str, error: Exception) -> None:
        """Raise ``error`` or, with ``on_invalid="skip"``, record it."""
        if self.on_invalid == "raise":
            raise error
        self.invalid.append((str(file), str(error)))

    def _report_skipped(self, name: str) -> None:
        if self.invalid:
            shown = "; ".join(reason for _, reason in self.invalid[:5])
            more = f" (and {len(self.invalid) - 5} more)" if len(self.invalid) > 5 else ""
            logger.warning(
                "%s: skipped %d invalid record(s), see .invalid: %s%s",
                name,
                len(self.invalid),
                shown,
                more,
            )
