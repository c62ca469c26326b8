"""Weight initialization schemes, applied to every linear and conv layer (biases to zero).

`model.init` is a scheme's name, or a mapping with its setting: `model.init=normal` (std 0.01),
`'model.init={scheme: normal, std: 0.02}'`, `'model.init={scheme: uniform, bound: 0.1}'`.
"""

from __future__ import annotations

from collections.abc import Mapping

from torch import nn

from dlcli.config.constraints import POSITIVE, Options, check
from dlcli.errors import UserError

# scheme -> (the torch.nn.init function, its settings and their defaults)
SCHEMES = {
    "default": None,  # PyTorch's own (each layer's reset_parameters)
    "xavier_uniform": (nn.init.xavier_uniform_, {}),
    "xavier_normal": (nn.init.xavier_normal_, {}),
    "kaiming": (nn.init.kaiming_normal_, {"nonlinearity": "relu"}),  # He init, for ReLU networks
    "kaiming_normal": (nn.init.kaiming_normal_, {"nonlinearity": "relu"}),
    "kaiming_uniform": (nn.init.kaiming_uniform_, {"nonlinearity": "relu"}),
    "normal": (nn.init.normal_, {"std": 0.01}),
    "uniform": (nn.init.uniform_, {"bound": 0.05}),  # U(-bound, bound)
    "orthogonal": (nn.init.orthogonal_, {"gain": 1.0}),
}


# what each scheme's settings may be
SETTINGS = {"std": POSITIVE, "bound": POSITIVE, "gain": POSITIVE,
            "nonlinearity": Options(("relu", "leaky_relu", "tanh", "sigmoid", "linear"))}


def parse_scheme(init) -> tuple[str, dict]:
    """(scheme, settings) from model.init: a name, or {scheme: NAME, <setting>: value}."""
    if isinstance(init, Mapping):
        settings = dict(init)
        name = settings.pop("scheme", None)
    else:
        name, settings = init, {}
    if name not in SCHEMES:
        raise UserError(f"model.init={name} is not an init scheme: choose one of {', '.join(SCHEMES)}")
    allowed = SCHEMES[name][1] if SCHEMES[name] else {}
    unknown = [k for k in settings if k not in allowed]
    if unknown:
        valid = ", ".join(allowed) if allowed else "none"
        raise UserError(f"model.init: {name} has no setting '{unknown[0]}' (its settings: {valid})")
    merged = {**allowed, **settings}
    for key, value in merged.items():
        check(f"model.init.{key}", value, SETTINGS[key])
    return name, merged


def initialize(model: nn.Module, init) -> None:
    """Re-initialize weights with the scheme (biases to zero); `default` keeps PyTorch's init."""
    name, settings = parse_scheme(init)
    if SCHEMES[name] is None:
        return
    function = SCHEMES[name][0]
    if name == "normal":
        settings = {"mean": 0.0, "std": settings["std"]}
    elif name == "uniform":
        settings = {"a": -settings["bound"], "b": settings["bound"]}
    for module in model.modules():
        if isinstance(module, (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)):
            function(module.weight, **settings)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
