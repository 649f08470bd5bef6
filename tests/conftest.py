import os

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture(autouse=True)
def _few_threads():
    # The test models are tiny: extra intra-op threads only spin and contend
    torch.set_num_threads(1)
    yield


from hypothesis import settings  # noqa: E402

# Same examples on every run: a CI failure must be reproducible locally.
settings.register_profile("ci", derandomize=True, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
