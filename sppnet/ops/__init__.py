"""The SPP op: spatial pyramid pooling of whole maps (:func:`spp`) and of regions (:func:`roi_spp`).

Box utilities live beside it in :mod:`sppnet.ops.boxes`.
"""

from sppnet.ops.roi_spp import RoISpatialPyramidPooling, roi_spp
from sppnet.ops.spp import SpatialPyramidPooling, spp

__all__ = ["RoISpatialPyramidPooling", "SpatialPyramidPooling", "roi_spp", "spp"]
