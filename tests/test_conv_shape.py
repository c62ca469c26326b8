import json
import random

import pytest
import torch
from torch import nn

from conftest import assert_cli_runs_without_torch, run_cli
from dlcli.errors import UserError
from dlcli.tools.conv_shape import chain_shapes
from dlcli.tools.layer_spec import parse_layer, parse_shape, shape_warnings

LENET = ["conv(6,k=5,p=2)", "avgpool(2)", "conv(16,k=5)", "avgpool(2)", "flatten", "linear(120)", "linear(84)", "linear(10)"]


def test_worked_example_ten_5x5_filters():
    result = chain_shapes((3, 32, 32), ["conv(10,k=5,s=1,p=2)"])
    assert result.output == (10, 32, 32) and result.total_params == 760


def test_lenet_chain_ends_at_ten_outputs_with_61706_parameters():
    result = chain_shapes((1, 28, 28), LENET)
    assert [l.output for l in result.layers] == [(6, 28, 28), (6, 14, 14), (16, 10, 10), (16, 5, 5), (400,), (120,), (84,), (10,)]
    assert result.total_params == 61_706


def test_a_kernel_that_does_not_tile_warns_with_the_fix():
    (layer,) = chain_shapes((1, 7, 7), ["conv(1,k=3,s=3)"]).layers
    assert layer.output == (1, 2, 2)
    assert len(layer.warnings) == 2  # one row and one column
    assert "the last 1 row of the 7-row input is never seen" in layer.warnings[0]
    assert "the last 1 column of the 7-column input is never seen" in layer.warnings[1]
    assert all("p=1 would use them" in w for w in layer.warnings)
    assert chain_shapes((1, 7, 7), ["conv(1,k=3,s=3,p=1)"]).layers[0].warnings == []


@pytest.mark.parametrize(
    "shape, layers, message",
    [
        ((3, 4, 4), ["conv(8,k=5)"], "the kernel spans 5 rows but the input height is 4 (4 with padding 0): use padding p>=1"),
        ((3, 8, 8), ["conv(8,k=3,s=2,p=same)"], "padding=same needs stride 1"),
        ((3, 8, 8), ["flatten", "linear(100,10)"], "linear(100,10) expects 100 inputs but gets 192: use linear(192,10)"),
        ((3, 8, 8), ["linear(10)"], "needs a flat input but gets 3x8x8: put flatten before it (giving 192 features)"),
        ((3, 8, 8), ["maxpool(2,p=2)"], "padding 2 must be at most half the kernel (1)"),
        ((3, 8, 8), ["convT(4,k=2,s=2,op=2)"], "output_padding=2 must be smaller than the stride or dilation"),
        ((3, 8, 8), ["conv(4,k=3,g=2)"], "groups=2 must divide both the 3 input and 4 output channels"),
        ((3, 8, 8), ["conv(4,k=3,q=1)"], "unknown argument 'q'"),
        ((3, 8, 8), ["transformer(4)"], "unknown layer 'transformer(4)'"),
        ((3, 8, 8), ["conv(4,k=3"], "cannot read layer"),
        ((10,), ["conv(4,k=3)"], "needs a CxHxW input, but gets 10"),
    ],
)
def test_impossible_layers_say_the_right_number(shape, layers, message):
    with pytest.raises(UserError) as info:
        chain_shapes(shape, layers)
    assert message in str(info.value)


def test_parsing_non_square_kernels_and_words():
    spec = parse_layer("conv(16, k=3x1, p=same, bias=false)")
    assert spec.args == [16] and spec.kwargs == {"k": (3, 1), "p": "same", "bias": False}
    assert chain_shapes((3, 9, 9), ["conv(16,k=3x1,p=same,bias=false)"]).layers[0].params == 16 * 3 * 3
    assert parse_shape("3x32x32") == (3, 32, 32) and parse_shape("784") == (784,)
    with pytest.raises(UserError, match="is not a shape"):
        parse_shape("3x32")


@pytest.mark.parametrize(
    "text, suggestion",
    [("32x32x3", "3x32x32"), ("28x28x1", "1x28x28"), ("224x224x3", "3x224x224"), ("64x48x3", "3x64x48")],
)
def test_an_hxwxc_input_is_warned_with_the_cxhxw_spelling(text, suggestion):
    shape = parse_shape(text)
    assert shape == tuple(int(p) for p in text.split("x"))  # still read as written: a warning, not an error
    assert shape_warnings(shape, text) == [f"--input {text} looks like HxWxC; dl reads CxHxW: did you mean --input {suggestion}?"]


@pytest.mark.parametrize("text", ["3x32x32", "1x28x28", "512x3x3", "64x1x1", "256x7x7", "8x8x8", "12x12x3", "784", "16x4x1"])
def test_cxhxw_inputs_and_feature_counts_get_no_shape_warning(text):
    assert shape_warnings(parse_shape(text), text) == []


def _torch_shape(module, shape):
    with torch.no_grad():
        return tuple(module(torch.zeros(1, *shape)).shape[1:])


def _random_layer(rng: random.Random, channels: int):
    kind = rng.choice(["conv", "conv", "convT", "maxpool", "avgpool"])
    k = (rng.randint(1, 5), rng.randint(1, 5)) if rng.random() < 0.3 else (rng.randint(1, 6),) * 2
    s = rng.randint(1, 3)
    p = rng.randint(0, 3)
    d = rng.randint(1, 2)
    ktext = f"{k[0]}x{k[1]}" if k[0] != k[1] else str(k[0])
    if kind == "conv":
        out, g = rng.choice([(4, 1), (6, 2), (8, 1), (6, 3)])
        g = g if channels % g == 0 else 1
        bias = rng.random() < 0.8
        spec = f"conv({out},k={ktext},s={s},p={p},d={d},g={g},bias={str(bias).lower()})"
        return spec, nn.Conv2d(channels, out, k, stride=s, padding=p, dilation=d, groups=g, bias=bias)
    if kind == "convT":
        out, op = rng.choice([4, 6]), rng.randint(0, 2)
        spec = f"convT({out},k={ktext},s={s},p={p},op={op},d={d})"
        return spec, lambda: nn.ConvTranspose2d(channels, out, k, stride=s, padding=p, output_padding=op, dilation=d)
    ceil = rng.random() < 0.4
    if kind == "maxpool":
        spec = f"maxpool({ktext},s={s},p={p},d={d},ceil_mode={str(ceil).lower()})"
        return spec, nn.MaxPool2d(k, stride=s, padding=p, dilation=d, ceil_mode=ceil)
    spec = f"avgpool({ktext},s={s},p={p},ceil_mode={str(ceil).lower()})"
    return spec, nn.AvgPool2d(k, stride=s, padding=p, ceil_mode=ceil)


def test_shapes_and_counts_match_pytorch_on_random_layers():
    """Several hundred random conv/convT/pool settings: same shape and count as torch, or both refuse."""
    rng = random.Random(0)
    agreed = refused = 0
    for _ in range(400):
        channels, height, width = rng.choice([1, 3, 6]), rng.randint(1, 20), rng.randint(1, 20)
        spec, build = _random_layer(rng, channels)
        try:
            module = build() if callable(build) and not isinstance(build, nn.Module) else build
            expected = _torch_shape(module, (channels, height, width))
            if min(expected) < 1:
                raise RuntimeError("empty output")
        except (RuntimeError, ValueError):
            with pytest.raises(UserError):
                chain_shapes((channels, height, width), [spec])
            refused += 1
            continue
        (layer,) = chain_shapes((channels, height, width), [spec]).layers
        assert layer.output == expected, (spec, channels, height, width)
        assert layer.params == sum(p.numel() for p in module.parameters()), spec
        agreed += 1
    assert agreed > 200 and refused > 20  # both sides of the boundary were exercised


def test_linear_bn_flatten_adaptive_pool_match_pytorch():
    result = chain_shapes((8, 6, 6), ["bn", "adaptiveavgpool(2x3)", "flatten", "linear(5)", "bn", "dropout(0.2)", "relu"])
    torch_net = nn.Sequential(nn.BatchNorm2d(8), nn.AdaptiveAvgPool2d((2, 3)), nn.Flatten(), nn.Linear(48, 5), nn.BatchNorm1d(5))
    assert result.output == _torch_shape(torch_net.eval(), (8, 6, 6))
    assert result.total_params == sum(p.numel() for p in torch_net.parameters())


def test_cli_json_schema_and_warning(workdir):
    result = run_cli("conv-shape", "--input", "1x7x7", "conv(1,k=3,s=3)", "--json")
    assert result.exit_code == 0
    data = json.loads(result.stdout)
    assert set(data) == {"input", "layers", "output", "total_params"}
    assert set(data["layers"][0]) == {"layer", "output", "params", "warnings"} and data["layers"][0]["warnings"]
    table = run_cli("conv-shape", "--input", "1x7x7", "conv(1,k=3,s=3)")
    assert table.exit_code == 0 and "warning: conv(1,k=3,s=3): the last 1 row" in table.stderr


@pytest.mark.parametrize(
    "args, message",
    [
        (["conv(4,k=3)"], "--input is required"),
        (["--input", "3x32", "conv(4,k=3)"], "--input 3x32 is not a shape"),
        (["--input", "3x4x4", "conv(8,k=5)"], "use padding p>=1"),
        (["--input", "3x4x4", "conv(8,k=3)", "model=lenet"], "give either layers or config overrides"),
        (["model=nope"], "unknown model 'nope'"),
    ],
)
def test_cli_bad_input_exit_2(workdir, args, message):
    result = run_cli("conv-shape", *args)
    assert result.exit_code == 2 and message in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_cli_from_config_traces_the_model(workdir):
    result = run_cli("conv-shape", "model=lenet", "--input", "1x28x28", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["output"] == [10] and data["total_params"] == 61_706
    assert [l["output"] for l in data["layers"] if "Conv2d" in l["layer"]] == [[6, 28, 28], [16, 10, 10]]


@pytest.mark.slow  # starts interpreters
def test_layer_chain_does_not_import_torch():
    assert_cli_runs_without_torch("conv-shape", "--input", "3x32x32", "conv(10,k=5,p=2)", "--json")
    assert_cli_runs_without_torch("conv-shape", exit_code=2)  # no arguments: click shows the help, exit 2
