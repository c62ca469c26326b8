"""Which classic training pitfall a run fell into, from measured quantities: one function per
pitfall, with its thresholds (and why they have those values), the evidence it reads and its
suggestion side by side. `analyze` runs them in order over a run's metrics.csv rows, its summary
and (when it was watched live) its Evidence.

A check is added by writing one decorated function here: `@check(code, thresholds=..., unless=...)`
registers it, in the order of this file; `unless` names checks whose finding makes this one moot
(a rate far too high explains the curves better than over- or underfitting do). None fires on the
default `dl train` run, on the recipes in conf/experiment/, or on the healthy runs of the tests.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from dlcli.config.advice import suggest
from dlcli.diagnostics.evidence import Evidence
from dlcli.diagnostics.report import Finding, fmt, read_findings
from dlcli.diagnostics.through_time import recurrent_cell
from dlcli.errors import UserError
from dlcli.rundir.directory import read_metrics, read_summary
from dlcli.trust.received import read_yaml


@dataclass
class Facts:
    """What every check may read about one run."""

    rows: list[dict]  # metrics.csv
    summary: dict
    evidence: Evidence
    losses: list[float] = field(default_factory=list)  # the finite training losses, by epoch
    metric: str = "accuracy"
    classification: bool = True
    lr: float | None = None  # the first epoch's learning rate
    failed_nan: bool = False  # the run stopped on a non-finite loss
    standardized: bool = False  # a regression's loss is on a standardized target
    config: dict | None = None  # the run's config, which a suggestion must fit (None: not known)

    def advise(self, *candidates: tuple[str, object], then: str = "") -> str:
        """The candidate overrides that fit this run (dlcli.config.advice), then any advice in words."""
        return ", ".join([*suggest(self.config, *candidates), *([then] if then else [])]) or "see the finding above"


@dataclass
class Check:
    code: str
    function: Callable[[Facts, dict], Finding | None]
    thresholds: dict
    unless: tuple[str, ...]
    early: bool  # decided by the look before training: said before the first epoch too


CHECKS: list[Check] = []


def check(code: str, thresholds: dict | None = None, unless: tuple[str, ...] = (), early: bool = False):
    def register(function):
        CHECKS.append(Check(code, function, dict(thresholds or {}), unless, early))
        return function
    return register


def thresholds() -> dict[str, float]:
    """Every check's thresholds as `code.name` (for the README and the tests)."""
    return {f"{c.code}.{name}": value for c in CHECKS for name, value in c.thresholds.items()}


def analyze(rows: list[dict], summary: dict, evidence: Evidence | None = None, config: dict | None = None) -> list[Finding]:
    """Findings from a run's metrics.csv rows, its summary and (when it was watched) its evidence;
    `config` (the run's, as a plain dict) keeps the suggestions to settings the run has."""
    evidence = evidence or Evidence()
    message = str(summary.get("message") or "")
    facts = Facts(
        rows=rows, summary=summary, evidence=evidence,
        losses=[r["train_loss"] for r in rows if "train_loss" in r and math.isfinite(r["train_loss"])],
        metric=summary.get("metric") or "accuracy",
        classification=summary.get("task", "classification") == "classification",
        lr=rows[0].get("lr") if rows else None,
        failed_nan=summary.get("status") == "failed" and ("became nan" in message or "became inf" in message),
        standardized=str(summary.get("loss_units") or "").startswith("standardized"),
        config=config,
    )
    if evidence.initial_loss is None and facts.classification and (summary.get("num_classes") or 0) > 1:
        # not watched live: an untrained classifier's cross-entropy is about ln(classes) (uniform guesses)
        evidence.initial_loss = math.log(summary["num_classes"])
    findings: list[Finding] = []
    for each in CHECKS:
        if any(f.code in each.unless for f in findings):
            continue
        found = each.function(facts, each.thresholds)
        if found is not None:
            findings.append(found)
    return findings


def diagnose_run(run_dir: Path) -> tuple[list[Finding], bool]:
    """A run's findings: its diagnostics.json, or (killed runs, older runs) an analysis of its files.
    Returns the findings and whether they were read from diagnostics.json."""
    saved = read_findings(run_dir)
    if saved is not None:
        return saved, True
    return analyze(read_metrics(run_dir / "metrics.csv"), read_summary(run_dir), config=_saved_config(run_dir)), False


def _saved_config(run_dir: Path) -> dict | None:
    """The run's config.yaml as plain data (received.read_yaml: bounded, no tags), or None."""
    try:
        content = read_yaml(run_dir / "config.yaml")
    except (UserError, OSError):
        return None
    return content if isinstance(content, dict) else None


def said_before_training(evidence: Evidence, config: dict | None = None) -> list[Finding]:
    """The findings of the checks marked `early`, which the look before the first step already
    decides: said at once rather than after a run that could not learn."""
    facts = Facts(rows=[], summary={}, evidence=evidence, config=config)
    return [found for each in CHECKS if each.early and (found := each.function(facts, each.thresholds)) is not None]


# -- the learning rate ---------------------------------------------------------------------------

@check("lr_too_high", thresholds={
    "rise": 1.10,  # the loss ends above where it started, or rises early, by this factor
})
def lr_too_high(f: Facts, t: dict) -> Finding | None:
    losses, initial = f.losses, f.evidence.initial_loss
    if f.failed_nan:
        high, why = {"stopped": f.summary.get("message")}, "the loss became non-finite and the run stopped"
    elif losses and initial is not None and losses[0] > initial * t["rise"]:
        # the first epoch ended worse than the untrained model began: the steps overshoot
        high = {"initial_loss": initial, "first_train_loss": losses[0]}
        why = f"the first epoch's training loss ({fmt(losses[0])}) is above the untrained model's ({fmt(initial)})"
    elif len(losses) >= 3 and (losses[-1] > losses[0] * t["rise"] or
                               sum(b > a * t["rise"] for a, b in zip(losses[:3], losses[1:4])) >= 2):
        high = {"first_train_loss": losses[0], "last_train_loss": losses[-1], "early_losses": losses[:4]}
        why = f"the training loss rose ({fmt(losses[:4])} ...)"
    else:
        return None
    return Finding("lr_too_high", "error" if f.failed_nan else "warning", 1, {**high, "lr": f.lr},
                   "the learning rate looks too high: " + why,
                   f.advise(("optim.lr", _lower(f.lr)), ("trainer.grad_clip", 1.0), then="or dl lr-find"))


STUCK = {
    "stuck_epochs": 3,  # a loss that has not left where the untrained model began, after this many epochs ...
    "stuck_share": 0.90,  # ... (its best is still above this share of the untrained model's loss)
}


def _stuck(f: Facts, t: dict) -> bool:
    """The training loss never left the untrained model's level: nothing was learned at all (a
    classifier at chance), which is clear after a few epochs, not only after ten."""
    start = f.evidence.initial_loss if f.evidence.initial_loss is not None else (f.losses[0] if f.losses else None)
    return (len(f.losses) >= t["stuck_epochs"] and start is not None and start > 0
            and min(f.losses) >= t["stuck_share"] * start and f.losses[0] <= start * 1.10)


@check("saturating_activations", unless=("lr_too_high",), thresholds=STUCK)
def saturating_activations(f: Facts, t: dict) -> Finding | None:
    squashing = f.evidence.saturated  # (measured only when the model has sigmoid or tanh layers)
    if not squashing or not _stuck(f, t):
        return None
    worst = max(squashing, key=squashing.get)
    means = f.evidence.layer_grad_means
    ratio = means[0] / means[-1] if len(means) >= 2 and means[-1] > 0 else None
    gradient = f"; the first layer's gradient is {ratio:.1e} of the last layer's" if ratio is not None else ""
    return Finding("saturating_activations", "warning", len(f.losses),
                   {"saturated_share": squashing, "first_to_last_gradient": ratio, "train_losses": f.losses[:4]},
                   f"the sigmoid/tanh activations keep the model from learning: the training loss stayed at the untrained "
                   f"model's level ({fmt(min(f.losses))}) for {len(f.losses)} epochs; each such layer passes at most a quarter "
                   f"(sigmoid) of the gradient back{gradient}, and {100 * squashing[worst]:.0f}% of the outputs of {worst} "
                   "sit near their limits, where the slope is almost zero",
                   f.advise(("model.activation", "relu"), ("optim.lr", _higher(f.lr)), then="a ReLU model, or dl lr-find"))


@check("lr_too_low", unless=("lr_too_high", "saturating_activations"), thresholds={
    "relative_drop": 0.05,  # the loss fell by less than this fraction over the whole run ...
    "min_epochs": 5,  # ... of at least this many epochs (or STUCK: at the untrained level after 3)
    **STUCK,
})
def lr_too_low(f: Facts, t: dict) -> Finding | None:
    losses = f.losses
    slow = len(losses) >= t["min_epochs"] and losses[0] > 0 and (losses[0] - min(losses)) / losses[0] < t["relative_drop"]
    if not slow and not _stuck(f, t):
        return None
    why = (f"the training loss fell by only {100 * (losses[0] - min(losses)) / losses[0]:.1f}% over {len(losses)} epochs" if slow
           else f"the training loss is still where the untrained model began ({fmt(min(losses))}) after {len(losses)} epochs")
    return Finding("lr_too_low", "warning", len(losses), {"first_train_loss": losses[0], "best_train_loss": min(losses), "lr": f.lr},
                   "the learning rate looks too low: " + why,
                   f.advise(("optim.lr", _higher(f.lr)), then="or dl lr-find"))


# -- the fit ---------------------------------------------------------------------------------------

@check("overfitting", unless=("lr_too_high", "lr_too_low", "saturating_activations"), thresholds={
    "val_loss_rise": 1.30,  # validation loss this far above its minimum (a rise of 20% is ordinary noise on small sets)
    "epochs_after_best": 3,  # at least this many epochs after it
    "metric_gap": 0.05,  # with train accuracy this far above validation accuracy
})
def overfitting(f: Facts, t: dict) -> Finding | None:
    val_losses = [r["val_loss"] for r in f.rows if "val_loss" in r]
    if len(f.losses) < 3 or not val_losses:
        return None
    best = min(range(len(val_losses)), key=val_losses.__getitem__)
    last = f.rows[-1]
    # the loss is comparable to the target's variance only on a standardized target
    gap = (last.get("train_accuracy", 0) or 0) - (last.get("val_accuracy", 0) or 0) if f.classification else None
    rose = val_losses[-1] > val_losses[best] * t["val_loss_rise"] and len(val_losses) - 1 - best >= t["epochs_after_best"]
    separated = gap > t["metric_gap"] if gap is not None else f.losses[-1] < val_losses[-1] / 3
    if not (rose and separated):
        return None
    return Finding("overfitting", "warning", best + 1,
                   {"best_val_loss": val_losses[best], "last_val_loss": val_losses[-1], "best_epoch": best + 1, "train_val_gap": gap},
                   f"the model overfits: validation loss was lowest at epoch {best + 1} ({fmt(val_losses[best])}) "
                   f"and rose to {fmt(val_losses[-1])} while training kept improving",
                   f.advise(("model.dropout", 0.3), ("optim.weight_decay", 1e-4), ("trainer.early_stopping.enabled", True),
                            ("trainer.epochs", best + 1), then="or augmentation"))


@check("underfitting", unless=("lr_too_high", "lr_too_low", "saturating_activations"), thresholds={
    "train_accuracy": 0.60,  # training accuracy below this after training ...
    "train_loss_regression": 0.50,  # ... or MSE on the standardized target above this (1.0 is predicting the mean)
    "flat_relative_change": 0.05,  # and the last third of the epochs improved the loss by less than this
})
def underfitting(f: Facts, t: dict) -> Finding | None:
    losses, last = f.losses, f.rows[-1] if f.rows else {}
    if len(losses) < 3:
        return None
    third = max(1, len(losses) // 3)
    flat = abs(losses[-third - 1] - losses[-1]) / max(abs(losses[-third - 1]), 1e-12) < t["flat_relative_change"]
    poor = ((last.get("train_accuracy") or 0) < t["train_accuracy"] if f.classification
            else f.standardized and losses[-1] > t["train_loss_regression"])
    if not (poor and flat):
        return None
    shown = f"training {f.metric if f.classification else 'loss'} {fmt(last.get('train_accuracy') if f.classification else losses[-1])}"
    return Finding("underfitting", "warning", len(f.rows), {"train_loss": losses[-1], "train_accuracy": last.get("train_accuracy")},
                   f"the model underfits: {shown} after {len(f.rows)} epochs, and the loss stopped improving",
                   f.advise(*_larger(f.config), then="a larger model, a higher optim.lr, more epochs, less regularization"))


# -- the gradients ---------------------------------------------------------------------------------

@check("vanishing_gradients", thresholds={
    "ratio": 1e-3,  # the first layer's gradient norm this many times smaller than the last layer's (a healthy ReLU MLP stays within ~10x)
})
def vanishing_gradients(f: Facts, t: dict) -> Finding | None:
    means, names = f.evidence.layer_grad_means, f.evidence.layer_names
    if len(means) < 3 or means[-1] <= 0 or means[0] <= 0 or means[0] / means[-1] >= t["ratio"]:
        return None
    ratio = means[0] / means[-1]
    return Finding("vanishing_gradients", "warning", None,
                   {"first_layer": names[0], "last_layer": names[-1], "first_grad_norm": means[0], "last_grad_norm": means[-1],
                    "ratio": ratio},
                   f"gradients vanish: the first layer's gradient norm ({fmt(means[0])}) is {1 / ratio:.0e} times "
                   f"smaller than the last layer's ({fmt(means[-1])}), so the early layers barely learn",
                   f.advise(("model.activation", "relu"), ("model.batch_norm", True), ("model.init", "kaiming"),
                            then="or a residual model (model=resnet)"))


@check("exploding_gradients", thresholds={
    "ratio": 20.0,  # a sampled gradient norm this many times the running median before it ...
    "min_samples": 10,  # ... after this many samples ...
    "window": 20,  # ... over the last 20 samples (a converging run's norms shrink by orders of magnitude: no spike)
    # ... unless that median is below this share of the run's starting gradient scale: no gradient
    # flows at all (dead units, underflow: 1e-18 and 0 are common there), and a blip against
    # nothing is no explosion (it was reported as "14913212027173 times the median"); float32 keeps
    # about 7 significant digits, so a millionth of the start is already noise
    "dead_floor": 1e-6,
})
def exploding_gradients(f: Facts, t: dict) -> Finding | None:
    norms, steps = f.evidence.grad_norms, f.evidence.grad_steps
    spikes = []  # (ratio, index, median): a norm far above the median of the samples just before it
    start = statistics.median(norms[:t["min_samples"]]) if norms else 0.0
    for i in range(t["min_samples"], len(norms)):
        median = statistics.median(norms[max(0, i - t["window"]):i])
        alive = median > 0 and median >= t["dead_floor"] * start
        if alive and norms[i] > t["ratio"] * median:
            spikes.append((norms[i] / median, i, median))
    if not spikes:
        return None
    _, index, median = max(spikes)
    peak, step = norms[index], steps[index] if steps else None
    recurrent = ("; a recurrent network multiplies its gradient by the same weights at every step, and clipping its "
                 "norm is the remedy") if recurrent_cell(f.config) else ""
    return Finding("exploding_gradients", "warning", None, {"max_grad_norm": peak, "median_grad_norm": median, "step": step},
                   f"gradients explode: the gradient norm reached {fmt(peak)} (step {step}), "
                   f"{peak / median:.0f} times the median of the steps before it ({fmt(median)}){recurrent}",
                   f.advise(("trainer.grad_clip", 1.0), then="a lower optim.lr"))


@check("dead_relus", thresholds={
    "share": 0.50,  # of a layer's units that never fire on a validation batch
})
def dead_relus(f: Facts, t: dict) -> Finding | None:
    dead = {name: share for name, share in f.evidence.dead_relu.items() if share > t["share"]}
    if not dead:
        return None
    worst = max(dead, key=dead.get)
    return Finding("dead_relus", "warning", None, {"dead_share": f.evidence.dead_relu},
                   f"ReLU units are dead: {100 * dead[worst]:.0f}% of the units after {worst} never fire on a "
                   "validation batch, so they pass no gradient",
                   f.advise(("model.activation", "leaky_relu"), ("model.init", "kaiming"), then="a lower optim.lr"))


# -- the outputs and the inputs ---------------------------------------------------------------------

@check("activation_before_loss", early=True)
def activation_before_loss(f: Facts, t: dict) -> Finding | None:
    check = f.evidence.output_check
    if check is None:
        return None
    how = "each row sums to 1" if check.get("rows_sum_to_one") else f"all outputs lie in [0, 1] after a final {check.get('last_module')}"
    return Finding("activation_before_loss", "error", None, check,
                   f"the model's outputs look like probabilities ({how}), but cross-entropy wants raw scores (logits): "
                   "it applies log-softmax itself, so the model learns slowly or not at all",
                   "remove the final Softmax/Sigmoid/ReLU from the model's forward")


@check("unnormalized_inputs", thresholds={
    "scale": 20.0,  # a feature's standard deviation or mean magnitude above this
})
def unnormalized_inputs(f: Facts, t: dict) -> Finding | None:
    scale = f.evidence.input_scale
    if scale is None or max(scale["max_std"], scale["max_abs_mean"]) <= t["scale"]:
        return None
    return Finding("unnormalized_inputs", "warning", None, scale,
                   f"the inputs are not normalized: a feature has standard deviation {fmt(scale['max_std'])} and "
                   f"mean magnitude up to {fmt(scale['max_abs_mean'])} (feature {scale['feature']}); large inputs make "
                   "the first layer's gradients large and the learning rate hard to choose",
                   f.advise(("data.standardize", True), ("data.normalize", "computed"), then="or inputs scaled to about [-1, 1]"))


@check("imbalanced_classes", thresholds={
    "majority": 0.75,  # the majority class's share of the training labels at least this ...
    "accuracy_margin": 0.05,  # ... and validation accuracy within this of it
})
def imbalanced_classes(f: Facts, t: dict) -> Finding | None:
    share = f.evidence.majority_share
    accuracy = f.rows[-1].get("val_accuracy") if f.rows else None
    if not f.classification or share is None or accuracy is None:
        return None
    if share < t["majority"] or accuracy > share + t["accuracy_margin"]:
        return None
    return Finding("imbalanced_classes", "warning", None, {"majority_share": share, "val_accuracy": accuracy},
                   f"the classes are imbalanced: {100 * share:.0f}% of the training samples are one class and "
                   f"validation accuracy ({fmt(accuracy)}) is about what always answering it scores",
                   "read macro-F1 (dl eval prints it per class) rather than accuracy; collect or oversample the rare classes")


@check("input_pipeline_bound", thresholds={
    "share": 0.50,  # waiting for batches is more than half of the training time (median over epochs)
})
def input_pipeline_bound(f: Facts, t: dict) -> Finding | None:
    shares = f.evidence.data_shares
    if not f.evidence.loader or len(shares) < 2 or statistics.median(shares) <= t["share"]:
        return None
    median = statistics.median(shares)
    return Finding("input_pipeline_bound", "warning", None, {"median_share_waiting": median},
                   f"training waits for its data: reading and preparing batches takes {100 * median:.0f}% of the "
                   "training time, so the model is idle most of the time",
                   # decoding once helps a folder read from its files (not a set in memory already)
                   f.advise(*[("data.cache", "memory")] * (((f.config or {}).get("data") or {}).get("cache") == "none"),
                            ("data.num_workers", 4), then="more loader processes, or a smaller data.resize"))


def _larger(config: dict | None) -> list[tuple[str, object]]:
    """The model's own size settings (its class's `grows_with`), each doubled: `model.hidden=[512]`
    for an MLP, `model.width=128` for a ResNet; none for a model without them (LeNet)."""
    model = (config or {}).get("model") or {}
    target = model.get("_target_") if isinstance(model, dict) else None
    if not isinstance(target, str) or not target.startswith("dlcli.models."):
        return []  # someone else's class is not imported to ask it
    import dlcli.models  # noqa: F401, PLC0415  (every model module registers itself on import; dl diagnose runs without torch otherwise)
    from dlcli.models.registry import MODELS  # noqa: PLC0415  (dlcli.models imports torch)

    grows = getattr(MODELS.get(target.rsplit(".", 1)[-1]), "grows_with", ())
    doubled = []
    for key in grows:
        value = model.get(key)
        if isinstance(value, int) and not isinstance(value, bool):
            doubled.append((f"model.{key}", 2 * value))
        elif isinstance(value, list) and value and all(isinstance(v, int) for v in value):
            doubled.append((f"model.{key}", [2 * v for v in value]))
    return doubled


def _lower(lr) -> float:
    """A tenth of the run's rate (0.01 when it is not known); the constraints drop what is not a rate."""
    return float(format(lr / 10, ".2g")) if isinstance(lr, (int, float)) and math.isfinite(lr) else 0.01


def _higher(lr) -> float:
    return float(format(lr * 10, ".2g")) if isinstance(lr, (int, float)) and math.isfinite(lr) else 0.1
