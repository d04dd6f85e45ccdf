"""Backbones: conv trunks with ``out_channels``, ``stride``, ``offset``, ``min_input_size``.

Importing this package registers every family (``zf5``, ``alexnet``, ``vgg16``, ``mobilenet_v2``,
``mobilenet_v2_c4``, ``resnet50``, ``small``).
"""

from sppnet.models.backbones import (  # noqa: F401  (each module registers its family)
    alexnet,
    mobilenet,
    mobilenet_c4,
    resnet,
    small,
    vgg,
    zf5,
)
from sppnet.models.backbones.base import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    Backbone,
    LayerGeometry,
    TrunkGeometry,
    main_path_layers,
    trunk_geometry,
)
from sppnet.models.backbones.registry import create_backbone, list_backbones, register_backbone

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "Backbone",
    "LayerGeometry",
    "TrunkGeometry",
    "create_backbone",
    "list_backbones",
    "main_path_layers",
    "register_backbone",
    "trunk_geometry",
]
