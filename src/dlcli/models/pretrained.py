"""Any torchvision.models constructor by name, ready for fine-tuning.

The classifier head (the last linear layer) is replaced to give the data's class count; weights
come from a local file or a torchvision weights name; `optim.head_lr` gives the new head its own
learning rate (see dlcli.engine.optim.parameter_groups) and `model.freeze` freezes the rest.
"""

from __future__ import annotations

from pathlib import Path

from torch import nn

from dlcli.errors import UserError, first_line
from dlcli.models.layers import image_input
from dlcli.config.constraints import Text, constrained, nullable
from dlcli.models.registry import register
from dlcli.models.weights import load_weights_into, read_weights


def _last_linear(model: nn.Module) -> tuple[str, nn.Module]:
    """The classifier head: the last linear layer, or for a model without one (SqueezeNet) its last
    1x1 convolution, which gives one map per class before global pooling."""
    linears = [(name, module) for name, module in model.named_modules() if isinstance(module, nn.Linear)]
    if linears:
        return linears[-1]
    convs = [(name, module) for name, module in model.named_modules()
             if isinstance(module, nn.Conv2d) and tuple(module.kernel_size) == (1, 1)]
    if not convs:
        raise UserError(f"{type(model).__name__} has no classifier head (a last linear layer or 1x1 convolution) to replace")
    return convs[-1]


def _new_head(head: nn.Module, num_outputs: int) -> nn.Module:
    if isinstance(head, nn.Linear):
        return nn.Linear(head.in_features, num_outputs)
    return nn.Conv2d(head.in_channels, num_outputs, kernel_size=1)


def _head_size(head: nn.Module) -> int:
    return head.out_features if isinstance(head, nn.Linear) else head.out_channels


def _replace(model: nn.Module, name: str, module: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, module)


FIXED_SIZES = {"maxvit_t": 224}  # models without an image_size attribute that take only this size


@register
@constrained(name=Text(non_empty=True), weights=nullable(Text(non_empty=True)))
class TorchvisionModel(nn.Module):
    """torchvision.models.<name> with a head for `num_outputs` classes; grey input is repeated
    to three channels, since torchvision's image models (and their weights) expect RGB."""

    def __init__(self, input_shape, num_outputs: int, name: str = "resnet18", weights: str | None = None):
        super().__init__()
        import torchvision.models as tvm  # noqa: PLC0415  (a table's run never loads torchvision)

        channels, _, _ = image_input(input_shape, f"torchvision ({name})")
        available = tvm.list_models(module=tvm)
        if name not in available:
            close = [m for m in available if m.startswith(name[:4])][:8] or available[:8]
            raise UserError(f"model.name={name} is not a torchvision model: e.g. {', '.join(close)} (see torchvision.models.list_models())")
        self.repeat_grey = channels == 1
        if channels not in (1, 3):
            raise UserError(f"model=torchvision needs 1- or 3-channel images, the data has {channels}")
        weights_name = None if weights is None or Path(str(weights)).expanduser().exists() else str(weights)
        # GoogLeNet and Inception v3 train with auxiliary heads by default: one output is what dl trains
        extra = {"aux_logits": False} if name in ("googlenet", "inception_v3") else {}
        try:
            self.net = tvm.get_model(name, weights=weights_name, **extra)
        except (ValueError, KeyError) as exc:
            raise UserError(f"model.weights={weights} is neither a file nor a weights name of {name}: {first_line(exc)}") from None
        except OSError as exc:  # download of named weights without a network
            raise UserError(
                f"could not download the {weights} weights for {name} ({exc}): download them elsewhere and pass "
                "model.weights=/path/to/file.pth"
            ) from None
        if weights is not None and weights_name is None:
            self._load_file(Path(str(weights)).expanduser())
        self.has_pretrained_weights = weights is not None
        head_name, head = _last_linear(self.net)
        if _head_size(head) != num_outputs:
            _replace(self.net, head_name, _new_head(head, num_outputs))
        self.head_name = f"net.{head_name}"  # parameters under this prefix get optim.head_lr
        _, height, width = input_shape
        # vision transformers take exactly one size (their image_size); MaxViT's 7x7 windows need 224
        fixed = getattr(self.net, "image_size", None) or FIXED_SIZES.get(name)
        if fixed is not None and (height, width) != (fixed, fixed):
            raise UserError(f"model.name={name} takes {fixed}x{fixed} images, and the data's are {height}x{width}: "
                            f"set data.resize={fixed}")

    def _load_file(self, path: Path) -> None:
        """Weights from a file (a state dict of this torchvision model, or a dl checkpoint of one):
        the same reader and rules as model.weights for dl's models, the head aside."""
        state, _ = read_weights(path)
        head_name, _ = _last_linear(self.net)
        prefix = "net."
        if all(k.startswith(prefix) for k in state):  # a dl checkpoint of this model: its keys start at the wrapper
            state = {k[len(prefix):]: v for k, v in state.items()}
        load_weights_into(self.net, state, head_name, path)

    def forward(self, x):
        if self.repeat_grey:
            x = x.expand(-1, 3, -1, -1)
        return self.net(x)
