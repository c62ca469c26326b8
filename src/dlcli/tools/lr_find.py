"""The learning-rate range test on the same engine and config as `dl train`.

Train for `steps` mini-batches while the learning rate climbs from `start` to `end` (exponential or
linear ladder, exact endpoints), smooth the loss with a bias-corrected exponential moving average,
stop once it exceeds `diverge` times the best, and suggest a learning rate by several rules. The
model, optimizer and every RNG are restored afterwards, exactly as they were.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch
from omegaconf import OmegaConf

from dlcli.engine.optim import REFERENCE_BATCH
from dlcli.engine.state import Session
from dlcli.engine.loop import train_step
from dlcli.errors import UserError
from dlcli.experiment import build_experiment
from dlcli.rundir.directory import create_run_dir, write_json, write_text
from dlcli.tracking.plots import plot_lr_find

@dataclass
class LRFindResult:
    lrs: list[float]
    losses: list[float]
    smoothed: list[float]
    suggestions: dict[str, float]
    suggested: float  # the rule we recommend (valley): see `suggest`
    stopped_early: bool
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {
            "suggested_lr": self.suggested,
            "suggestions": self.suggestions,
            "steps_run": len(self.lrs),
            "stopped_early": self.stopped_early,
            "warnings": self.warnings,
        }


LADDERS = ("exp", "linear")  # log-spaced or evenly spaced rates
MOST_STEPS = 100_000  # a ladder longer than any data set's worth of batches is a typo


def lr_ladder(start: float, end: float, steps: int, mode: str = "exp") -> np.ndarray:
    if not (0 < start < end):
        raise UserError(f"--start {start:g} and --end {end:g} must satisfy 0 < start < end")
    if steps < 5:
        raise UserError(f"--steps {steps} is too few: use at least 5 (100 is typical)")
    if mode == "exp":
        ladder = np.geomspace(start, end, steps)
    elif mode == "linear":
        ladder = np.linspace(start, end, steps)
    else:
        raise UserError(f"--mode {mode} is not a ladder: choose exp or linear")
    ladder[0], ladder[-1] = start, end  # exact endpoints, whatever the rounding
    return ladder


def lr_range_test(session: Session, ladder: np.ndarray, smooth: float = 0.98, diverge: float = 4.0) -> LRFindResult:
    """Run the ladder on the session's model; restore model, optimizer and RNG state afterwards."""
    if not 0 <= smooth < 1:
        raise UserError(f"--smooth {smooth} must be in [0, 1)")
    if diverge <= 1:
        raise UserError(f"--diverge {diverge} must be above 1")
    saved = _snapshot(session)
    try:
        lrs, losses, smoothed, stopped = _climb(session, ladder, smooth, diverge)
    finally:
        _restore(session, saved)
    if len(lrs) < 5:
        raise UserError(
            f"the loss diverged after {len(lrs)} steps, already at lr {lrs[-1]:.3g}: start lower (e.g. --start {ladder[0] / 100:g})"
        )
    suggestions, chosen, warnings = suggest(np.asarray(lrs), np.asarray(smoothed))
    return LRFindResult(lrs, losses, smoothed, suggestions, chosen, stopped, warnings)


def _climb(session: Session, ladder, smooth, diverge):
    model, optimizer = session.model, session.optimizer
    base = [group["lr"] for group in optimizer.param_groups]
    model.train()
    batches = _batches(session)
    lrs, losses, smoothed = [], [], []
    average, best = 0.0, math.inf
    for step, lr in enumerate(ladder):
        for group, group_base in zip(optimizer.param_groups, base):
            group["lr"] = float(lr) * group_base / base[0]  # keep per-group ratios (e.g. a head lr)
        x, y = next(batches)
        _, loss = train_step(model, optimizer, session.loss_fn, x, y, session.step, session.scaler)
        value = float(loss.detach())
        if not math.isfinite(value):
            return lrs, losses, smoothed, True
        average = smooth * average + (1 - smooth) * value
        corrected = average / (1 - smooth ** (step + 1))  # early steps are not biased towards 0
        lrs.append(float(lr))
        losses.append(value)
        smoothed.append(corrected)
        best = min(best, corrected)
        if step > 0 and corrected > diverge * best:
            return lrs, losses, smoothed, True
    return lrs, losses, smoothed, False


def _batches(session: Session):
    """Endless shuffled mini-batches of the train split, drawn with the session's generator."""
    while True:
        yield from session.train_data.shuffled(session.step.batch_size, session.generator)


def suggest(lrs: np.ndarray, smoothed: np.ndarray) -> tuple[dict[str, float], float, list[str]]:
    """Learning rates by three rules, the recommended one, and a warning when they disagree."""
    log_lr = np.log10(lrs)
    # Steepest: where the loss falls fastest against log lr (ignoring the noisy first tenth).
    skip = max(1, len(lrs) // 10)
    slope = np.gradient(smoothed, log_lr)
    steepest = lrs[skip + int(np.argmin(slope[skip:]))] if len(lrs) > skip + 1 else lrs[int(np.argmin(slope))]
    # Minimum / 10: one decade below the lowest smoothed loss.
    min_div_10 = lrs[int(np.argmin(smoothed))] / 10
    # Valley: the middle (in log lr) of the descent into the loss valley, from where the smoothed
    # loss has made 10% of its fall to where it has made 90%: well past the plateau of too-small
    # rates, well short of the minimum where training turns unstable.
    start, end = _descent(smoothed)
    valley = 10 ** ((log_lr[start] + log_lr[end]) / 2)
    suggestions = {"valley": float(valley), "steepest": float(steepest), "min_div_10": float(min_div_10)}
    warnings = []
    high, low = max(suggestions.values()), min(suggestions.values())
    if high > 10 * low:
        rules = ", ".join(f"{k} {v:.2g}" for k, v in suggestions.items())
        warnings.append(f"the rules disagree by {high / low:.0f}x ({rules}): look at lr_find.png before trusting one")
    return suggestions, float(valley), warnings


def _descent(values: np.ndarray, low: float = 0.1, high: float = 0.9) -> tuple[int, int]:
    """Indices where the curve, on its way to its minimum, has made `low` and `high` of its fall."""
    bottom = int(np.argmin(values))
    fall = values[0] - values[bottom]
    if bottom == 0 or fall <= 0:
        return 0, 0
    fallen = (values[0] - values[: bottom + 1]) / fall
    start = int(np.argmax(fallen >= low))
    end = int(np.argmax(fallen >= high))
    return start, max(start, end)


def _snapshot(session: Session) -> dict:
    return {
        "model": copy.deepcopy(session.model.state_dict()),
        "optimizer": copy.deepcopy(session.optimizer.state_dict()),
        "scaler": copy.deepcopy(session.scaler.state_dict()) if session.scaler is not None else None,
        "torch_rng": torch.get_rng_state(),
        "cuda_rng": torch.cuda.get_rng_state_all() if session.device.type == "cuda" else None,
        "generator": session.generator.get_state(),
        "training": session.model.training,
    }


def _restore(session: Session, saved: dict) -> None:
    session.model.load_state_dict(saved["model"])
    session.optimizer.load_state_dict(saved["optimizer"])
    if saved["scaler"] is not None:
        session.scaler.load_state_dict(saved["scaler"])
    torch.set_rng_state(saved["torch_rng"])
    if saved["cuda_rng"] is not None:
        torch.cuda.set_rng_state_all(saved["cuda_rng"])
    session.generator.set_state(saved["generator"])
    session.model.train(saved["training"])


def find_lr(cfg, start: float = 1e-7, end: float = 10.0, steps: int = 100, mode: str = "exp",
            smooth: float = 0.98, diverge: float = 4.0):
    """`dl lr-find`: the range test on the configured experiment, written to a run directory.

    Returns (run_dir, result). The run directory holds config.yaml, lr_find.csv, lr_find.json
    and lr_find.png; it is created only once the test has run, so bad input leaves nothing.
    """
    ladder = lr_ladder(start, end, steps, mode)
    experiment = build_experiment(cfg)
    result = lr_range_test(experiment.session, ladder, smooth, diverge)
    run_dir = create_run_dir(cfg.runs_dir, cfg.name, checkpoints=False)  # a range test saves no weights
    write_text(run_dir / "config.yaml", OmegaConf.to_yaml(cfg, resolve=True))
    table = pd.DataFrame({"step": range(1, len(result.lrs) + 1), "lr": result.lrs, "loss": result.losses, "smoothed_loss": result.smoothed})
    write_text(run_dir / "lr_find.csv", table.to_csv(index=False))
    base_lr = result.suggested
    if cfg.optim.get("scale_lr_with_batch"):  # training multiplies optim.lr by batch/256: suggest the rate before that
        base_lr = result.suggested * REFERENCE_BATCH / int(cfg.trainer.batch_size)
    write_json(run_dir / "lr_find.json", {
        **result.to_dict(),
        "override": f"optim.lr={base_lr:.3g}",
        "settings": {"start": start, "end": end, "steps": steps, "mode": mode, "smooth": smooth, "diverge": diverge,
                     "batch_size": int(cfg.trainer.batch_size), "seed": int(cfg.seed)},
        "device": str(experiment.session.device),
    })
    plot_lr_find(result.lrs, result.losses, result.smoothed, result.suggestions, "valley", mode == "exp", run_dir / "lr_find.png")
    return run_dir, result
