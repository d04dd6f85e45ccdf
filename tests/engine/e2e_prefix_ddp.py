"""End-to-end fine-tuning of a toy detector, for ``test_prefix_cache`` to run under torchrun.

``python e2e_prefix_ddp.py TRUNK_CACHE_MB OUT``: trains 2 epochs on 8 toy images with the
frozen-prefix cache on (MB > 0) or off (0); rank 0 writes ``OUT/final.safetensors`` and
``OUT/info.json`` (the stage log's info).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from safetensors.torch import save_file

sys.path.insert(0, str(Path(__file__).parents[1]))  # tests/factories.py
sys.path.insert(0, str(Path(__file__).parent))

from test_prefix_cache import _toy_data, train_toy_end_to_end

from sppnet.engine.distributed import get_rank, init_distributed


def main(argv: list[str]) -> int:
    init_distributed()
    mb, out = int(argv[0]), Path(argv[1])
    detector, log = train_toy_end_to_end(_toy_data(8), (64,), mb, 2, out)
    if get_rank() == 0:
        state = {k: v.contiguous() for k, v in detector.state_dict().items()}
        save_file(state, str(out / "final.safetensors"))
        (out / "info.json").write_text(json.dumps(log.info))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
