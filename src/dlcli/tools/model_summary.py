"""Per-layer summary of a built model: output shapes, parameters, trainable share, multiply-adds.

Shapes are traced with forward hooks on the meta device (no real compute, no memory for
activations). Shared or tied parameters are counted once, by the first module that owns them.
"""

from __future__ import annotations

import copy
import math
from dataclasses import asdict, dataclass

import torch
from torch import nn

from dlcli.models.tokens import example_input


@dataclass
class LayerRow:
    name: str
    type: str
    output: list[int] | None  # per sample; None when the module was not called in forward
    params: int
    trainable: int
    macs: int  # multiply-adds per sample (conv and linear layers)

    @property
    def depth(self) -> int:
        return self.name.count(".") + 1


@dataclass
class ModelSummary:
    input: list[int]
    output: list[int]
    layers: list[LayerRow]
    total: int
    trainable: int
    buffers: int
    size_mb: float
    dtype: str

    @property
    def non_trainable(self) -> int:
        return self.total - self.trainable

    @property
    def macs(self) -> int:
        return sum(row.macs for row in self.layers)

    @property
    def largest(self) -> LayerRow | None:
        return max(self.layers, key=lambda row: row.params, default=None)

    def to_dict(self) -> dict:
        largest = self.largest
        return {
            "input": self.input,
            "output": self.output,
            "total": self.total,
            "trainable": self.trainable,
            "non_trainable": self.non_trainable,
            "buffers": self.buffers,
            "size_mb": self.size_mb,
            "dtype": self.dtype,
            "macs": self.macs,
            "largest_layer": largest.name if largest else None,
            "layers": [{**asdict(row), "share": row.params / self.total if self.total else 0.0} for row in self.layers],
        }


def summarize(model: nn.Module, input_shape: tuple[int, ...], depth: int | None = None) -> ModelSummary:
    """Trace one meta-device sample through `model`; rows are leaves, or modules at `depth`."""
    owner: dict[int, str] = {}  # parameter id -> first module name that holds it
    for name, module in model.named_modules():
        for param in module.parameters(recurse=False):
            owner.setdefault(id(param), name)
    shapes_in, shapes_out, order = _trace(model, input_shape)

    modules = dict(model.named_modules())
    rows = []
    for name, module in modules.items():
        if not name:
            continue
        is_leaf = not any(True for _ in module.children())
        level = name.count(".") + 1
        if depth is None and not is_leaf:
            continue
        if depth is not None and not (level == depth or (is_leaf and level < depth)):
            continue
        members = [(n, m) for n, m in modules.items() if n == name or n.startswith(name + ".")]
        owned = [p for n, m in members for p in m.parameters(recurse=False) if owner[id(p)] == n]
        rows.append(
            LayerRow(
                name=name,
                type=type(module).__name__,
                output=shapes_out.get(name),
                params=sum(p.numel() for p in owned),
                trainable=sum(p.numel() for p in owned if p.requires_grad),
                macs=sum(_macs(m, shapes_in.get(n), shapes_out.get(n)) for n, m in members),
            )
        )
    rows.sort(key=lambda row: order.get(row.name, math.inf))  # forward order; uncalled last
    unique = {id(p): p for p in model.parameters()}.values()
    buffers = {id(b): b for b in model.buffers()}.values()
    dtype = next(iter(unique)).dtype if unique else torch.float32
    return ModelSummary(
        input=list(input_shape),
        output=shapes_out.get("", []),
        layers=rows,
        total=sum(p.numel() for p in unique),
        trainable=sum(p.numel() for p in unique if p.requires_grad),
        buffers=sum(b.numel() for b in buffers),
        size_mb=sum(p.numel() * p.element_size() for p in unique) / 1e6,
        dtype=str(dtype).replace("torch.", ""),
    )


def _trace(model: nn.Module, input_shape: tuple[int, ...]):
    shapes_in: dict[str, list[int]] = {}
    shapes_out: dict[str, list[int]] = {}
    order: dict[str, int] = {}

    def hook(name):
        def record(module, inputs, output):
            order.setdefault(name, len(order))
            tensor_in = next((t for t in inputs if isinstance(t, torch.Tensor)), None)
            tensor_out = output[0] if isinstance(output, (tuple, list)) else output
            if tensor_in is not None:
                shapes_in.setdefault(name, list(tensor_in.shape[1:]))
            if isinstance(tensor_out, torch.Tensor):
                shapes_out.setdefault(name, list(tensor_out.shape[1:]))

        return record

    meta = _meta_copy(model)
    handles = [m.register_forward_hook(hook(n)) for n, m in meta.named_modules()]
    was_training = meta.training
    meta.eval()  # batch norm in training mode refuses a batch of one
    try:
        with torch.no_grad():
            meta(example_input(meta, input_shape, "meta"))  # token ids for a model that embeds them
    finally:
        for handle in handles:
            handle.remove()
        meta.train(was_training)
    return shapes_in, shapes_out, order


def _meta_copy(model: nn.Module) -> nn.Module:
    """The same architecture with meta tensors: shapes flow through it, nothing is computed."""
    if all(p.is_meta for p in model.parameters()):
        return model  # built on the meta device already (what param-count does)
    return copy.deepcopy(model).to("meta")


def _macs(module: nn.Module, shape_in, shape_out) -> int:
    if shape_out is None:
        return 0
    if isinstance(module, nn.Linear):
        return math.prod(shape_out) * module.in_features
    if isinstance(module, (nn.Conv1d, nn.Conv2d, nn.Conv3d)):
        return math.prod(shape_out) * (module.in_channels // module.groups) * math.prod(module.kernel_size)
    if isinstance(module, (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)) and shape_in is not None:
        return math.prod(shape_in) * (module.out_channels // module.groups) * math.prod(module.kernel_size)
    return 0
