"""dl's completion options (`--install-completion [SHELL]`, `--show-completion [SHELL]`, and the
hidden `--build-completion-index` a TAB starts in the background), and the command tree that the
index describes, read from the CLI itself so that it never drifts from the commands.

A TAB itself never comes here: dlcli.__main__ answers it before this package is imported
(dlcli.completion.complete).
"""

from __future__ import annotations

import os
import pathlib
from typing import Optional, Sequence

import typer

from dlcli.completion import SHELLS
from dlcli.completion.complete import configs_of
from dlcli.completion.index import BUILD_OPTION, COMMANDS, build_finished, commands_stamp, index_dir, write_index
from dlcli.completion.shells import chosen_shell, install, script
from dlcli.completion.values import choices_of
from dlcli.config.constraints import Options
from dlcli.errors import UserError, printable
from dlcli.system.terminal import SafeConsole

INSTALL, SHOW = "--install-completion", "--show-completion"
ARGUMENT_TAKES = {"overrides": "overrides", "args": "overrides"}  # (conv-shape's args: layers, or overrides naming a model)
err_console = SafeConsole(stderr=True)


def with_shell_named(args: Sequence[str]) -> list[str]:
    """`dl --install-completion` alone means the shell $SHELL runs: the option gets an empty
    value, which says so (an option's value cannot be left out)."""
    args = list(args)
    for position, arg in enumerate(args):
        if not arg.startswith("-"):
            break
        if arg in (INSTALL, SHOW) and (position + 1 == len(args) or args[position + 1].startswith("-")):
            return [*args[: position + 1], "", *args[position + 1:]]
    return args


def describe(command) -> dict:
    """A command (or group) as the index keeps it: its help's first line, its options (each name
    -> help, flag, choices, what it takes), its arguments in order, the words its first argument
    may be, its subcommands."""
    declared = _declared(command)
    node: dict = {"help": _first_line(command.help), "options": {}, "arguments": []}
    for parameter in command.params:
        if getattr(parameter, "hidden", False):
            continue
        entry = {"takes": _takes(parameter), "choices": choices_of(declared[parameter.name]) if parameter.name in declared else []}
        if parameter.param_type_name == "option":
            entry.update(help=_first_line(parameter.help), flag=bool(parameter.is_flag))
            node["options"].update(dict.fromkeys([*parameter.opts, *parameter.secondary_opts], entry))
        else:
            node["arguments"].append({**entry, "name": parameter.name, "many": parameter.nargs == -1})
    words = getattr(command.callback, "first_words", None)
    if words:
        node["words"] = dict(words)
    commands = getattr(command, "commands", None)
    if commands:
        node["commands"] = {name: describe(sub) for name, sub in commands.items() if not getattr(sub, "hidden", False)}
    return node


def declares(declare):
    """Mark a command with what declares its options' constraints (read by `describe` for their choices)."""
    def mark(command):
        command.declared_options = declare
        return command
    return mark


def device_option() -> dict:
    """A command's --device, declared as trainer.device is (completion offers its usual names)."""
    from dlcli.config.schema import CONSTRAINTS  # noqa: PLC0415  (called on first use: dl --help loads no schema)

    return {"device": CONSTRAINTS["trainer.device"]}


def first_words(**words: str):
    """Mark a command whose first argument may be a word that changes what it does (`dl runs diff`),
    each with a line about it: completion offers them as it offers subcommands."""
    def mark(command):
        command.first_words = words
        return command
    return mark


def build_index(command) -> bool:
    """Write the completion index: the command tree, and the configs this directory reads. False
    where dl's cache directory cannot be written (completion then answers from the configs alone)."""
    written = write_index(index_dir() / COMMANDS, {"stamp": commands_stamp(), "root": describe(command)})
    configs_of([])
    return written


def _declared(command) -> dict:
    declare = getattr(command.callback, "declared_options", None)
    try:
        return dict(declare()) if declare is not None else {}
    except Exception:  # an optional extra missing: the options are offered without choices
        return {}


def _takes(parameter) -> str | None:
    """What a parameter's value is: overrides, a run (or sweep) directory, a path, or nothing to list."""
    name = parameter.name or ""
    if name in ARGUMENT_TAKES:
        return ARGUMENT_TAKES[name]
    if {"run", "runs", "sweep"} & set(name.split("_")) or name in ("resume", "directories"):
        return "run"
    bare = getattr(parameter, "bare_type", None)
    if (bare is not None and bare() is pathlib.Path) or name.endswith(("_dir", "_file", "_path")) or name == "output":
        return "path"
    return None


def _first_line(text: str | None) -> str:
    return (text or "").strip().split("\n", 1)[0]


def _shell_option(flag: str, act, help_text: str):
    def callback(ctx: typer.Context, value: Optional[str]) -> None:
        if value is None or ctx.resilient_parsing:
            return
        try:
            shell = chosen_shell(value or None, os.environ, flag)
            act(ctx, shell)
        except (UserError, OSError) as exc:
            err_console.print(f"error: {printable(str(exc))}", markup=False, highlight=False, soft_wrap=True)
            raise typer.Exit(2) from None
        raise typer.Exit()

    return typer.Option(None, flag, callback=callback, is_eager=True, expose_value=False, metavar="[bash|zsh|fish]", help=help_text)


def _install(ctx: typer.Context, shell: str) -> None:
    said = install(shell, os.environ)
    build_index(ctx.find_root().command)  # the first TAB answers at once
    print(said)


def _show(ctx: typer.Context, shell: str) -> None:
    print(script(shell), end="")


def _build(ctx: typer.Context, value: bool) -> None:
    if not value or ctx.resilient_parsing:
        return
    try:
        build_index(ctx.find_root().command)
    finally:
        build_finished()
    raise typer.Exit()


INSTALL_OPTION = _shell_option(INSTALL, _install, "Install TAB completion for your shell (bash, zsh or fish; default: $SHELL's).")
SHOW_OPTION = _shell_option(SHOW, _show, "Print the completion script for a shell (bash, zsh or fish; default: $SHELL's).")
BUILD_INDEX_OPTION = typer.Option(False, BUILD_OPTION, callback=_build, is_eager=True, expose_value=False, hidden=True)
ROOT_CHOICES = {"install_completion": Options(SHELLS), "show_completion": Options(SHELLS)}  # (the root's parameters)
