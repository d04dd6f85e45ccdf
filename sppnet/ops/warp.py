"""R-CNN's "warp" of proposal windows: the input of the R-CNN baseline mode.

R-CNN (Girshick et al. 2014, appendix A) warps every proposal, whatever its aspect ratio, to the
network's fixed input size, after growing it so that the warped image holds ``p`` pixels of
context around the original box (``p = 16`` at 227x227 in the paper). So the box is enlarged
about its centre by ``S / (S - 2p)`` in each direction and the enlarged box is resampled to
``S x S``; the original box lands on the central ``(S - 2p) x (S - 2p)`` pixels. Where the
enlarged box leaves the image, R-CNN fills with the image mean (it pads with zeros after mean
subtraction); here those pixels take the value ``fill``.

Resampling is bilinear at each output pixel's centre, the pixel-centre convention of
``F.interpolate(..., align_corners=False)``, done for all boxes at once by
:func:`torchvision.ops.roi_align` with ``aligned=True`` and one sample per output pixel
(``sampling_ratio=1``): like R-CNN's ``imresize(..., 'antialiasing', false)``. With
``antialias=True`` each output pixel instead averages a grid of ``ceil(box / S)`` samples, a box
filter that avoids aliasing when large boxes are shrunk. Two small differences from R-CNN's code,
which rounds the enlarged box to whole pixels: the box is not rounded (sub-pixel exact), and the
output pixels within half an input pixel outside the image repeat the image's edge instead of
taking ``fill``.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch
from torch import Tensor
from torchvision.ops import roi_align

__all__ = ["crop_and_warp", "expand_boxes_for_context", "iter_crop_and_warp"]


def _pair(output_size: int | Sequence[int]) -> tuple[int, int]:
    if isinstance(output_size, int):
        size = (output_size, output_size)
    else:
        size = tuple(int(s) for s in output_size)
    if len(size) != 2 or min(size) < 1:
        raise ValueError(
            f"output_size must be a positive int or (height, width), got {output_size!r}"
        )
    return size  # type: ignore[return-value]


def expand_boxes_for_context(
    boxes: Tensor, output_size: int | Sequence[int] = 224, context_padding: int = 16
) -> Tensor:
    """Grow boxes about their centres so that, warped to ``output_size``, the original box
    covers all but ``context_padding`` output pixels on each side.

    Args:
        boxes: Tensor[..., 4] xyxy pixels (exclusive ``x2``/``y2``).
        output_size: ``S`` or ``(S_h, S_w)``, the warped size.
        context_padding: ``p``, output pixels of context on each side; needs ``2p < S``.

    Returns:
        Tensor[..., 4], the boxes scaled by ``S_w / (S_w - 2p)`` in x and ``S_h / (S_h - 2p)`` in y.
    """
    out_h, out_w = _pair(output_size)
    if context_padding < 0 or 2 * context_padding >= min(out_h, out_w):
        raise ValueError(
            f"context_padding must be >= 0 and less than half of output_size {(out_h, out_w)}, "
            f"got {context_padding}"
        )
    if boxes.shape[-1] != 4:
        raise ValueError(f"boxes must have shape [..., 4], got {tuple(boxes.shape)}")
    scale = boxes.new_tensor(
        [out_w / (out_w - 2 * context_padding), out_h / (out_h - 2 * context_padding)]
    )
    centre = 0.5 * (boxes[..., :2] + boxes[..., 2:])
    half = 0.5 * (boxes[..., 2:] - boxes[..., :2]) * scale
    return torch.cat((centre - half, centre + half), dim=-1)


def _rois(images: Tensor, boxes: Tensor | Sequence[Tensor]) -> Tensor:
    """Boxes in roi_align's [K, 5] (batch index, x1, y1, x2, y2) form, checked against images."""
    n = images.shape[0]
    if isinstance(boxes, Tensor):
        if boxes.ndim == 2 and boxes.shape[1] == 4:
            if n != 1:
                raise ValueError(
                    f"crop_and_warp: {n} images but boxes of shape [K, 4]; give a list of {n} "
                    "box tensors or a [K, 5] tensor with the image index in column 0"
                )
            return torch.cat((boxes.new_zeros(boxes.shape[0], 1), boxes), dim=1)
        if boxes.ndim == 2 and boxes.shape[1] == 5:
            index = boxes[:, 0]
            # roi_align would read outside the batch for a bad index instead of failing.
            if boxes.shape[0] and not bool(
                ((index >= 0) & (index < n) & (index == index.round())).all()
            ):
                raise ValueError(
                    f"crop_and_warp: column 0 of [K, 5] boxes must hold image indices in 0..{n - 1}"
                )
            return boxes
        raise ValueError(
            f"crop_and_warp: boxes must have shape [K, 4] or [K, 5], got {tuple(boxes.shape)}"
        )
    boxes = list(boxes)
    if len(boxes) != n:
        raise ValueError(f"crop_and_warp: {n} images but {len(boxes)} box tensors")
    for i, b in enumerate(boxes):
        if b.ndim != 2 or b.shape[1] != 4:
            raise ValueError(
                f"crop_and_warp: boxes[{i}] must have shape [K, 4], got {tuple(b.shape)}"
            )
    return torch.cat(
        [torch.cat((b.new_full((b.shape[0], 1), i), b), dim=1) for i, b in enumerate(boxes)]
    )


def _fill_tensor(fill: float | Sequence[float] | Tensor, images: Tensor) -> Tensor:
    fill = torch.as_tensor(fill, dtype=images.dtype, device=images.device)
    if fill.ndim == 0:
        return fill.reshape(1, 1, 1, 1)
    if fill.shape != (images.shape[1],):
        raise ValueError(
            f"crop_and_warp: fill must be a number or one value per channel "
            f"({images.shape[1]}), got shape {tuple(fill.shape)}"
        )
    return fill.reshape(1, -1, 1, 1)


def iter_crop_and_warp(
    images: Tensor,
    boxes: Tensor | Sequence[Tensor],
    output_size: int | Sequence[int] = 224,
    context_padding: int = 16,
    *,
    fill: float | Sequence[float] | Tensor = 0.0,
    antialias: bool = False,
    chunk_size: int = 256,
) -> Iterator[Tensor]:
    """:func:`crop_and_warp` in chunks of at most ``chunk_size`` windows, in box order: for
    R-CNN mode, where 2,000 warped 224x224 windows would take 1.2 GB at once.

    Yields:
        Tensor[k, C, S_h, S_w] with k <= chunk_size; the chunks concatenate to
        :func:`crop_and_warp`'s output.
    """
    if not isinstance(images, Tensor) or not images.is_floating_point():
        raise TypeError(
            "crop_and_warp: image must be a float tensor (convert uint8 with .float() / 255 and "
            f"normalise first), got {getattr(images, 'dtype', type(images).__name__)}"
        )
    if images.ndim == 3:
        images = images.unsqueeze(0)
    if images.ndim != 4:
        raise ValueError(
            "crop_and_warp: image must have shape [C, H, W] or [N, C, H, W], got "
            f"{tuple(images.shape)}"
        )
    if chunk_size < 1:
        raise ValueError(f"crop_and_warp: chunk_size must be >= 1, got {chunk_size}")
    out_size = _pair(output_size)
    rois = _rois(images, boxes).to(device=images.device, dtype=images.dtype)
    rois = torch.cat(
        (rois[:, :1], expand_boxes_for_context(rois[:, 1:], out_size, context_padding)), 1
    )
    fill_value = _fill_tensor(fill, images)
    # roi_align reads zero outside the image: shift by the fill so that zero means "fill".
    shifted = images - fill_value
    for start in range(0, rois.shape[0], chunk_size):
        crops = roi_align(
            shifted,
            rois[start : start + chunk_size],
            output_size=out_size,
            spatial_scale=1.0,
            sampling_ratio=0 if antialias else 1,
            aligned=True,
        )
        yield crops + fill_value


def crop_and_warp(
    images: Tensor,
    boxes: Tensor | Sequence[Tensor],
    output_size: int | Sequence[int] = 224,
    context_padding: int = 16,
    *,
    fill: float | Sequence[float] | Tensor = 0.0,
    antialias: bool = False,
) -> Tensor:
    """Crop every box with R-CNN's context padding and warp it to ``output_size``.

    Args:
        images: Tensor[C, H, W] or Tensor[N, C, H, W], float (normalised as the network wants),
            on any device.
        boxes: Tensor[K, 4] xyxy pixels (one image), a list of N Tensor[K_i, 4] (one per image),
            or Tensor[K, 5] with the image index in column 0.
        output_size: ``S`` or ``(S_h, S_w)`` (224 for the torchvision trunks; 227 in R-CNN).
        context_padding: ``p``, output pixels of context around each box (16 in R-CNN); 0 warps
            the bare box.
        fill: the value, or one value per channel, of the pixels outside the image: 0 for a
            mean-subtracted image reproduces R-CNN's mean fill; pass the mean for an unnormalised
            one.
        antialias: average ``ceil(box / S)`` samples per output pixel instead of one bilinear
            sample (R-CNN's warp has no antialiasing).

    Returns:
        Tensor[K, C, S_h, S_w], the dtype and device of ``images``, windows in box order.
    """
    chunks = list(
        iter_crop_and_warp(
            images,
            boxes,
            output_size,
            context_padding,
            fill=fill,
            antialias=antialias,
            chunk_size=1 << 62,
        )
    )
    if not chunks:
        c = images.shape[-3]
        h, w = _pair(output_size)
        return images.new_zeros((0, c, h, w))
    return chunks[0]
