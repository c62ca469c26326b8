"""A sweep directory read back for `dl sweep KIND --resume DIR`: its sweep.yaml is a received file
(bounded plain YAML, every setting checked, every override trusted before it is composed), and a
class the sweep's own command built on the user's word needs that word again: the directory
never vouches for itself."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from dlcli.config.constraints import render
from dlcli.errors import UserError
from dlcli.system.files import check_no_links_out
from dlcli.sweep.plan import LATER_SETTINGS, SAVED_PLAN, SAVED_SETTINGS, SweepSettings, declared
from dlcli.trust.received import read_yaml
from dlcli.trust.targets import check_trusted_overrides, is_trusted, targets_typed, trusted_here
from dlcli.trust.workdir import opening


def read_saved_sweep(sweep_dir: Path, given: SweepSettings, trust: Sequence[str] = ()) -> tuple[Path, SweepSettings, dict]:
    """The sweep directory, the settings its sweep.yaml holds (checked against the same table as
    the command's options) and the whole file; its overrides may build only trusted classes."""
    opening(sweep_dir)  # a ./conf inside it is not the user's (dlcli.trust.workdir)
    if not (sweep_dir / "sweep.yaml").is_file():
        raise UserError(f"--resume {sweep_dir} is not a sweep directory (no sweep.yaml)")
    check_no_links_out(sweep_dir, "the sweep directory")  # its study, trials and results are written and deleted in it

    path = sweep_dir / "sweep.yaml"
    saved = read_yaml(path)  # bounded plain YAML, no interpolation: a sweep may come from someone else
    if not isinstance(saved, dict):
        raise UserError(f"{path} is not a sweep's settings (a mapping with kind, overrides, ...): restore it from a copy")
    if "study" not in saved:
        raise UserError(f"--resume {sweep_dir} was made by an older dl, before sweeps kept an Optuna study: start a new sweep")
    table = declared()
    for key in (*SAVED_SETTINGS, *LATER_SETTINGS, *SAVED_PLAN):  # the plan's keys say how it ran: optional
        if key not in saved:
            if key in SAVED_SETTINGS:
                raise UserError(f"{path}: {key} is missing (restore the file from a copy of the sweep)")
            continue
        problem = table[key].problem(saved[key]) if not (key == "config_dirs" and saved[key] is None) else None
        if problem is not None:
            raise UserError(f"{path}: {render(key, saved[key], problem)} (restore the file from a copy of the sweep)")
    if given.overrides and list(given.overrides) != saved["overrides"]:
        raise UserError(f"--resume {sweep_dir} sweeps {' '.join(saved['overrides'])}; drop the overrides or start a new sweep")

    _check_typed_targets_trusted(sweep_dir, saved, trust)
    check_trusted_overrides(saved["overrides"], trust, source=str(path))  # before any of them is composed
    settings = SweepSettings(**{k: saved[k] for k in SweepSettings.__dataclass_fields__ if k in saved})
    if given.kind != settings.kind:
        raise UserError(f"--resume {sweep_dir} is a {settings.kind} sweep: use dl sweep {settings.kind} --resume {sweep_dir}")
    return sweep_dir, settings, saved


def _check_typed_targets_trusted(sweep_dir: Path, saved: dict, trust: Sequence[str]) -> None:
    """The classes the sweep's own command built on the user's word (sweep.yaml's typed_targets)
    are not trusted by that record: a sweep directory may come from someone else and never vouches
    for itself. Refuse, before any trial, in words that say how the user trusts them again. (The
    record only words this refusal: every saved override and composed config is still checked.)"""
    typed = saved.get("typed_targets")
    if not isinstance(typed, dict):
        return  # an older sweep, or a record of another shape: the checks that follow still refuse what is untrusted
    trusted = [*trust, *trusted_here()]
    for target, path in typed.items():
        if not isinstance(target, str) or not isinstance(path, str) or is_trusted(target, path, trusted):
            continue
        shown = target[:120]  # a received file's text: the error line escapes it, this bounds it
        module = shown.rsplit(".", 1)[0] if "." in shown else shown
        retype = ", or type the sweep's overrides again after --resume" if target in targets_typed(saved["overrides"]) else ""
        raise UserError(f"{sweep_dir} built {path[:120]}._target_={shown} on the word of the command that started it, and a sweep "
                        f"directory never vouches for its own classes: resume with --trust {module} (or list {module} in "
                        f"./conf/trust.yaml{retype})")
