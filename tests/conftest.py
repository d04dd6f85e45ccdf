import os

import torch
from hypothesis import settings

# Two cores on CI: keep torch from oversubscribing them when pytest runs alongside other work.
torch.set_num_threads(min(2, os.cpu_count() or 1))

settings.register_profile("ci", max_examples=50, deadline=None, derandomize=True)
settings.register_profile("dev", max_examples=25, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
