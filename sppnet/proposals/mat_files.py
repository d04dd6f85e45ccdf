"""Precomputed proposals from MATLAB ``.mat`` files, as distributed for PASCAL VOC.

The selective-search files that R-CNN, SPP-net and Fast R-CNN shipped for VOC (e.g.
``selective_search_data/voc_2007_trainval.mat``) hold two cell arrays:

- ``boxes``: one ``M x 4`` matrix per image, each row ``(y1, x1, y2, x2)`` in MATLAB's 1-based,
  inclusive pixel coordinates (a box covering the first ten columns has x1 = 1, x2 = 10);
- ``images``: the image ids (``"000005"``, ...) in the same order.

They are converted to the project's proposal format (docs/architecture.md): xyxy, 0-based, exclusive
right/bottom edges, so ``(y1, x1, y2, x2) -> (x1 - 1, y1 - 1, x2, y2)``. Files saved as MATLAB v7.3
(HDF5) cannot be read by scipy and are refused with a message saying so.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from sppnet.proposals.base import ProposalSource, check_image, check_proposals, unique_boxes

__all__ = ["MatFileProposals", "load_mat_proposals", "matlab_to_xyxy"]


def matlab_to_xyxy(boxes: np.ndarray) -> np.ndarray:
    """``(y1, x1, y2, x2)`` 1-based inclusive -> ``(x1, y1, x2, y2)`` 0-based, exclusive x2/y2.

    Args:
        boxes: array[M, 4] of any real dtype.

    Returns:
        array[M, 4] float64.
    """
    boxes = np.asarray(boxes, dtype=np.float64)
    return np.stack(
        [boxes[:, 1] - 1.0, boxes[:, 0] - 1.0, boxes[:, 3], boxes[:, 2]], axis=1
    ).reshape(-1, 4)


def _cell_to_list(cell: Any) -> list[Any]:
    """A MATLAB cell array as loaded by scipy (an object ndarray of any shape) -> a flat list."""
    array = np.asarray(cell)
    if array.dtype != object:
        raise TypeError(f"expected a cell array, got a {array.dtype} array of shape {array.shape}")
    return list(array.ravel(order="F"))


def _matlab_string(value: Any) -> str:
    array = np.asarray(value)
    if array.dtype.kind == "U":
        return "".join(array.ravel().tolist())
    raise TypeError(f"expected a char array, got {array.dtype}")


def _matlab_strings(value: Any) -> list[str]:
    """A cell array of strings, or a char matrix (one id per row, space padded) -> list[str]."""
    array = np.asarray(value)
    if array.dtype.kind == "U":
        return [row.rstrip(" ") for row in array.reshape(len(array), -1)[:, 0].tolist()]
    return [_matlab_string(v) for v in _cell_to_list(array)]


def load_mat_proposals(
    path: str | os.PathLike[str],
    image_ids: list[str] | None = None,
    *,
    boxes_key: str = "boxes",
    images_key: str = "images",
) -> dict[str, np.ndarray]:
    """Read a proposal ``.mat`` file into ``{image_id: array[M, 4] float64 xyxy 0-based}``.

    Args:
        path: the ``.mat`` file (MATLAB v4 to v7.2, what ``scipy.io.loadmat`` reads).
        image_ids: the ids in file order, needed when the file has no ``images_key`` entry; if
            the file has one, these must equal it.
        boxes_key, images_key: the names of the two cell arrays.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: not a readable MAT file, a missing key, ids and boxes of different lengths,
            duplicate ids, or a box that is malformed (wrong shape, non-finite, x2 < x1 or
            y2 < y1 in MATLAB's inclusive coordinates); the message names the file and the image.
    """
    import scipy.io

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"proposal file {str(path)!r} does not exist")
    try:
        contents = scipy.io.loadmat(path, variable_names=[boxes_key, images_key])
    except NotImplementedError as error:  # scipy's message for HDF5-based v7.3 files
        raise ValueError(
            f"proposal file {str(path)!r} is a MATLAB v7.3 (HDF5) file, which scipy cannot read; "
            "re-save it in MATLAB with save(..., '-v7')"
        ) from error
    except Exception as error:
        raise ValueError(
            f"proposal file {str(path)!r} is not a readable MAT file: {error}"
        ) from error

    if boxes_key not in contents:
        raise ValueError(f"proposal file {str(path)!r} has no {boxes_key!r} variable")
    try:
        box_cells = _cell_to_list(contents[boxes_key])
    except TypeError as error:
        raise ValueError(f"proposal file {str(path)!r}: {boxes_key!r}: {error}") from error

    if images_key in contents:
        try:
            file_ids = _matlab_strings(contents[images_key])
        except TypeError as error:
            raise ValueError(f"proposal file {str(path)!r}: {images_key!r}: {error}") from error
        if image_ids is not None and list(image_ids) != file_ids:
            raise ValueError(
                f"proposal file {str(path)!r}: the image_ids given differ from the file's "
                f"{images_key!r} ({len(image_ids)} vs {len(file_ids)} ids)"
            )
        ids = file_ids
    elif image_ids is not None:
        ids = [str(i) for i in image_ids]
    else:
        raise ValueError(
            f"proposal file {str(path)!r} has no {images_key!r} variable; pass image_ids in file "
            "order"
        )
    if len(ids) != len(box_cells):
        raise ValueError(
            f"proposal file {str(path)!r}: {len(ids)} image ids but {len(box_cells)} box arrays"
        )
    if len(set(ids)) != len(ids):
        raise ValueError(f"proposal file {str(path)!r}: duplicate image ids")

    result: dict[str, np.ndarray] = {}
    for image_id, raw in zip(ids, box_cells, strict=True):
        where = f"proposal file {str(path)!r}, image {image_id!r}"
        array = np.asarray(raw)
        if array.size == 0:
            result[image_id] = np.zeros((0, 4), dtype=np.float64)
            continue
        if array.ndim != 2 or array.shape[1] != 4 or array.dtype.kind not in "iuf":
            raise ValueError(
                f"{where}: expected a numeric M x 4 matrix, got {array.dtype} {array.shape}"
            )
        array = array.astype(np.float64)
        bad = ~np.isfinite(array).all(1) | (array[:, 2] < array[:, 0]) | (array[:, 3] < array[:, 1])
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            raise ValueError(
                f"{where}: row {row} (y1, x1, y2, x2) = {array[row].tolist()} is not a valid "
                "1-based inclusive box"
            )
        result[image_id] = matlab_to_xyxy(array)
    return result


class MatFileProposals(ProposalSource):
    """Proposals looked up by image id in a ``.mat`` file (see :func:`load_mat_proposals`).

    The file is read on first use (and not pickled with the object, so worker processes each read
    it once). Each call checks that the image's boxes lie inside the image it is given.

    Args:
        path: the ``.mat`` file.
        image_ids: ids in file order, for files without an ``images`` variable.
        min_size: drop boxes narrower or shorter than this (pixels); 0 keeps all.
        deduplicate: drop repeated boxes (first occurrence kept).
        max_proposals: keep at most this many, in file order; ``None`` keeps all.
    """

    name = "mat_file"

    def __init__(
        self,
        path: str | os.PathLike[str],
        image_ids: list[str] | None = None,
        *,
        min_size: float = 0.0,
        deduplicate: bool = True,
        max_proposals: int | None = None,
    ) -> None:
        self.path = Path(path).resolve()
        if not self.path.is_file():
            raise FileNotFoundError(f"proposal file {str(self.path)!r} does not exist")
        if max_proposals is not None and max_proposals < 1:
            raise ValueError(
                f"MatFileProposals: max_proposals must be >= 1 or None, got {max_proposals}"
            )
        self.image_ids = image_ids
        self.min_size = float(min_size)
        self.deduplicate = deduplicate
        self.max_proposals = max_proposals
        self._boxes: dict[str, np.ndarray] | None = None

    def params(self) -> dict[str, Any]:
        stat = self.path.stat()
        return {
            "path": str(self.path),
            "file_bytes": stat.st_size,
            "file_mtime_ns": stat.st_mtime_ns,
            "min_size": self.min_size,
            "deduplicate": self.deduplicate,
            "max_proposals": self.max_proposals,
        }

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_boxes"] = None
        return state

    def boxes_by_id(self) -> dict[str, np.ndarray]:
        """All of the file's boxes, ``{image_id: array[M, 4] float64 xyxy 0-based}``."""
        if self._boxes is None:
            self._boxes = load_mat_proposals(self.path, self.image_ids)
        return self._boxes

    def __call__(self, image: Tensor, image_id: str) -> Tensor:
        size = check_image(image)
        table = self.boxes_by_id()
        if image_id not in table:
            raise KeyError(
                f"proposal file {str(self.path)!r} has no proposals for image {image_id!r}"
            )
        boxes = torch.from_numpy(table[image_id]).float()
        check_proposals(boxes, size, what=f"proposal file {str(self.path)!r}, image {image_id!r}")
        sizes = boxes[:, 2:] - boxes[:, :2]
        boxes = boxes[(sizes >= self.min_size).all(1)]
        if self.deduplicate:
            boxes = boxes[unique_boxes(boxes)]
        if self.max_proposals is not None:
            boxes = boxes[: self.max_proposals]
        return boxes.to(image.device)
