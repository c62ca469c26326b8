"""The `dl` command line. Each command parses, calls one library function, renders the result.

One module per command family (train, runs, sweep, tools); each registers its commands on `app`,
and every module of this package is imported here, so a new command is one new module. Only
typer and rich are imported at module level: `dl --help` must answer without loading torch.
"""

from __future__ import annotations

import functools
import importlib
import inspect
import pkgutil
import sys
from typing import Optional

import typer

from dlcli import __version__
from dlcli.cli.completion import BUILD_INDEX_OPTION, INSTALL_OPTION, ROOT_CHOICES, SHOW_OPTION, declares, with_shell_named
from dlcli.config.constraints import show, without_null
from dlcli.errors import RunFailed, UserError, printable
from dlcli.system.terminal import SafeConsole
from dlcli.trust.workdir import children_import_nothing_from_here, use_own_modules

class OneLineErrors(typer.core.TyperGroup):
    """Usage errors (an unknown option, a missing argument, a bad option value) as one line on
    stderr, exit code 2, as every other user error is; Typer would draw a box around them."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        try:
            result = super().main(args=args, prog_name=prog_name, complete_var=complete_var, standalone_mode=False, **extra)
        except typer.Abort:
            err_console.print("interrupted")
            sys.exit(130)
        except Exception as exc:  # click's, or the click that Typer carries: known by their class names
            kinds = {kind.__name__ for kind in type(exc).__mro__}
            if "ClickException" not in kinds:
                raise
            where = getattr(getattr(exc, "ctx", None), "command_path", None) or "dl"
            hint = f" (see {where} --help)" if "UsageError" in kinds else ""
            if str(exc.format_message()).strip():  # (no message: the help was the answer, e.g. `dl sweep` alone)
                err_console.print(f"error: {printable(exc.format_message())}{hint}", markup=False, highlight=False, soft_wrap=True)
            sys.exit(exc.exit_code)
        if not standalone_mode:
            return result
        sys.exit(result if isinstance(result, int) else 0)  # typer.Exit(code) comes back as its code


app = typer.Typer(
    cls=OneLineErrors,
    name="dl",
    help="A command-line experiment runner for deep learning: Hydra configs, one PyTorch engine, every number in runs/.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
console = SafeConsole()  # every string shown escaped (dlcli.system.terminal): names and files may be someone else's
err_console = SafeConsole(stderr=True)

OVERRIDES_HELP = "Hydra overrides: key=value, group=option, +key=value, ~key."
QUIET_HELP = "No progress bars or per-epoch/per-trial lines: only the line that matters (where the result is, the headline numbers)."
TRUST_HELP = (
    "A module (or one dotted class) that a config read from a file (a run's config.yaml, a sweep, --overrides-file) may "
    "build, besides what dl's own configs name (repeatable; ./conf/trust.yaml can list them too). Only for code you "
    "trust: building runs it."
)


# options several commands share, defined once
TRUST = typer.Option(None, "--trust", help=TRUST_HELP)
CHECKPOINT = typer.Option("best", "--checkpoint", help="best | last")
RUN_DIR = typer.Argument(..., help="A run directory written by dl train.")
CONFIG_DIR = typer.Option(None, "--config-dir", help="Extra config directory (repeatable); ./conf is always searched.")


def examples(block: str, after: str = "") -> str:
    """A command's epilog from its examples, one a line. Click rewraps an epilog's paragraphs, so each
    example becomes a paragraph of its own, indented; `after` is a paragraph that follows them."""
    return "\n\n".join(["Examples:", *(f"  {line.strip()}" for line in block.strip().splitlines()), *([after] if after else [])])


def _print_version(value: bool) -> None:
    if value:
        print(f"dl {__version__}")
        raise typer.Exit()


@app.callback()
@declares(lambda: ROOT_CHOICES)
def _main(
    version: bool = typer.Option(False, "--version", callback=_print_version, is_eager=True, help="Print dl's version and exit."),
    install_completion: Optional[str] = INSTALL_OPTION,
    show_completion: Optional[str] = SHOW_OPTION,
    build_completion_index: bool = BUILD_INDEX_OPTION,
) -> None:
    """A command-line experiment runner for deep learning: Hydra configs, one PyTorch engine, every number in runs/."""


def handle_errors(command):
    """User errors become one line on stderr and exit code 2; bugs keep their traceback."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except UserError as exc:
            err_console.print(f"error: {printable(str(exc))}", markup=False, highlight=False, soft_wrap=True)
            raise typer.Exit(exc.exit_code) from None
        except RunFailed as exc:
            err_console.print(f"failed: {printable(str(exc))}", markup=False, highlight=False, soft_wrap=True)
            raise typer.Exit(exc.exit_code) from None
        except OSError as exc:
            if exc.filename is None:  # not about a path the user named (a closed pipe, a socket): a bug until known
                raise
            # a path the system refused (a name too long, no permission, a read-only disk): the
            # path and the system's reason; whatever was being written is removed where it is made
            err_console.print(f"error: {show(exc.filename)}: {exc.strerror or type(exc).__name__}", markup=False, highlight=False,
                              soft_wrap=True)
            raise typer.Exit(2) from None
        except KeyboardInterrupt:  # before a run exists (a started run records it and returns)
            err_console.print("interrupted")
            raise typer.Exit(130) from None

    return wrapper


def checked_options(declare):
    """Check a command's option values against declared constraints before it runs: `declare`
    returns {parameter: Constraint} (called on first use, so `dl --help` imports nothing for it).
    A value that breaks one is the one line `--steps 2 must be ...`, as config keys are."""

    def wrap(command):
        signature = inspect.signature(command)

        @functools.wraps(command)
        def wrapper(*args, **kwargs):
            given = signature.bind_partial(*args, **kwargs).arguments
            for name, constraint in declare().items():
                value = given.get(name)
                problem = None if value is None else without_null(constraint).problem(list(value) if isinstance(value, tuple) else value)
                if problem is not None:
                    flag = getattr(signature.parameters[name].default, "param_decls", None) or [f"--{name.replace('_', '-')}"]
                    raise UserError(f"{flag[0]} {show(value)} {problem}")
            return command(*args, **kwargs)

        return declares(declare)(wrapper)  # (completion offers the choices the constraints allow)

    return wrap


def main() -> None:
    use_own_modules()  # your own modules (mypkg.MyNet) import from the directory you run dl in, unless it is received
    children_import_nothing_from_here()  # ... and the processes dl starts import nothing from it unasked
    from dlcli.system.interrupts import stop_signals_act_as_ctrl_c  # noqa: PLC0415  (dl --help runs without multiprocessing: dlcli.system.interrupts imports it)

    # `kill PID`, a supervisor's stop, a cluster's preemption (SIGTERM) and a closed terminal
    # (SIGHUP) stop a command as Ctrl-C does: a run keeps every finished epoch and says so
    stop_signals_act_as_ctrl_c()
    app(args=with_shell_named(sys.argv[1:]), prog_name="dl")


# each module registers its commands on `app`; these first, in the order `dl --help` lists them
_FIRST = ("train", "runs", "sweep", "tools")
for _name in [*_FIRST, *sorted(m.name for m in pkgutil.iter_modules(__path__) if m.name not in _FIRST)]:
    importlib.import_module(f"{__name__}.{_name}")
