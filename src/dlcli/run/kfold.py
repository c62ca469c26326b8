"""k-fold cross-validation: `split.kfold=K` trains K models under one parent run.

runs/<name>/<timestamp>/ holds config.yaml, overrides.yaml, summary.json and kfold.json (each
fold's best validation metric and test metrics, with their mean and standard deviation), and one
ordinary run directory per fold: fold-1/ ... fold-K/. The test split is the same held-out part
for every fold; only the validation fold moves.
"""

from __future__ import annotations

import statistics
from dataclasses import replace
from pathlib import Path
from typing import Callable

from omegaconf import DictConfig, OmegaConf

from dlcli.errors import TrialPruned, UserError
from dlcli.experiment import build_experiment
from dlcli.run.resume import check_resume_overrides, resume
from dlcli.system.files import check_no_links_out, remove_tree
from dlcli.run.request import RunRequest
from dlcli.run.single import TrainResult, new_run
from dlcli.rundir.lock import RunLock
from dlcli.rundir.directory import (RunStart, config_text, load_saved_config, overrides_text, read_summary, start_run_dir,
                        update_summary, write_json)
from dlcli.tracking import close_parent_runs, open_parent_runs
from dlcli.trust.workdir import opening

# after fold k of K with the completed folds' best values; may raise TrialPruned (a sweep's pruner)
AfterFold = Callable[[int, int, list], None]


def _fold_config(cfg: DictConfig, fold: int) -> DictConfig:
    fold_cfg = OmegaConf.create(OmegaConf.to_container(cfg, resolve=True))
    fold_cfg.split.fold = fold
    fold_cfg.resume = None
    return fold_cfg


def train_kfold(request: RunRequest, after_fold: AfterFold | None = None) -> TrainResult:
    """K folds under a new parent (or in request.run_dir, an empty directory a sweep made for its
    trial, whose folds never look at the test split)."""
    cfg = request.config
    experiment = build_experiment(_fold_config(cfg, 1))  # input errors surface before runs/ is touched
    start = RunStart(texts={"config.yaml": config_text(cfg), "overrides.yaml": overrides_text(request.overrides)},
                     summary={"kind": "kfold", "status": "running", "folds": int(cfg.split.kfold),
                              "metric": experiment.session.metric, "monitor": experiment.session.monitor})
    parent, lock = start_run_dir(cfg.runs_dir, cfg.name, start, into=request.run_dir)
    try:
        return _run_folds(replace(request, run_dir=parent), after_fold)
    finally:
        lock.release()


def resume_kfold(request: RunRequest) -> TrainResult:
    """Continue a k-fold parent (request.config's resume=): its finished folds are kept, the
    interrupted one resumed, the rest trained."""
    cfg, overrides = request.config, request.overrides

    parent = Path(str(cfg.resume)).expanduser()
    opening(parent)
    check_resume_overrides(parent, overrides)
    check_no_links_out(parent)  # its folds are written (and an unstarted one deleted) in it
    if read_summary(parent).get("status") == "completed":
        raise UserError(f"{parent} already completed; nothing to resume")
    lock = RunLock(parent).acquire()
    try:
        saved = load_saved_config(parent, request.trust)
        saved.trainer.device, saved.trainer.progress = cfg.trainer.device, cfg.trainer.progress
        update_summary(parent, status="running")
        return _run_folds(replace(request, config=saved, run_dir=parent))
    finally:
        lock.release()


def _run_folds(request: RunRequest, after_fold: AfterFold | None = None) -> TrainResult:
    """The folds of the parent run in request.run_dir, and what they add up to (kfold.json)."""
    parent, cfg, overrides, reporter = request.run_dir, request.config, request.overrides, request.reporter
    # with a logger that nests runs (MLflow), the k-fold run is a run and each fold a run nested under it
    parents = open_parent_runs(parent, cfg, "kfold", {"folds": int(cfg.split.kfold), "overrides": " ".join(overrides)},
                               reporter.warn)
    if parents:
        request = replace(request, config=OmegaConf.merge(cfg, OmegaConf.from_dotlist([p.override for p in parents])))
    pruned = None
    try:
        results, pruned = _train_folds(request, after_fold)
    except BaseException:  # broke off: the parent run must not say running forever
        close_parent_runs(parents, "failed", {}, reporter.warn)
        raise
    report = aggregate(results, int(cfg.split.kfold))
    write_json(parent / "kfold.json", report)
    status = "completed" if len(results) == int(cfg.split.kfold) and all(r.status == "completed" for r in results) else results[-1].status
    if pruned is not None:
        status = "pruned"
    summary = update_summary(parent, status=status, **{k: report[k] for k in ("mean", "std", "test_mean")},
                             **({"message": str(pruned)} if pruned is not None else {}))
    if status == "interrupted":
        summary = update_summary(parent, message=f"interrupted in fold {len(results)}; continue with: dl train resume={parent}")
    close_parent_runs(parents, status, {"mean": report["mean"], "std": report["std"]}, reporter.warn)
    return TrainResult(parent, summary)


def aggregate(results, folds: int) -> dict:
    """Each fold's best validation value and test metrics; mean and standard deviation over folds."""
    rows = []
    for index, result in enumerate(results, start=1):
        summary = result.summary
        monitor = summary.get("monitor")
        rows.append({
            "fold": index,
            "run_dir": str(result.run_dir),
            "status": summary.get("status"),
            "best_epoch": summary.get("best_epoch"),
            monitor: summary.get(f"best_{monitor}"),
            "test": summary.get("test"),
        })
    monitor = results[0].summary.get("monitor") if results else None
    values = [row[monitor] for row in rows if row["status"] == "completed" and row[monitor] is not None]
    metric = results[0].summary.get("metric") if results else None
    tests = [row["test"][metric] for row in rows if row["status"] == "completed" and row["test"] and metric in row["test"]]
    return {
        "folds": folds,
        "monitor": monitor,
        "per_fold": rows,
        "mean": statistics.fmean(values) if values else None,
        "std": statistics.stdev(values) if len(values) > 1 else 0.0 if values else None,
        "test_mean": {metric: statistics.fmean(tests)} if tests else None,
    }


def _train_folds(request: RunRequest, after_fold: AfterFold | None = None):
    """Each fold of the parent in request.run_dir in turn (a finished one is kept, an interrupted
    one resumed); stops at the first fold that does not complete, or when `after_fold` prunes the
    rest (a sweep's pruner: the TrialPruned is returned beside the folds' results)."""
    parent, cfg = request.run_dir, request.config
    results = []
    for fold in range(1, int(cfg.split.kfold) + 1):
        fold_dir = parent / f"fold-{fold}"
        status = read_summary(fold_dir).get("status") if (fold_dir / "summary.json").is_file() else None
        if status == "completed":
            result = TrainResult(fold_dir, read_summary(fold_dir))
        elif status is not None:  # interrupted (or failed): continue it from its last checkpoint
            result = resume(replace(request, config=OmegaConf.merge(cfg, {"resume": str(fold_dir)}),
                                    overrides=[f"resume={fold_dir}"], run_dir=None))
        else:
            if fold_dir.exists() or fold_dir.is_symlink():  # created but never started: nothing in it is worth keeping
                remove_tree(fold_dir, parent)
            fold_dir.mkdir()
            request.reporter.log(f"fold {fold}/{cfg.split.kfold}")
            result = new_run(replace(request, config=_fold_config(cfg, fold), run_dir=fold_dir))
        results.append(result)
        if result.status != "completed":
            break
        if after_fold is not None:
            monitor = result.summary.get("monitor")
            values = [r.summary.get(f"best_{monitor}") for r in results]
            try:
                after_fold(fold, int(cfg.split.kfold), [float(v) for v in values if v is not None])
            except TrialPruned as pruned:
                return results, pruned
    return results, None
