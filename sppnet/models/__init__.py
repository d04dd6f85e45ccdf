"""sppnet.models: backbones (a registry), the SPP-net classifier and detector; see
docs/architecture.md."""

from sppnet.models.backbones import Backbone, create_backbone, list_backbones
from sppnet.models.weights import WeightsError, WeightsNotFoundError

__all__ = [
    "Backbone",
    "WeightsError",
    "WeightsNotFoundError",
    "create_backbone",
    "list_backbones",
]
