"""sppnet.models: backbones (a registry), the SPP-net classifier and detector; see
docs/architecture.md."""

from sppnet.models.backbones import Backbone, create_backbone, list_backbones
from sppnet.models.classifier import (
    FixedInputClassifier,
    SPPNetClassifier,
    build_classifier,
    imagenet_classes,
)
from sppnet.models.detector import SPPNetDetector
from sppnet.models.weights import WeightsError, WeightsNotFoundError

__all__ = [
    "Backbone",
    "FixedInputClassifier",
    "SPPNetClassifier",
    "SPPNetDetector",
    "WeightsError",
    "WeightsNotFoundError",
    "build_classifier",
    "create_backbone",
    "imagenet_classes",
    "list_backbones",
]
