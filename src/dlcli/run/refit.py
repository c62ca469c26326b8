"""`dl train refit=RUN_OR_KFOLD_DIR`: the chosen settings, trained once more on train+val together.

Cross-validation (or one run's validation split) chooses the settings and the number of epochs; a
refit then trains the same config on every non-test row for that fixed number of epochs, with no
validation split and no early stopping, so the final model has seen all the labelled data. The
test split is the source's own (the same seed and fraction cut it the same way; checked), still
untouched until the single look at the end. The refit is an ordinary run directory that
`dl predict` and `dl export` use; its best.pt is its last epoch.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Sequence

from omegaconf import DictConfig, OmegaConf

from dlcli.config.compose import override_key
from dlcli.errors import UserError
from dlcli.tracking import as_new_run
from dlcli.rundir.directory import (
    best_trial,
    find_run,
    is_kfold_parent,
    is_sweep_dir,
    load_saved_config,
    read_json,
    read_summary,
)
from dlcli.run.request import RunRequest
from dlcli.trust.workdir import opening

# Overrides that may accompany refit=DIR: where it lands and how it runs, and the epoch count.
REFIT_OVERRIDES = ("refit", "name", "runs_dir", "trainer.epochs", "trainer.device", "trainer.progress",
                   "trainer.checkpoint_every", "trainer.plots", "trainer.diagnostics", "logger", "split.test")
# how a run shows itself, not what it trains: a refit takes these from this command (a sweep's trials turn them off)
PRESENTATION = ("trainer.progress", "trainer.plots")
NO_TEST = ("split.test=0: the refit trains on every labelled row, so there is no test split to score it on; "
           "the source's validation (or cross-validation) numbers are its estimate")


def refit_request(request: RunRequest) -> RunRequest:
    """The request a refit trains: the source's config, the facts its summary records, and the
    check that its test split is the source's."""
    cfg, facts = refit_config(request.config, request.overrides, request.trust)
    return replace(request, config=cfg, summary_facts={**request.summary_facts, **facts},
                   check_experiment=same_test_split(Path(facts["refit_of"])))


def refit_config(cfg: DictConfig, overrides: Sequence[str], trust: Sequence[str] = ()) -> tuple[DictConfig, dict]:
    """The config a refit trains, and the facts its summary records (source, epochs and why)."""
    source = Path(str(cfg.refit)).expanduser()
    opening(source)
    extra = [o for o in overrides if override_key(o) not in REFIT_OVERRIDES and not override_key(o).startswith("logger.")]
    if extra:
        raise UserError(f"refit trains {source}'s own config again, so '{extra[0]}' cannot apply: drop it "
                        f"(a refit may change only {', '.join(REFIT_OVERRIDES[1:])})")
    all_rows = any(override_key(o) == "split.test" for o in overrides)
    if all_rows and float(cfg.split.test) != 0:
        raise UserError(f"split.test={cfg.split.test:g}: a refit keeps its source's test split, or with split.test=0 trains "
                        "on every labelled row; other fractions would score it on other rows")
    sweep = None
    if is_sweep_dir(source):  # the sweep's best trial (a k-fold trial: its folds' mean best epoch)
        sweep, source = source, best_trial(source)
    if is_kfold_parent(source):
        saved, epochs, how = _from_kfold(source, trust)
    else:
        saved, epochs, how = _from_run(find_run(source), trust)
    chosen = [o for o in overrides if override_key(o) == "trainer.epochs"]
    if chosen:
        epochs, how = int(cfg.trainer.epochs), f"trainer.epochs={cfg.trainer.epochs} as given"
    refit = OmegaConf.create(OmegaConf.to_container(saved, resolve=True))
    refit.split.val, refit.split.kfold, refit.split.fold = 0.0, None, None
    for key in PRESENTATION:
        OmegaConf.update(refit, key, OmegaConf.select(cfg, key), merge=False)
    refit.trainer.epochs = epochs
    refit.trainer.early_stopping.enabled = False
    refit.resume = refit.refit = None
    refit.runs_dir = cfg.runs_dir  # where the new run goes is this command's to say, never the saved file's
    as_new_run(refit)  # a run of its own, not a late child of the source's parent, nor in a store the file names
    # (what the user types for the loggers below still wins)
    for key in REFIT_OVERRIDES[1:]:
        if any(override_key(o) == key or override_key(o).startswith(f"{key}.") for o in overrides):
            OmegaConf.update(refit, key, OmegaConf.select(cfg, key), force_add=True, merge=False)
    facts = {"refit_of": str(source.resolve()), "refit_epochs": epochs, "refit_epochs_from": how}
    if sweep is not None:
        facts["refit_of_sweep"] = str(sweep.resolve())
    if all_rows:
        facts["no_test"] = NO_TEST
    if "ReduceLROnPlateau" in str(refit.sched.get("_target_")):
        # plateau lowers the rate when validation stalls, and a refit has no validation split
        refit.sched = OmegaConf.create({"_target_": None})
        facts["refit_schedule"] = "sched=plateau needs a validation split: the refit trains at the constant optim.lr"
    return refit, facts


def _from_run(run: Path, trust: Sequence[str]) -> tuple[DictConfig, int, str]:
    summary = read_summary(run)
    if summary.get("status") != "completed":
        raise UserError(f"{run} is {summary.get('status')}: refit a completed run (finish it with dl train resume={run})")
    best = summary.get("best_epoch")
    if not best:
        raise UserError(f"{run} has no best epoch to refit for: give the epochs yourself with trainer.epochs=N")
    return load_saved_config(run, trust), int(best), f"the best epoch of {run}"


def _from_kfold(parent: Path, trust: Sequence[str]) -> tuple[DictConfig, int, str]:
    summary = read_summary(parent)
    if summary.get("status") != "completed":
        raise UserError(f"{parent} is {summary.get('status')}: refit a completed k-fold run (finish it with dl train resume={parent})")
    report = read_json(parent / "kfold.json")
    folds = report.get("per_fold") if isinstance(report.get("per_fold"), list) else []
    best = [row["best_epoch"] for row in folds if isinstance(row, dict) and row.get("status") == "completed"
            and isinstance(row.get("best_epoch"), int) and not isinstance(row["best_epoch"], bool) and row["best_epoch"] > 0]
    if not best:
        raise UserError(f"{parent} has no fold with a best epoch: give the epochs yourself with trainer.epochs=N")
    mean = sum(best) / len(best)
    epochs = max(1, int(mean + 0.5))  # rounded half up, never below one epoch
    return (load_saved_config(parent, trust), epochs,
            f"the mean best epoch over {len(best)} folds ({', '.join(map(str, best))}: mean {mean:g}, rounded to {epochs})")


def same_test_split(source: Path):
    """A check for the refit's built experiment: its test split must be the source's (unless it
    has none: split.test=0 trains on every labelled row)."""
    def check(experiment) -> None:
        if len(experiment.data.split.test):
            check_same_test_split(experiment.data.split.record(), source)

    return check


def check_same_test_split(refit_split: dict, source: Path) -> None:
    """The refit's test split must be the source's, or its test look would be about other rows."""
    run = source / "fold-1" if is_kfold_parent(source) else source
    if not (run / "split.json").is_file():
        return
    hashes = read_json(run / "split.json").get("hashes")
    recorded = hashes.get("test") if isinstance(hashes, dict) else None
    if recorded is not None and refit_split["hashes"]["test"] != recorded:
        raise UserError(f"the test split rebuilt for the refit differs from {run / 'split.json'} "
                        "(the data or its file changed since the run): cannot refit it faithfully")
