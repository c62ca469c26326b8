"""`model.weights`: start from weights trained before (an earlier run, a checkpoint or state-dict
file), for dl's models and torchvision's alike. Read with weights_only=True: tensors, never code.
The same architecture is needed; only the classifier head may differ (another class count), and
it then keeps its fresh initialization."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from dlcli.errors import UserError, first_line


def read_weights(source: str | Path) -> tuple[dict, Path]:
    """The state dict `source` names: a run directory (its checkpoints/best.pt), a dl checkpoint
    ({"model": state, ...}) or a bare state dict."""
    path = Path(str(source)).expanduser()
    if path.is_dir():
        path = path / "checkpoints" / "best.pt"
    if not path.is_file():
        raise UserError(f"model.weights={source}: no such checkpoint (give a run directory with checkpoints/best.pt, or a .pt file)")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise UserError(f"model.weights={source} cannot be read as weights: {first_line(exc)}") from None
    state = payload.get("model", payload) if isinstance(payload, dict) else None
    if not isinstance(state, dict) or not state or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise UserError(f"model.weights={source} holds no model weights")
    return state, path


def load_weights_into(module: nn.Module, state: dict, head: str, source) -> list[str]:
    """`state` into `module`; the parameters under `head` whose shape differs are left as they are.
    Returns those names; anything else missing, unexpected or of another shape is a one-line error."""
    own = module.state_dict()
    in_head = (lambda key: key == head or key.startswith(head + ".")) if head else (lambda key: False)
    reshaped = [k for k, v in state.items() if k in own and tuple(own[k].shape) != tuple(v.shape)]
    body = [k for k in reshaped if not in_head(k)]
    missing = [k for k in own if k not in state and not in_head(k)]  # a head may be absent: it starts fresh
    unexpected = [k for k in state if k not in own]
    if missing or unexpected or body:
        detail = f"missing {missing[:3]}" if missing else f"unexpected {unexpected[:3]}" if unexpected else f"other shapes {body[:3]}"
        raise UserError(f"model.weights={source} does not fit this model (the same architecture is needed): {detail}")
    module.load_state_dict({k: v for k, v in state.items() if k not in reshaped}, strict=False)
    return reshaped
