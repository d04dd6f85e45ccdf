"""The errors raised by :mod:`sppnet.data`. Both are ``ValueError`` subclasses."""

from __future__ import annotations


class ImageReadError(ValueError):
    """An image file (or buffer) could not be read: missing, empty, truncated, not an image, too
    large, or in an unsupported pixel format. The message names the file and what is wrong."""


class AnnotationError(ValueError):
    """An annotation record is invalid: malformed XML/JSON, wrong types, a class not in the list,
    a box outside the image or with non-positive size, or an image whose real size disagrees with
    the annotation. The message names the file and, where there is one, the object."""


class DatasetLayoutError(ValueError):
    """A folder is in none of the known dataset layouts (COCO, YOLO, VOC), in several of them,
    or lacks the split asked for. The message names the folder and what was expected."""
