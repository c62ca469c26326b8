"""Output shapes and parameter counts of a layer chain, with PyTorch's exact formulas.

Pure Python, so `dl conv-shape --input 3x32x32 "conv(10,k=5,p=2)"` answers without importing torch.
It explains as well as computes: a window that does not tile its input is a warning that names the
rows/columns lost and the padding that would keep them; impossible layers are one-line errors
that say the number that would work.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from dlcli.errors import UserError
from dlcli.tools.layer_spec import LayerSpec, parse_layer

ACTIVATIONS = {"relu", "relu6", "sigmoid", "tanh", "leakyrelu", "leaky_relu", "gelu", "elu", "selu", "silu",
               "softmax", "logsoftmax", "identity", "hardswish", "mish"}
# Names each layer accepts, and the aliases users type.
ALIASES = {"k": "kernel", "kernel_size": "kernel", "s": "stride", "p": "padding", "d": "dilation", "g": "groups",
           "op": "output_padding", "out": "channels", "c": "channels", "out_channels": "channels",
           "out_features": "features", "in": "in_features", "in_features": "in_features", "ceil": "ceil_mode"}


@dataclass
class LayerShape:
    layer: str
    output: tuple[int, ...]
    params: int
    warnings: list[str] = field(default_factory=list)


@dataclass
class ChainShape:
    input: tuple[int, ...]
    layers: list[LayerShape]

    @property
    def output(self) -> tuple[int, ...]:
        return self.layers[-1].output if self.layers else self.input

    @property
    def total_params(self) -> int:
        return sum(layer.params for layer in self.layers)

    def to_dict(self) -> dict:
        return {
            "input": list(self.input),
            "layers": [{"layer": l.layer, "output": list(l.output), "params": l.params, "warnings": l.warnings} for l in self.layers],
            "output": list(self.output),
            "total_params": self.total_params,
        }


def chain_shapes(input_shape: tuple[int, ...], specs: list[str]) -> ChainShape:
    shape = tuple(input_shape)
    layers = []
    for text in specs:
        result = layer_shape(parse_layer(text), shape)
        layers.append(result)
        shape = result.output
    return ChainShape(tuple(input_shape), layers)


def layer_shape(spec: LayerSpec, shape: tuple[int, ...]) -> LayerShape:
    kind = spec.kind
    if kind in ("conv", "conv2d"):
        return _conv(spec, shape)
    if kind in ("convt", "convtranspose", "conv_transpose", "deconv"):
        return _conv_transpose(spec, shape)
    if kind in ("maxpool", "avgpool", "maxpool2d", "avgpool2d"):
        return _pool(spec, shape, "max" if kind.startswith("max") else "avg")
    if kind in ("adaptiveavgpool", "adaptivemaxpool", "gap"):
        return _adaptive_pool(spec, shape)
    if kind == "flatten":
        _options(spec, [])
        return LayerShape(spec.text, (math.prod(shape),), 0)
    if kind in ("linear", "fc", "dense"):
        return _linear(spec, shape)
    if kind in ("bn", "batchnorm", "batchnorm1d", "batchnorm2d"):
        return _batch_norm(spec, shape)
    if kind in ("dropout", "dropout2d"):
        p = _options(spec, ["p"], {"p": 0.5})["p"]
        if not 0 <= p <= 1:
            raise UserError(f"{spec.text}: dropout probability {p} must be in [0, 1]")
        return LayerShape(spec.text, shape, 0)
    if kind in ACTIVATIONS:
        return LayerShape(spec.text, shape, 0)
    known = "conv, convT, maxpool, avgpool, adaptiveavgpool, flatten, linear, bn, dropout, " + ", ".join(sorted(ACTIVATIONS))
    raise UserError(f"unknown layer '{spec.text}': layers are {known}")


# -- argument handling -------------------------------------------------------------------------------

def _options(spec: LayerSpec, positional: list[str], defaults: dict | None = None) -> dict:
    """Positional and named arguments by canonical name; unknown names are one-line errors."""
    values = dict(defaults or {})
    if len(spec.args) > len(positional):
        raise UserError(f"{spec.text}: too many positional arguments (takes {', '.join(positional) or 'none'})")
    values.update(zip(positional, spec.args))
    allowed = set(values) | set(positional)
    for key, value in spec.kwargs.items():
        name = ALIASES.get(key, key)
        if name not in allowed:
            raise UserError(f"{spec.text}: unknown argument '{key}' (valid: {', '.join(sorted(allowed))})")
        values[name] = value
    return values


def _pair(value, name: str, spec: LayerSpec, minimum: int = 0) -> tuple[int, int]:
    pair = value if isinstance(value, tuple) else (value, value)
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in pair) or min(pair) < minimum:
        raise UserError(f"{spec.text}: {name}={_show(value)} must be an integer (or HxW pair) of at least {minimum}")
    return pair


def _positive_int(value, name: str, spec: LayerSpec) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise UserError(f"{spec.text}: {name}={_show(value)} must be a positive integer")
    return value


def _show(value) -> str:
    """3, 3x1, 2x8x8; a square pair shows as one number."""
    if isinstance(value, tuple):
        return str(value[0]) if len(value) == 2 and value[0] == value[1] else "x".join(map(str, value))
    return str(value)


def _image(spec: LayerSpec, shape: tuple[int, ...]) -> tuple[int, int, int]:
    if len(shape) != 3:
        raise UserError(f"{spec.text} needs a CxHxW input, but gets {_show(shape)}: put it before flatten")
    return shape


# -- convolution and pooling ----------------------------------------------------------------------

AXES = (("height", "row"), ("width", "column"))


def _window_output(size: int, kernel: int, stride: int, pad: int, dilation: int, ceil_mode: bool = False) -> int:
    """PyTorch's length after a conv/pool window along one axis (ceil_mode as in ATen's pooling)."""
    span = dilation * (kernel - 1) + 1
    numerator = size + 2 * pad - span + ((stride - 1) if ceil_mode else 0)
    out = numerator // stride + 1
    if ceil_mode and (out - 1) * stride >= size + pad:
        out -= 1  # the last window must start inside the input or its left padding
    return out


def _tiling_warnings(spec: LayerSpec, size_hw, kernel, stride, pad, dilation, max_pad=None) -> list[str]:
    """Rows/columns at the end that no window reaches, and a padding that would reach them."""
    warnings = []
    for axis, (size, k, s, p, d) in enumerate(zip(size_hw, kernel, stride, pad, dilation)):
        span = d * (k - 1) + 1
        leftover = (size + 2 * p - span) % s
        lost = leftover - p  # the right padding is skipped first; only the rest is real input
        if lost <= 0:
            continue
        _, unit = AXES[axis]
        fix = next(
            (q for q in range(p + 1, p + s + 1) if (size + 2 * q - span) % s == 0 and (max_pad is None or q <= max_pad[axis])),
            None,
        )
        advice = f"padding {q_text(axis, fix, pad)} would use them" if fix is not None else (
            f"an input {size + s - leftover} {unit}s long would use them"
        )
        warnings.append(
            f"the last {lost} {unit}{'s' if lost > 1 else ''} of the {size}-{unit} input "
            f"{'are' if lost > 1 else 'is'} never seen (kernel {k}, stride {s}, padding {p}); {advice}"
        )
    return warnings


def q_text(axis: int, value: int, pad: tuple[int, int]) -> str:
    if pad[0] == pad[1]:
        return f"p={value}"
    other = list(pad)
    other[axis] = value
    return f"p={other[0]}x{other[1]}"


def _check_fits(spec: LayerSpec, size_hw, kernel, pad, dilation) -> None:
    for axis, (size, k, p, d) in enumerate(zip(size_hw, kernel, pad, dilation)):
        span = d * (k - 1) + 1
        if size + 2 * p < span:
            need = math.ceil((span - size) / 2)
            name, unit = AXES[axis]
            raise UserError(
                f"{spec.text}: the kernel spans {span} {unit}s but the input {name} is {size} "
                f"({size + 2 * p} with padding {p}): use padding p>={need} or a kernel of at most {size + 2 * p}"
            )


def _conv_arguments(spec: LayerSpec, shape, example: str, extra: dict | None = None):
    """What conv and convT share: input size, options, and checked channels/kernel/stride/dilation/groups."""
    channels_in, height, width = _image(spec, shape)
    o = _options(spec, ["channels", "kernel"], {"stride": 1, "padding": 0, "dilation": 1, "groups": 1, "bias": True, **(extra or {})})
    if "channels" not in o or "kernel" not in o:
        raise UserError(f"{spec.text}: give the output channels and kernel, e.g. {example}")
    channels = _positive_int(o["channels"], "channels", spec)
    kernel = _pair(o["kernel"], "kernel", spec, 1)
    stride = _pair(o["stride"], "stride", spec, 1)
    dilation = _pair(o["dilation"], "dilation", spec, 1)
    _check_groups(spec, channels_in, channels, _positive_int(o["groups"], "groups", spec))
    return channels_in, height, width, o, channels, kernel, stride, dilation


def _conv(spec: LayerSpec, shape) -> LayerShape:
    channels_in, height, width, o, channels, kernel, stride, dilation = _conv_arguments(spec, shape, "conv(16,k=3)")
    groups = o["groups"]
    if o["padding"] == "same":
        if stride != (1, 1):
            suggestion = _show(tuple(d * (k - 1) // 2 for k, d in zip(kernel, dilation)))
            raise UserError(f"{spec.text}: padding=same needs stride 1 (PyTorch refuses it for strided convs); with stride {_show(stride)} use p={suggestion}")
        output = (channels, height, width)
        warnings = []
    else:
        pad = (0, 0) if o["padding"] == "valid" else _pair(o["padding"], "padding", spec, 0)
        _check_fits(spec, (height, width), kernel, pad, dilation)
        output = (channels, *(_window_output(n, k, s, p, d) for n, k, s, p, d in zip((height, width), kernel, stride, pad, dilation)))
        warnings = _tiling_warnings(spec, (height, width), kernel, stride, pad, dilation)
    params = channels * (channels_in // groups) * kernel[0] * kernel[1] + (channels if o["bias"] else 0)
    return LayerShape(spec.text, output, params, warnings)


def _conv_transpose(spec: LayerSpec, shape) -> LayerShape:
    channels_in, height, width, o, channels, kernel, stride, dilation = _conv_arguments(
        spec, shape, "convT(16,k=2,s=2)", {"output_padding": 0}
    )
    groups = o["groups"]
    pad = _pair(o["padding"], "padding", spec, 0)
    extra = _pair(o["output_padding"], "output_padding", spec, 0)
    for e, s, d in zip(extra, stride, dilation):
        if e >= max(s, d):
            raise UserError(f"{spec.text}: output_padding={e} must be smaller than the stride or dilation (at most {max(s, d) - 1})")
    sizes = tuple((n - 1) * s - 2 * p + d * (k - 1) + e + 1 for n, k, s, p, d, e in zip((height, width), kernel, stride, pad, dilation, extra))
    if min(sizes) < 1:
        raise UserError(f"{spec.text}: padding {_show(pad)} leaves an output of {_show(sizes)}: use less padding")
    params = channels_in * (channels // groups) * kernel[0] * kernel[1] + (channels if o["bias"] else 0)
    return LayerShape(spec.text, (channels, *sizes), params)


def _check_groups(spec: LayerSpec, channels_in: int, channels_out: int, groups: int) -> None:
    if channels_in % groups or channels_out % groups:
        raise UserError(f"{spec.text}: groups={groups} must divide both the {channels_in} input and {channels_out} output channels")


def _pool(spec: LayerSpec, shape, kind: str) -> LayerShape:
    channels, height, width = _image(spec, shape)
    o = _options(spec, ["kernel", "stride"], {"padding": 0, "ceil_mode": False, **({"dilation": 1} if kind == "max" else {})})
    if "kernel" not in o:
        raise UserError(f"{spec.text}: give the window, e.g. {kind}pool(2)")
    kernel = _pair(o["kernel"], "kernel", spec, 1)
    stride = _pair(o.get("stride", o["kernel"]), "stride", spec, 1)  # PyTorch: stride defaults to the kernel
    pad = _pair(o["padding"], "padding", spec, 0)
    dilation = _pair(o.get("dilation", 1), "dilation", spec, 1)
    ceil_mode = bool(o["ceil_mode"])
    for p, k in zip(pad, kernel):
        if p > k // 2:
            raise UserError(f"{spec.text}: padding {p} must be at most half the kernel ({k // 2})")
    _check_fits(spec, (height, width), kernel, pad, dilation)
    sizes = tuple(_window_output(n, k, s, p, d, ceil_mode) for n, k, s, p, d in zip((height, width), kernel, stride, pad, dilation))
    warnings = [] if ceil_mode else _tiling_warnings(spec, (height, width), kernel, stride, pad, dilation, max_pad=tuple(k // 2 for k in kernel))
    if warnings and not ceil_mode:
        warnings = [w + " (or ceil_mode=true)" for w in warnings]
    return LayerShape(spec.text, (channels, *sizes), 0, warnings)


def _adaptive_pool(spec: LayerSpec, shape) -> LayerShape:
    channels, _, _ = _image(spec, shape)
    o = _options(spec, ["output"], {"output": 1})
    size = _pair(o["output"], "output", spec, 1)
    return LayerShape(spec.text, (channels, *size), 0)


# -- dense layers -------------------------------------------------------------------------------------

def _linear(spec: LayerSpec, shape) -> LayerShape:
    positional = ["in_features", "features"] if len(spec.args) == 2 else ["features"]
    o = _options(spec, positional, {"bias": True, "in_features": None})
    if "features" not in o:
        raise UserError(f"{spec.text}: give the output size, e.g. linear(120)")
    features = _positive_int(o["features"], "features", spec)
    flat = math.prod(shape)
    if len(shape) != 1:
        raise UserError(f"{spec.text} needs a flat input but gets {_show(shape)}: put flatten before it (giving {flat} features)")
    if o["in_features"] is not None and o["in_features"] != flat:
        raise UserError(f"{spec.text} expects {o['in_features']} inputs but gets {flat}: use linear({flat},{features})")
    return LayerShape(spec.text, (features,), flat * features + (features if o["bias"] else 0))


def _batch_norm(spec: LayerSpec, shape) -> LayerShape:
    o = _options(spec, ["features"], {"features": None, "affine": True})
    features = shape[0]
    if o["features"] is not None and o["features"] != features:
        raise UserError(f"{spec.text} expects {o['features']} channels but gets {features}: use bn({features}) or just bn")
    return LayerShape(spec.text, shape, 2 * features if o["affine"] else 0)
