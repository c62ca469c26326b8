"""`dl sweep report URL --study NAME`: a database-backed sweep's results.csv, best.yaml and
sweep.png, written from its study on any machine (no trial directory needed), and `dl runs URL
--study NAME`'s rows."""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Sequence

from dlcli.rundir.directory import update_summary
from dlcli.sweep.best import finish
from dlcli.sweep.plan import SweepResult, SweepSettings
from dlcli.sweep.run import plan_space
from dlcli.sweep.shared import SAVED, read_study, study_records
from dlcli.sweep.storage import masked, without_password

UNFINISHED = ("running", "waiting")


def report_study(url: str, name: str, out_dir: Path | None = None, runs_dir: str = "runs", config_dirs: Sequence[str] = (),
                 trust: Sequence[str] = (), log: Callable[[str], None] = print) -> SweepResult:
    """The study's results in `out_dir` (default runs/sweeps/NAME/report/), rewritten each time.
    The test split is looked at only where the best trial's directory is on this machine."""
    url = without_password(url)
    study, saved = read_study(url, name)
    settings = SweepSettings(**{key: saved[key] for key in SAVED})
    space, _ = plan_space(settings, list(config_dirs))
    records = study_records(study, space)
    out_dir = Path(out_dir) if out_dir is not None else Path(runs_dir) / "sweeps" / name / "report"
    out_dir.mkdir(parents=True, exist_ok=True)
    waiting = int(saved["planned"]) - len(records) + sum(r["status"] in UNFINISHED for r in records)
    status = "completed" if waiting <= 0 else "running"
    update_summary(out_dir, kind="sweep", status=status, metric=settings.metric, mode=settings.mode, trials=int(saved["planned"]),
                   storage=masked(url), study_name=name)
    log(f"study {name} in {masked(url)}: {len(records)} of {saved['planned']} trials taken" +
        (f", {waiting} not finished yet" if waiting > 0 else ""))
    return finish(out_dir, records, space, settings.metric, settings.mode, status, log, trust, saved.get("folds"))


def study_rows(url: str, name: str, config_dirs: Sequence[str] = ()) -> tuple[list[dict], list[str]]:
    """One row per trial of the study, as `dl runs` shows runs: where it ran, status, metric,
    best epoch and the swept values; and the swept values' columns (what the sweep's user typed)."""
    url = without_password(url)
    study, saved = read_study(url, name)
    space, _ = plan_space(SweepSettings(**{key: saved[key] for key in SAVED}), list(config_dirs))
    metric = saved["metric"]
    rows = [{"run": r["run_dir"], "status": r["status"], "trial": r["number"], "best_epoch": r.get("best_epoch"),
             metric: r.get("value"), **{p.name: r["params"].get(p.key) for p in space.params}}
            for r in study_records(study, space)]
    return rows, space.names
