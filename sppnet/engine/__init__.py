"""sppnet.engine: checkpoints, the training loop, and the torch.distributed set-up.

- :mod:`sppnet.engine.checkpoint`: atomic, verified checkpoints (safetensors + JSON, no pickle).
"""

from sppnet.engine.checkpoint import (
    Checkpoint,
    CheckpointError,
    latest_checkpoint,
    load_checkpoint,
    load_model,
    save_checkpoint,
    save_model,
)

__all__ = [
    "Checkpoint",
    "CheckpointError",
    "latest_checkpoint",
    "load_checkpoint",
    "load_model",
    "save_checkpoint",
    "save_model",
]
