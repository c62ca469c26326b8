"""Gradients through time, the recurrent networks' own pitfall: the gradient that reaches an early
step is a product of one factor per step after it, so it shrinks geometrically (vanishes: a plain
RNN cannot learn from the start of a sequence; the gates of an LSTM or GRU are the remedy) or grows
(explodes: clipping the gradient's norm is the remedy). Measured once after training on a training
batch; read by the checks from the run's config without torch."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch  # noqa: PLC0415  (dl diagnose runs without torch: dlcli.diagnostics imports this module)
    from torch import nn  # noqa: PLC0415  (dl diagnose runs without torch: dlcli.diagnostics imports this module)

RECURRENT_TARGET = "dlcli.models.RecurrentClassifier"


def recurrent_cell(config: dict | None) -> str | None:
    """rnn, lstm or gru when the run's model is one of dl's recurrent networks, else None."""
    model = (config or {}).get("model")
    if not isinstance(model, dict) or model.get("_target_") != RECURRENT_TARGET:
        return None
    return str(model.get("cell", "lstm"))


def gradient_reach(model: nn.Module, x: torch.Tensor, y: torch.Tensor, loss_fn) -> float | None:
    """The norm of the loss's gradient at the first recurrent layer's first step over that at its
    last step, for a many-to-one model (a language model's loss is at every step: nothing to
    compare), or None where it cannot be measured (no recurrent layer, packed padded text)."""
    import torch  # noqa: PLC0415  (dl diagnose runs without torch: dlcli.diagnostics imports this module)
    from torch import nn  # noqa: PLC0415  (dl diagnose runs without torch: dlcli.diagnostics imports this module)

    recurrent = next((m for m in model.modules() if isinstance(m, nn.RNNBase)), None)
    if recurrent is None or getattr(model, "causal", False) or len(x) == 0:
        return None
    steps: list[torch.Tensor] = []

    def capture(module, args):  # the layer's input as a leaf, so its gradient per step can be read
        if not isinstance(args[0], torch.Tensor):
            return None  # a packed sequence (padded text)
        steps.append(args[0].detach().requires_grad_(True))
        return (steps[-1], *args[1:])

    handle = recurrent.register_forward_pre_hook(capture)
    try:
        with torch.enable_grad(), torch.backends.cudnn.flags(enabled=False):  # cuDNN's RNN backward wants training mode
            loss = loss_fn(model(x), y)
            if not steps:
                return None
            (gradient,) = torch.autograd.grad(loss, steps[0])  # the weights' .grad stay as they are
    finally:
        handle.remove()
    per_step = gradient.norm(dim=(0, 2)) if recurrent.batch_first else gradient.norm(dim=(1, 2))
    last = float(per_step[-1])
    return float(per_step[0]) / last if last > 0 else None
