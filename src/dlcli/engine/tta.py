"""Test-time augmentation: average the model's answers over flipped views of each image.

`eval.tta=hflip` (or a list, `eval.tta=[hflip,vflip]`) applies to the final test look and to
`dl eval`; training and validation never see it. Classification averages the probabilities (the
wrapper returns their logarithm, which cross-entropy and argmax read as logits); regression
averages the outputs.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from dlcli.errors import UserError

VIEWS = {"hflip": lambda x: x.flip(-1), "vflip": lambda x: x.flip(-2)}


def tta_views(value) -> list[str]:
    """eval.tta as a list of view names: null, none or [] for none."""
    if value is None or value == "none":
        return []
    views = [value] if isinstance(value, str) else list(value)
    for view in views:
        if view not in VIEWS:
            raise UserError(f"eval.tta={value}: '{view}' is not a view: choose from {', '.join(VIEWS)} (or a list of them)")
    return views


def checked_views(value, input_shape: tuple[int, ...]) -> list[str]:
    """The views, refused in one line when the model's input is not an image (C x H x W)."""
    views = tta_views(value)
    if views and len(input_shape) != 3:
        raise UserError(f"eval.tta={value} flips images, and this model's input is {'x'.join(map(str, input_shape))} "
                        "(not channels x height x width): drop it")
    return views


class TestTimeAugmented(nn.Module):
    def __init__(self, model: nn.Module, views: list[str], classification: bool):
        super().__init__()
        self.model, self.views, self.classification = model, [VIEWS[v] for v in views], classification

    def forward(self, x):
        outputs = [self.model(x), *(self.model(view(x)) for view in self.views)]
        if self.classification:  # log of the mean probability, computed without underflow to log(0)
            log_p = torch.stack([o.float().log_softmax(dim=1) for o in outputs])
            return torch.logsumexp(log_p, dim=0) - math.log(len(outputs))
        return torch.stack(outputs).mean(dim=0)
