"""The CUDA marks the device tests share (issue 16): `gpu` selects them (`pytest -m gpu`), and
`needs_cuda` skips them, with the reason printed, where CUDA is absent; `TINY` is their smallest run."""

import pytest
import torch

from ticketlab.training.loop import TrainConfig

HAS_CUDA = torch.cuda.is_available()
gpu = pytest.mark.gpu
needs_cuda = pytest.mark.skipif(not HAS_CUDA, reason="CUDA is not available on this machine")
no_cuda = pytest.mark.skipif(HAS_CUDA, reason="checks the error of a machine without CUDA")

TINY = TrainConfig(dataset="mnist1d", model="mlp", model_args={"widths": [16]}, iterations=20, batch_size=50,
                   eval_every=10)
