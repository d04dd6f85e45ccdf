"""The SPP op: spatial pyramid pooling of whole maps (:func:`spp`) and of regions (:func:`roi_spp`).

Box utilities live beside it in :mod:`sppnet.ops.boxes`.
"""

from sppnet.ops.box_voting import box_voting
from sppnet.ops.boxes import BoxCoder, batched_nms_per_class, decode_boxes, encode_boxes
from sppnet.ops.roi_spp import RoISpatialPyramidPooling, roi_spp
from sppnet.ops.spp import SpatialPyramidPooling, spp
from sppnet.ops.warp import crop_and_warp, iter_crop_and_warp

__all__ = ["RoISpatialPyramidPooling", "SpatialPyramidPooling", "roi_spp", "spp"]
# Box utilities and R-CNN's crop-and-warp.
__all__ += ["BoxCoder", "batched_nms_per_class", "crop_and_warp", "decode_boxes", "encode_boxes"]
__all__ += ["box_voting", "iter_crop_and_warp"]
