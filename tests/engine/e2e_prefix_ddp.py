"""End-to-end fine-tuning of a toy detector, for ``test_prefix_cache`` to run under torchrun.

``python e2e_prefix_ddp.py TRUNK_CACHE_MB OUT``: trains 2 epochs on 8 toy images with the
frozen-prefix cache on (MB > 0) or off (0); rank 0 writes ``OUT/final.safetensors`` and
``OUT/info.json`` (the stage log's info).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
from safetensors.torch import save_file

sys.path.insert(0, str(Path(__file__).parent))

from test_prefix_cache import _detector, _toy_data

from sppnet.engine.detection import finetune_end_to_end
from sppnet.engine.distributed import get_rank, init_distributed
from sppnet.models.detector_config import TrainingConfig
from sppnet.models.heads import SoftmaxHead


def main(argv: list[str]) -> int:
    init_distributed()
    mb, out = int(argv[0]), Path(argv[1])
    data = _toy_data(8)
    detector = _detector((64,))
    detector.set_box_predictor(SoftmaxHead(detector.representation_size, 2))
    cfg = TrainingConfig(
        stages=("end_to_end",),
        epochs_e2e=2,
        lr_e2e=0.01,
        lr_e2e_trunk=0.01,
        trunk_frozen_prefix=3,
        trunk_cache_mb=mb,
        windows_per_batch=16,
    )
    torch.manual_seed(0)
    log = finetune_end_to_end(detector, data, cfg, out)
    if get_rank() == 0:
        state = {k: v.contiguous() for k, v in detector.state_dict().items()}
        save_file(state, str(out / "final.safetensors"))
        (out / "info.json").write_text(json.dumps(log.info))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
