"""A model that crashes mid-training, for the sweep's crash handling tests."""

import torch
from torch import nn


class Exploding(nn.Module):
    def __init__(self, input_shape, num_outputs: int, after_batches: int = 5):
        super().__init__()
        self.linear = nn.Linear(int(torch.tensor(input_shape).prod()), num_outputs)
        self.after_batches, self.calls = after_batches, 0

    def forward(self, x):
        if self.training:
            self.calls += 1
            if self.calls > self.after_batches:
                raise RuntimeError("CUDA out of memory (simulated)")
        return self.linear(x.flatten(1))
