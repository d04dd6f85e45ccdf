"""Safe image decoding: every image the project reads goes through here.

:func:`read_image` returns ``Tensor[3, H, W] uint8`` RGB, as an image viewer displays the file:

- **EXIF orientation is applied** (``apply_exif=True``), so boxes are in the coordinates of the
  rotated image, as a viewer displays it. Annotation tools that display photos upright (labelme,
  VIA, CVAT, LabelImg) record boxes in those coordinates, and detectron2's ``read_image`` applies
  the tag too; PASCAL VOC's and COCO's images are web JPEGs whose pixels are stored upright, so
  the choice does not matter there. For a dataset annotated on the raw stored pixels (pipelines
  built on ``cv2.IMREAD_IGNORE_ORIENTATION`` or on Pillow without ``exif_transpose``), pass
  ``apply_exif=False``: the readers detect the mismatch (the annotated size is the real size
  transposed) and say so.
- **Pixel formats** are converted to 8-bit RGB: ``1`` (bilevel) to 0/255; ``L`` replicated to
  three channels; ``LA``, ``RGBA``, ``PA`` and palette images with transparency lose their alpha
  channel (the colours are kept as stored, as ``PIL.Image.convert("RGB")`` and torchvision's
  ``ImageReadMode.RGB`` do); palette (``P``) through its palette; 16-bit (``I;16*``, and ``I``
  taken as 16-bit, clipped to 0..65535) scaled by 255/65535 with rounding; 16-bit-per-channel RGB
  PNGs keep their high byte (Pillow's decoder); ``CMYK`` and ``YCbCr`` through Pillow's conversion
  (no ICC colour management). 32-bit float (``F``) images have no agreed intensity range and are
  rejected. Animated GIF/TIFF/WebP files give their first frame.
- **Decompression bombs**: the declared size is checked before any pixel is decoded; more than
  ``max_pixels`` (default :data:`DEFAULT_MAX_PIXELS` = 100,000,000, e.g. 10,000 x 10,000) is an
  error. Pillow's own hard limit (``2 * PIL.Image.MAX_IMAGE_PIXELS``, 178,956,970 by default) also
  applies: raise it too to read larger images.
- **Formats**: only :data:`ALLOWED_FORMATS` are recognised (no EPS/PostScript and other rarely
  needed decoders), whatever the file's extension says.

Every failure (missing or empty file, truncated JPEG/PNG, text renamed ``.jpg``, unknown format,
too large, unsupported pixel format, corrupt EXIF) raises :class:`ImageReadError` (a
``ValueError``) whose message names the file and what is wrong.
"""

from __future__ import annotations

import io
import os
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from sppnet.data.errors import ImageReadError

__all__ = [
    "ALLOWED_FORMATS",
    "DEFAULT_MAX_PIXELS",
    "ImageReadError",
    "decode_image",
    "image_from_array",
    "read_image",
    "read_image_size",
]

DEFAULT_MAX_PIXELS = 100_000_000
"""Largest accepted image, in pixels (width x height), unless ``max_pixels`` says otherwise."""

ALLOWED_FORMATS: tuple[str, ...] = ("JPEG", "PNG", "BMP", "GIF", "TIFF", "WEBP", "PPM")
"""Pillow formats :func:`read_image` recognises (multi-picture camera JPEGs open as JPEG)."""

_EXIF_ORIENTATION = 0x0112
_TRANSPOSING_ORIENTATIONS = (5, 6, 7, 8)  # the EXIF orientations that swap width and height


def read_image(
    path: str | os.PathLike[str],
    *,
    apply_exif: bool = True,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> torch.Tensor:
    """Decode the image file at ``path``.

    Args:
        path: an image file in one of :data:`ALLOWED_FORMATS`.
        apply_exif: rotate/flip by the EXIF orientation tag (boxes then follow the displayed image).
        max_pixels: refuse images whose declared width x height exceeds this.

    Returns:
        Tensor[3, H, W] uint8, RGB, H and W after EXIF orientation.

    Raises:
        ImageReadError: on any failure; the message names ``path``.
    """
    name = str(path)
    _check_file(name)
    with _open(name, name, max_pixels) as image:
        return _to_tensor(_decode(image, name, apply_exif))


def decode_image(
    data: bytes | bytearray | memoryview,
    *,
    name: str = "<bytes>",
    apply_exif: bool = True,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> torch.Tensor:
    """:func:`read_image` for an encoded image held in memory; ``name`` labels error messages."""
    if len(data) == 0:
        raise ImageReadError(f"{name}: empty buffer (0 bytes), not an image")
    with _open(io.BytesIO(bytes(data)), name, max_pixels) as image:
        return _to_tensor(_decode(image, name, apply_exif))


def read_image_size(
    path: str | os.PathLike[str],
    *,
    apply_exif: bool = True,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> tuple[int, int]:
    """``(H, W)`` of the image that :func:`read_image` would return, from the file header only.

    Cheap (no pixel is decoded), so a dataset can check every annotated size up front; a file
    that is truncated after its header passes here and fails in :func:`read_image`.
    """
    name = str(path)
    _check_file(name)
    with _open(name, name, max_pixels) as image:
        width, height = image.size
        if apply_exif and _orientation(image, name, header_only=True) in _TRANSPOSING_ORIENTATIONS:
            width, height = height, width
        return height, width


def image_from_array(
    array: np.ndarray,
    *,
    channel_order: str = "RGB",
    name: str = "<array>",
) -> torch.Tensor:
    """Convert an in-memory picture to the project's image format, Tensor[3, H, W] uint8 RGB.

    Args:
        array: ``[H, W]`` (grey), ``[H, W, 1]``, ``[H, W, 3]`` or ``[H, W, 4]`` (alpha dropped),
            dtype ``uint8``, ``bool`` (0/255), ``uint16`` (scaled by 255/65535, rounded) or
            floating point with every value in [0, 1] (scaled by 255, rounded).
        channel_order: ``"RGB"``, or ``"BGR"`` for arrays from OpenCV.
        name: labels error messages.

    Raises:
        ImageReadError: wrong shape, dtype, empty, or float values outside [0, 1] / not finite.
    """
    if not isinstance(array, np.ndarray):
        raise ImageReadError(f"{name}: expected a numpy array, got {type(array).__name__}")
    if channel_order not in ("RGB", "BGR"):
        raise ValueError(f"channel_order must be 'RGB' or 'BGR', got {channel_order!r}")
    if array.ndim == 2:
        array = array[:, :, None]
    if array.ndim != 3 or array.shape[2] not in (1, 3, 4):
        raise ImageReadError(f"{name}: expected shape [H, W], [H, W, 1|3|4], got {array.shape}")
    if array.shape[0] == 0 or array.shape[1] == 0:
        raise ImageReadError(f"{name}: empty image of shape {array.shape}")
    if array.dtype == np.uint8:
        pixels = array
    elif array.dtype == np.bool_:
        pixels = array.astype(np.uint8) * 255
    elif array.dtype == np.uint16:
        pixels = _scale_16bit(array)
    elif np.issubdtype(array.dtype, np.floating):
        if not np.isfinite(array).all() or array.min() < 0 or array.max() > 1:
            raise ImageReadError(f"{name}: float pixels must be finite and in [0, 1]")
        pixels = np.rint(array.astype(np.float64) * 255).astype(np.uint8)
    else:
        raise ImageReadError(
            f"{name}: unsupported dtype {array.dtype} (use uint8, bool, uint16 or float in [0, 1])"
        )
    if pixels.shape[2] == 1:
        pixels = np.repeat(pixels, 3, axis=2)
    pixels = pixels[:, :, :3]
    if channel_order == "BGR":
        pixels = pixels[:, :, ::-1]
    return torch.from_numpy(np.ascontiguousarray(pixels.transpose(2, 0, 1)))


def _check_file(name: str) -> None:
    try:
        size = os.stat(name).st_size
    except FileNotFoundError:
        raise ImageReadError(f"{name}: no such file") from None
    except OSError as exc:
        raise ImageReadError(f"{name}: cannot access the file ({exc.strerror})") from exc
    if Path(name).is_dir():
        raise ImageReadError(f"{name}: is a directory, not an image file")
    if size == 0:
        raise ImageReadError(f"{name}: file is empty (0 bytes), not an image")


@contextmanager
def _open(source: str | io.BytesIO, name: str, max_pixels: int) -> Iterator[Image.Image]:
    """Open ``source`` lazily (header only) and check its declared size against ``max_pixels``."""
    if max_pixels <= 0:
        raise ValueError(f"max_pixels must be positive, got {max_pixels}")
    try:
        with warnings.catch_warnings():
            # The size check below replaces Pillow's warning; its hard error is still caught.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(source, formats=ALLOWED_FORMATS)
    except Image.DecompressionBombError as exc:
        raise ImageReadError(
            f"{name}: declared size exceeds Pillow's decompression-bomb limit "
            f"(2 * PIL.Image.MAX_IMAGE_PIXELS = {2 * (Image.MAX_IMAGE_PIXELS or 0)} pixels): {exc}"
        ) from exc
    except UnidentifiedImageError as exc:
        head = _head(source)
        sniffed = _sniff(head)
        if sniffed is not None:
            raise ImageReadError(
                f"{name}: starts like a {sniffed} file but its header is corrupt or uses a "
                "variant Pillow cannot read"
            ) from exc
        raise ImageReadError(
            f"{name}: not an image in a supported format ({', '.join(ALLOWED_FORMATS)}); "
            f"the data starts with {head!r}"
        ) from exc
    except Exception as exc:  # Pillow raises many types for a corrupt header
        raise ImageReadError(f"{name}: corrupt image header ({type(exc).__name__}: {exc})") from exc
    with image:
        width, height = image.size
        if width <= 0 or height <= 0:
            raise ImageReadError(f"{name}: declared size {width}x{height} has no pixels")
        if width * height > max_pixels:
            raise ImageReadError(
                f"{name}: declared size {width}x{height} = {width * height} pixels exceeds the "
                f"limit of {max_pixels} pixels (max_pixels, a guard against decompression bombs)"
            )
        yield image


def _head(source: str | io.BytesIO, n: int = 16) -> bytes:
    if isinstance(source, io.BytesIO):
        return source.getvalue()[:n]
    try:
        with open(source, "rb") as f:
            return f.read(n)
    except OSError:
        return b""


_SIGNATURES = (
    (b"\xff\xd8\xff", "JPEG"),
    (b"\x89PNG\r\n\x1a\n", "PNG"),
    (b"GIF87a", "GIF"),
    (b"GIF89a", "GIF"),
    (b"BM", "BMP"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
)


def _sniff(head: bytes) -> str | None:
    """The format whose magic number ``head`` starts with, for error messages."""
    for magic, fmt in _SIGNATURES:
        if head.startswith(magic):
            return fmt
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WEBP"
    return None


def _orientation(image: Image.Image, name: str, header_only: bool = False) -> int:
    """The EXIF orientation tag (1..8; 1 when absent or invalid).

    With ``header_only`` a PNG's EXIF is taken only from an eXIf chunk before the pixel data (where
    writers put it): Pillow's ``getexif`` would otherwise decode the whole file looking for one.
    """
    try:
        if header_only and image.format == "PNG":
            exif = Image.Exif()
            if "exif" in image.info:
                exif.load(image.info["exif"])
        else:
            exif = image.getexif()
        value = exif.get(_EXIF_ORIENTATION, 1)
    except Exception as exc:  # a corrupt EXIF block
        raise ImageReadError(f"{name}: corrupt EXIF data ({type(exc).__name__}: {exc})") from exc
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


def _decode(image: Image.Image, name: str, apply_exif: bool) -> np.ndarray:
    """Decode the pixels of an opened image to ``[H, W, 3] uint8`` RGB."""
    try:
        image.load()
    except Exception as exc:  # truncated/corrupt data: OSError, SyntaxError, zlib errors, ...
        raise ImageReadError(
            f"{name}: cannot decode the pixel data, the file is truncated or corrupt "
            f"({type(exc).__name__}: {exc})"
        ) from exc
    if apply_exif:
        orientation = _orientation(image, name)
        if orientation != 1:
            try:
                image = ImageOps.exif_transpose(image)
            except Exception as exc:
                raise ImageReadError(
                    f"{name}: cannot apply EXIF orientation {orientation} "
                    f"({type(exc).__name__}: {exc})"
                ) from exc
    return _to_rgb(image, name)


def _to_rgb(image: Image.Image, name: str) -> np.ndarray:
    mode = image.mode
    if mode == "RGB":
        return np.array(image, dtype=np.uint8)
    if mode.startswith("I;16") or mode == "I":
        grey = np.asarray(image)
        if mode == "I":
            grey = np.clip(grey, 0, 65535)
        return np.repeat(_scale_16bit(grey)[:, :, None], 3, axis=2)
    if mode == "F":
        raise ImageReadError(
            f"{name}: 32-bit float pixels (mode F) have no agreed intensity range; "
            "convert the file to 8-bit or 16-bit"
        )
    try:
        if mode in ("P", "PA"):
            image = image.convert("RGBA")
        return np.array(image.convert("RGB"), dtype=np.uint8)
    except Exception as exc:
        raise ImageReadError(
            f"{name}: unsupported pixel format (mode {mode}): {type(exc).__name__}: {exc}"
        ) from exc


def _scale_16bit(values: np.ndarray) -> np.ndarray:
    """0..65535 to 0..255 with rounding (``x * 255 / 65535 = x / 257``)."""
    return np.rint(values.astype(np.float64) / 257.0).astype(np.uint8)


def _to_tensor(pixels: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(pixels.transpose(2, 0, 1)))
