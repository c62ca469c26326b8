"""The tools: `dl conv-shape`, `dl param-count` (both answer without training) and `dl lr-find`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import List, Optional

import typer

from dlcli.cli import CONFIG_DIR, OVERRIDES_HELP, app, checked_options, console, err_console, examples, handle_errors
from dlcli.errors import UserError, printable
from rich.table import Table

from dlcli.cli.render import param_table, shape_table


def _options(*names: str) -> dict:
    """What the tools' options may be (--input is a shape, read by checked_shape)."""
    from dlcli.config.schema import CONSTRAINTS
    from dlcli.config.constraints import POSITIVE, Interval, Options
    from dlcli.tools.lr_find import LADDERS, MOST_STEPS

    declared = {"depth": Interval(1, 64, integer=True), "start": POSITIVE, "end": POSITIVE,
                "steps": Interval(5, MOST_STEPS, integer=True), "mode": Options(LADDERS),
                "smooth": Interval(0, 1, closed="left"), "diverge": Interval(1, None, closed="neither"), "name": CONSTRAINTS["name"]}
    return {name: declared[name] for name in names}


def checked_shape(text: Optional[str]):
    """--input parsed as CxHxW (or a feature count), with a warning when it reads like HxWxC."""
    from dlcli.tools.layer_spec import parse_shape, shape_warnings

    if not text:
        return None
    shape = parse_shape(text)
    for warning in shape_warnings(shape, text):
        err_console.print(f"warning: {warning}", markup=False, highlight=False, soft_wrap=True)
    return shape


def split_layers_and_overrides(args: list[str]) -> tuple[list[str], list[str]]:
    """`conv(6,k=5)` and `flatten` are layers; `model=vgg` (an '=' before any '(') is an override."""
    layers, overrides = [], []
    for arg in args:
        is_override = "=" in arg and ("(" not in arg or arg.index("=") < arg.index("("))
        (overrides if is_override else layers).append(arg)
    return layers, overrides


@app.command(
    name="conv-shape",
    no_args_is_help=True,  # with neither layers nor overrides there is nothing to answer
    epilog=examples("""
    dl conv-shape --input 3x32x32 "conv(10,k=5,s=1,p=2)"
    dl conv-shape --input 1x28x28 "conv(6,k=5,p=2)" "avgpool(2)" "conv(16,k=5)" "avgpool(2)" flatten "linear(120)" "linear(84)" "linear(10)"
    dl conv-shape --input 1x7x7 "conv(1,k=3,s=3)"      (warns: a column and a row are never seen)
    dl conv-shape model=lenet data=digits --input 1x28x28
""",
    after="Layers: conv(out,k,s=1,p=0|same|valid,d=1,g=1,bias=true), convT(out,k,s,p,op,d,g), "
          "maxpool(k,s=k,p=0,d=1,ceil_mode=false), avgpool(k,s=k,p=0,ceil_mode=false), adaptiveavgpool(HxW), "
          "flatten, linear(out) or linear(in,out), bn, dropout(p), relu, sigmoid, tanh, ...; "
          "non-square sizes as k=3x1."),
)
@handle_errors
def convshape_text(
    args: Optional[List[str]] = typer.Argument(None, help="Layers in order, or Hydra overrides naming a model.", show_default=False),
    input_shape: Optional[str] = typer.Option(None, "--input", help="Input shape CxHxW (e.g. 3x32x32) or a feature count."),
    config_dir: Optional[List[Path]] = CONFIG_DIR,
    as_json: bool = typer.Option(False, "--json", help="Print the shapes as JSON."),
):
    """Output shape and parameters of each layer: a layer chain (instant) or a configured model."""
    layers, overrides = split_layers_and_overrides(list(args or []))
    if layers and overrides:
        raise UserError(f"give either layers or config overrides, not both (layers: {layers[0]}; override: {overrides[0]})")
    shape = checked_shape(input_shape)
    if layers:
        from dlcli.tools.conv_shape import chain_shapes

        if shape is None:
            raise UserError("--input is required with a layer chain: e.g. --input 3x32x32")
        result = chain_shapes(shape, layers).to_dict()
    else:
        from dlcli.config.compose import compose
        from dlcli.tools.layer_spec import check_traceable
        from dlcli.tools.param_count import model_summary

        check_traceable(shape, input_shape)
        summary = model_summary(compose(overrides, config_dir or []), shape)
        result = {
            "input": summary.input,
            "layers": [{"layer": f"{r.name} ({r.type})", "output": r.output, "params": r.params, "warnings": []} for r in summary.layers],
            "output": summary.output,
            "total_params": summary.total,
        }
    if as_json:
        print(json.dumps(result, indent=2))
        return
    console.print(shape_table(result))
    for layer in result["layers"]:
        for warning in layer["warnings"]:
            err_console.print(f"warning: {layer['layer']}: {warning}", markup=False, highlight=False, soft_wrap=True)


@app.command(
    name="param-count",
    epilog=examples("""
    dl param-count
    dl param-count model=lenet --input 1x28x28
    dl param-count model=mlp model.freeze=[net.1] --depth 1 --json
"""),
)
@handle_errors
@checked_options(lambda: _options("depth"))
def param_count(
    overrides: Optional[List[str]] = typer.Argument(None, help=OVERRIDES_HELP, show_default=False),
    input_shape: Optional[str] = typer.Option(None, "--input", help="Input shape CxHxW or a feature count (default: the data's)."),
    depth: Optional[int] = typer.Option(None, "--depth", help="Group rows by module depth (1 = top-level blocks); default: every leaf layer."),
    config_dir: Optional[List[Path]] = CONFIG_DIR,
    as_json: bool = typer.Option(False, "--json", help="Print the counts as JSON."),
):
    """Parameters per layer (trainable or frozen), buffers, size, multiply-adds, output shapes."""
    from dlcli.config.compose import compose
    from dlcli.tools.layer_spec import check_traceable
    from dlcli.tools.param_count import model_summary

    shape = checked_shape(input_shape)
    check_traceable(shape, input_shape)
    summary = model_summary(compose(list(overrides or []), config_dir or []), shape, depth).to_dict()
    if as_json:
        print(json.dumps(summary, indent=2))
        return
    console.print(param_table(summary))
    console.print(
        f"total {summary['total']:,}  trainable {summary['trainable']:,}  non-trainable {summary['non_trainable']:,}  "
        f"buffers {summary['buffers']:,} (not parameters)  size {summary['size_mb']:.3f} MB ({summary['dtype']})  "
        f"multiply-adds {summary['macs']:,} per sample  largest layer {summary['largest_layer']}",
        markup=False, highlight=False, soft_wrap=True,
    )


@app.command(
    name="lr-find",
    epilog=examples("""
    dl lr-find
    dl lr-find model=lenet data=fashion_mnist optim=adam --start 1e-6 --end 1 --steps 200
    dl train $(dl lr-find --apply)      (train with the suggested rate)
"""),
)
@handle_errors
@checked_options(lambda: _options("start", "end", "steps", "mode", "smooth", "diverge", "name"))
def lr_find(
    overrides: Optional[List[str]] = typer.Argument(None, help=OVERRIDES_HELP, show_default=False),
    start: float = typer.Option(1e-7, "--start", help="First learning rate of the ladder."),
    end: float = typer.Option(10.0, "--end", help="Last learning rate of the ladder."),
    steps: int = typer.Option(100, "--steps", help="Mini-batches, one per learning rate."),
    mode: str = typer.Option("exp", "--mode", help="exp (log-spaced) | linear"),
    smooth: float = typer.Option(0.98, "--smooth", help="Exponential moving average factor for the loss."),
    diverge: float = typer.Option(4.0, "--diverge", help="Stop when the smoothed loss exceeds this multiple of the best."),
    config_dir: Optional[List[Path]] = CONFIG_DIR,
    name: str = typer.Option("lr_find", "--name", help="Results land in runs/<name>/<timestamp>/."),
    apply: bool = typer.Option(False, "--apply", help="Print only the override to use, e.g. optim.lr=0.18."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Only the line to use and where the plot is (no table, no warnings)."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
):
    """The learning-rate range test: climb a ladder of rates for a few hundred batches, suggest one."""
    from dlcli.config.compose import compose
    from dlcli.rundir.directory import read_json
    from dlcli.tools.lr_find import find_lr

    cfg = compose(list(overrides or []), config_dir or [])
    cfg.name = name  # a value, not Hydra grammar: any name a directory can have
    run_dir, result = find_lr(cfg, start, end, steps, mode, smooth, diverge)
    report = read_json(run_dir / "lr_find.json")
    if apply:
        print(report["override"])
        return
    if as_json:
        print(json.dumps({"run_dir": str(run_dir), **report}, indent=2))
        return
    use_line = f"use: dl train {report['override']}    (plot: {run_dir / 'lr_find.png'})"
    if quiet:
        print(printable(use_line))
        return
    table = Table(title=f"learning-rate suggestions ({report['steps_run']} steps{', stopped at divergence' if result.stopped_early else ''})")
    table.add_column("rule")
    table.add_column("lr", justify="right")
    for rule, lr in result.suggestions.items():
        table.add_row(rule + (" (suggested)" if rule == "valley" else ""), f"{lr:.3g}")
    console.print(table)
    for warning in result.warnings:
        err_console.print(f"warning: {warning}", markup=False, highlight=False, soft_wrap=True)
    console.print(use_line, markup=False, highlight=False, soft_wrap=True)


