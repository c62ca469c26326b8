"""Diagnostics: which classic training pitfall a run fell into, from measured quantities.

A `Diagnostics` callback watches a run (gradient norms per layer every `trainer.diagnostics_every`
steps, kept on the device and read once per epoch; one look at a batch before training and one at a
validation batch after it); `analyze` turns that and metrics.csv into findings, each
{code, severity, epoch, evidence, message, suggestion}, written to diagnostics.json. `dl diagnose
RUN` prints them again, and re-analyzes metrics.csv for a run that has none (killed, or older).

Every threshold is in THRESHOLDS with the reason for its value. None fires on the default `dl train`
run, on the recipes in conf/experiment/, or on the healthy runs of the tests.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import asdict, dataclass, field
from pathlib import Path

from typing import TYPE_CHECKING

from dlcli.engine.callbacks import Callback

if TYPE_CHECKING:
    import torch
    from torch import nn

# torch is imported inside the callback's hooks: `dl diagnose` reads files and needs none of it.

PEEK_SAMPLES = 256  # the batch the checks look at before and after training

THRESHOLDS = {
    # overfitting: validation loss this far above its minimum, at least this many epochs after it,
    # with training clearly better than validation (a rise of 20% is ordinary noise on small sets)
    "overfit_val_loss_rise": 1.30,
    "overfit_epochs_after_best": 3,
    "overfit_metric_gap": 0.05,  # train accuracy minus val accuracy
    # underfitting: training accuracy below this after training, and the loss no longer moving
    "underfit_train_accuracy": 0.60,
    "underfit_train_loss_regression": 0.50,  # MSE on the standardized target: 1.0 is predicting the mean
    "flat_relative_change": 0.05,  # the last third of the epochs improved the loss by less than this
    # learning rate: too high when the loss ends above where it started or rises early by this factor
    "lr_high_rise": 1.10,
    # too low: the loss fell by less than this fraction over the whole run (at least 5 epochs)
    "lr_low_relative_drop": 0.05,
    "lr_low_min_epochs": 5,
    # vanishing: the first layer's gradient norm this many times smaller than the last layer's
    # (orders of magnitude; a healthy ReLU MLP stays within about 10x)
    "vanishing_ratio": 1e-3,
    # exploding: a sampled gradient norm this many times the running median before it (after 10 samples)
    "exploding_ratio": 20.0,
    "exploding_min_samples": 10,
    "exploding_window": 20,  # the running median is over the last 20 samples: a converging run's
    # norms shrink by orders of magnitude, which is no spike
    # ... but a window whose median is below this share of the run's starting gradient scale passes
    # no gradient at all (dead units, underflow: 1e-18 and 0 are common there), and a blip against
    # nothing is no explosion (it was reported as "14913212027173 times the median"); float32 keeps
    # about 7 significant digits, so a millionth of the start is already noise
    "exploding_dead_floor": 1e-6,
    # dead ReLUs: share of a layer's units that never fire on a validation batch
    "dead_relu_share": 0.50,
    # unnormalized inputs: a feature's standard deviation or mean magnitude above this
    "unnormalized_scale": 20.0,
    # input pipeline: waiting for batches is more than half of the training time (median over epochs)
    "input_bound_share": 0.50,
    # imbalance: majority share of the training labels at least this, and accuracy within this of it
    "imbalanced_majority": 0.75,
    "imbalanced_accuracy_margin": 0.05,
}


@dataclass
class Finding:
    code: str
    severity: str  # warning | error
    epoch: int | None
    evidence: dict
    message: str
    suggestion: str

    def lines(self) -> list[str]:
        return [f"{self.severity}: {self.message}", f"  try: {self.suggestion}"]


@dataclass
class Evidence:
    """What the callback measured live (absent when a run is re-analyzed from its files)."""

    layer_names: list[str] = field(default_factory=list)
    layer_grad_means: list[float] = field(default_factory=list)  # mean sampled gradient norm per layer
    grad_norms: list[float] = field(default_factory=list)  # sampled total gradient norms, in order
    grad_steps: list[int] = field(default_factory=list)
    dead_relu: dict = field(default_factory=dict)  # layer -> share of units never firing
    output_check: dict | None = None  # probabilities fed to cross-entropy
    input_scale: dict | None = None  # the largest feature std / |mean| of a training batch
    majority_share: float | None = None
    initial_loss: float | None = None  # on a training batch before the first step (fresh runs)
    data_shares: list[float] = field(default_factory=list)  # per epoch: time waiting for batches / training time
    loader: bool = False  # batches come through a DataLoader (num_workers can help)


class Diagnostics(Callback):
    """Gathers the evidence during training, cheaply: every `every` optimizer steps, each weight's
    gradient norm is stacked on the device; the numbers are read once an epoch."""

    def __init__(self, every: int = 10, warn=None):
        self.every = max(1, int(every))
        self.warn = warn or (lambda message: None)
        self.evidence = Evidence()
        self._steps = 0
        self._pending: list[torch.Tensor] = []
        self._pending_steps: list[int] = []
        self._sums: torch.Tensor | None = None
        self._samples = 0
        self.failed: str | None = None  # why the live checks stopped, if they did

    # Diagnostics never cost a run: a check that cannot be made on this model or data (an
    # unusual _target_, an empty split) is skipped with the others, and training goes on.
    def _safely(self, action, *args) -> None:
        if self.failed is not None:
            return
        try:
            action(*args)
        except Exception as exc:
            self.failed = f"{type(exc).__name__}: {exc}"

    def on_fit_start(self, session, state) -> None:
        self._safely(self._fit_start, session, state)

    def on_after_backward(self, model) -> None:
        self._steps += 1  # counted even when a check failed: the sampling stays on its steps
        if self._steps % self.every == 0:
            self._safely(self._after_backward, model)

    def on_epoch_end(self, state, row, improved) -> None:
        self._safely(self._epoch_end, state, row, improved)

    def on_fit_end(self, state, status) -> None:
        self._safely(self._fit_end, state, status)

    # -- before training: outputs and inputs ----------------------------------------------------
    def _fit_start(self, session, state) -> None:
        import torch
        from torch import nn

        self.session = session
        self.evidence.loader = hasattr(session.train_data, "num_workers")
        model = session.model
        self.weights = [(name, p) for name, p in model.named_parameters() if p.requires_grad and p.ndim >= 2]
        self.evidence.layer_names = [name for name, _ in self.weights]
        with _rng_untouched(session.device):  # the look must not change what training draws
            x, y = session.train_data.peek(PEEK_SAMPLES)
        with torch.no_grad():
            was_training = model.training
            model.eval()
            outputs = model(x)
            model.train(was_training)
            if state.epoch == 0:
                self.evidence.initial_loss = float(session.loss_fn(outputs, y))
        if session.task == "classification":
            if outputs.ndim == 2 and outputs.shape[1] > 1:
                sums = outputs.sum(dim=1)
                nonnegative = bool((outputs >= 0).all())
                in_unit = bool(((outputs >= 0) & (outputs <= 1)).all())
                rows_sum_to_one = nonnegative and bool(torch.allclose(sums, torch.ones_like(sums), atol=1e-3))
                last = _last_module(model)
                if rows_sum_to_one or (in_unit and isinstance(last, (nn.Softmax, nn.Sigmoid, nn.ReLU, nn.LogSoftmax))):
                    self.evidence.output_check = {"rows_sum_to_one": rows_sum_to_one, "all_in_0_1": in_unit,
                                                  "last_module": type(last).__name__ if last is not None else None}
                    self.warn(f"warning: {_activation_before_loss(self.evidence).message}")
            targets = getattr(session.train_data, "targets", None)
            if targets is not None and len(targets):
                counts = torch.bincount(targets.long().reshape(-1))
                self.evidence.majority_share = float(counts.max()) / float(counts.sum())
        flat = x.reshape(len(x), -1).float()
        if len(flat) > 1:
            std, mean = flat.std(dim=0), flat.mean(dim=0)
            self.evidence.input_scale = {"max_std": float(std.max()), "max_abs_mean": float(mean.abs().max()),
                                         "feature": int(torch.argmax(torch.maximum(std, mean.abs())))}

    # -- during training: gradient norms, sampled ------------------------------------------------
    def _after_backward(self, model) -> None:
        import torch

        norms = torch.stack([p.grad.detach().float().norm() if p.grad is not None else p.new_zeros((), dtype=torch.float32)
                             for _, p in self.weights])
        self._pending.append(norms)
        self._pending_steps.append(self._steps)

    def _epoch_end(self, state, row, improved) -> None:
        import torch

        if "data_share" in row:
            self.evidence.data_shares.append(row["data_share"])
        if not self._pending:
            return
        norms = torch.stack(self._pending)  # samples x layers, one transfer per epoch
        finite = torch.isfinite(norms).all(dim=1)  # AMP's skipped steps have inf gradients: not evidence
        steps = [s for s, keep in zip(self._pending_steps, finite.tolist()) if keep]
        norms = norms[finite]
        self._pending_steps = steps
        if not len(norms):
            self._pending = []
            return
        self._sums = norms.sum(dim=0) if self._sums is None else self._sums + norms.sum(dim=0)
        self._samples += len(norms)
        totals = norms.pow(2).sum(dim=1).sqrt().tolist()
        self.evidence.grad_norms += totals
        self.evidence.grad_steps += self._pending_steps
        self._pending, self._pending_steps = [], []
        self.evidence.layer_grad_means = (self._sums / self._samples).tolist()

    # -- after training: which ReLUs ever fire -----------------------------------------------------
    def _fit_end(self, state, status) -> None:
        import torch
        from torch import nn

        self._epoch_end(state, {}, False)  # the samples of an epoch that ended in a crash count too
        if status not in ("completed", "pruned"):
            return
        relus = [(name, m) for name, m in self.session.model.named_modules() if isinstance(m, nn.ReLU)]
        if not relus:
            return
        fired: dict[str, torch.Tensor] = {}

        def watch(name):
            def hook(module, inputs, output):
                if not isinstance(output, torch.Tensor) or output.ndim < 2:
                    return
                # a unit is a feature (N x F) or a channel (N x C x ...): does it fire for any sample?
                alive = (output > 0).transpose(0, 1).reshape(output.shape[1], -1).any(dim=1)
                key = name if name not in fired or fired[name].shape == alive.shape else f"{name} ({len(alive)} units)"
                fired[key] = alive if key not in fired else fired[key] | alive  # a module reused on other shapes
            return hook

        handles = [m.register_forward_hook(watch(name)) for name, m in relus]
        try:
            model = self.session.model
            was_training = model.training
            model.eval()
            with torch.no_grad(), _rng_untouched(self.session.device):
                source = self.session.val_data if self.session.val_data is not None else self.session.train_data
                x, _ = source.peek(PEEK_SAMPLES)  # validation rows; train rows when there is no validation split
                if len(x):
                    model(x)
            model.train(was_training)
        finally:
            for handle in handles:
                handle.remove()
        self.evidence.dead_relu = {name: 1.0 - float(alive.float().mean()) for name, alive in fired.items()}


def _rng_untouched(device: torch.device):
    """Reading a batch may draw random numbers (augmentation): keep training's streams as they were."""
    import torch

    return torch.random.fork_rng(devices=[device] if device.type == "cuda" else [])


def _last_module(model: nn.Module):
    leaves = [m for m in model.modules() if not list(m.children())]
    return leaves[-1] if leaves else None


# -- the analysis ------------------------------------------------------------------------------

def analyze(rows: list[dict], summary: dict, evidence: Evidence | None = None) -> list[Finding]:
    """Findings from a run's metrics.csv rows, its summary and (when it was watched) its evidence."""
    evidence = evidence or Evidence()
    findings: list[Finding] = []
    metric = summary.get("metric") or "accuracy"
    classification = summary.get("task", "classification") == "classification"
    message = str(summary.get("message") or "")
    failed_nan = summary.get("status") == "failed" and ("became nan" in message or "became inf" in message)
    losses = [r["train_loss"] for r in rows if "train_loss" in r and math.isfinite(r["train_loss"])]
    if evidence.initial_loss is None and classification and (summary.get("num_classes") or 0) > 1:
        # not watched live: an untrained classifier's cross-entropy is about ln(classes) (uniform guesses)
        evidence.initial_loss = math.log(summary["num_classes"])
    lr = rows[0].get("lr") if rows else None
    t = THRESHOLDS

    # learning rate too high: a non-finite stop, or the loss rising early / ending above its start
    high = None
    if failed_nan:
        high = {"stopped": summary.get("message")}
    elif losses and evidence.initial_loss is not None and losses[0] > evidence.initial_loss * t["lr_high_rise"]:
        # the first epoch ended worse than the untrained model began: the steps overshoot
        high = {"initial_loss": evidence.initial_loss, "first_train_loss": losses[0]}
    elif len(losses) >= 3 and (losses[-1] > losses[0] * t["lr_high_rise"] or
                               sum(b > a * t["lr_high_rise"] for a, b in zip(losses[:3], losses[1:4])) >= 2):
        high = {"first_train_loss": losses[0], "last_train_loss": losses[-1], "early_losses": losses[:4]}
    if high is not None:
        findings.append(Finding("lr_too_high", "error" if failed_nan else "warning", 1, {**high, "lr": lr},
                                "the learning rate looks too high: " + _why_high(high, failed_nan),
                                f"optim.lr={_lower(lr)} (or dl lr-find), trainer.grad_clip=1.0"))
    # learning rate too low: the loss barely moved over a run of some length
    elif len(losses) >= t["lr_low_min_epochs"] and losses[0] > 0 and (losses[0] - min(losses)) / losses[0] < t["lr_low_relative_drop"]:
        findings.append(Finding("lr_too_low", "warning", len(losses), {"first_train_loss": losses[0], "best_train_loss": min(losses), "lr": lr},
                                f"the learning rate looks too low: the training loss fell by only "
                                f"{100 * (losses[0] - min(losses)) / losses[0]:.1f}% over {len(losses)} epochs",
                                f"optim.lr={_higher(lr)} (or dl lr-find)"))
    elif len(losses) >= 3:
        findings += _fit_findings(rows, losses, metric, classification, str(summary.get("loss_units") or "").startswith("standardized"))

    findings += _gradient_findings(evidence)
    if evidence.output_check is not None:
        findings.append(_activation_before_loss(evidence))
    scale = evidence.input_scale
    if scale is not None and max(scale["max_std"], scale["max_abs_mean"]) > t["unnormalized_scale"]:
        findings.append(Finding("unnormalized_inputs", "warning", None, scale,
                                f"the inputs are not normalized: a feature has standard deviation {_fmt(scale['max_std'])} and "
                                f"mean magnitude up to {_fmt(scale['max_abs_mean'])} (feature {scale['feature']}); large inputs make "
                                "the first layer's gradients large and the learning rate hard to choose",
                                "data.standardize=true (tables) or data.normalize=computed (images)"))
    if classification and evidence.majority_share is not None and rows:
        accuracy = rows[-1].get("val_accuracy")
        share = evidence.majority_share
        if share >= t["imbalanced_majority"] and accuracy is not None and accuracy <= share + t["imbalanced_accuracy_margin"]:
            findings.append(Finding("imbalanced_classes", "warning", None, {"majority_share": share, "val_accuracy": accuracy},
                                    f"the classes are imbalanced: {100 * share:.0f}% of the training samples are one class and "
                                    f"validation accuracy ({_fmt(accuracy)}) is about what always answering it scores",
                                    "read macro-F1 (dl eval prints it per class) rather than accuracy; collect or "
                                    "oversample the rare classes"))
    shares = evidence.data_shares
    if evidence.loader and len(shares) >= 2 and statistics.median(shares) > t["input_bound_share"]:
        findings.append(Finding("input_pipeline_bound", "warning", None, {"median_share_waiting": statistics.median(shares)},
                                f"training waits for its data: reading and preparing batches takes "
                                f"{100 * statistics.median(shares):.0f}% of the training time, so the model is idle most of the time",
                                "data.num_workers=4 (more processes read images in parallel), or a smaller data.resize"))
    return findings


def _why_high(high: dict, failed_nan: bool) -> str:
    if failed_nan:
        return "the loss became non-finite and the run stopped"
    if "initial_loss" in high:
        return (f"the first epoch's training loss ({_fmt(high['first_train_loss'])}) is above the untrained "
                f"model's ({_fmt(high['initial_loss'])})")
    return f"the training loss rose ({_fmt(high['early_losses'])} ...)"


def _fit_findings(rows, losses, metric, classification, standardized) -> list[Finding]:
    t = THRESHOLDS
    findings = []
    val_losses = [r["val_loss"] for r in rows if "val_loss" in r]
    best = min(range(len(val_losses)), key=val_losses.__getitem__)
    last = rows[-1]
    third = max(1, len(losses) // 3)
    flat = abs(losses[-third - 1] - losses[-1]) / max(abs(losses[-third - 1]), 1e-12) < t["flat_relative_change"]
    if classification:
        gap = (last.get("train_accuracy", 0) or 0) - (last.get("val_accuracy", 0) or 0)
        poor = (last.get("train_accuracy") or 0) < t["underfit_train_accuracy"]
    else:
        gap = None  # the loss is comparable to the target's variance only on a standardized target
        poor = standardized and losses[-1] > t["underfit_train_loss_regression"]
    rose = val_losses[-1] > val_losses[best] * t["overfit_val_loss_rise"] and len(val_losses) - 1 - best >= t["overfit_epochs_after_best"]
    separated = gap > t["overfit_metric_gap"] if gap is not None else losses[-1] < val_losses[-1] / 3
    if rose and separated:
        findings.append(Finding("overfitting", "warning", best + 1,
                                {"best_val_loss": val_losses[best], "last_val_loss": val_losses[-1], "best_epoch": best + 1,
                                 "train_val_gap": gap},
                                f"the model overfits: validation loss was lowest at epoch {best + 1} ({_fmt(val_losses[best])}) "
                                f"and rose to {_fmt(val_losses[-1])} while training kept improving",
                                "model.dropout=0.3, optim.weight_decay=1e-4, trainer.early_stopping.enabled=true, "
                                f"trainer.epochs={best + 1}, or augmentation"))
    if poor and flat:
        shown = f"training {metric if classification else 'loss'} {_fmt(last.get('train_accuracy') if classification else losses[-1])}"
        findings.append(Finding("underfitting", "warning", len(rows), {"train_loss": losses[-1], "train_accuracy": last.get("train_accuracy")},
                                f"the model underfits: {shown} after {len(rows)} epochs, and the loss stopped improving",
                                "a larger model (model.hidden=[256,256]), a higher optim.lr, more epochs, less regularization"))
    return findings


def _gradient_findings(evidence: Evidence) -> list[Finding]:
    t = THRESHOLDS
    findings = []
    means = evidence.layer_grad_means
    if len(means) >= 3 and means[-1] > 0 and means[0] > 0:
        ratio = means[0] / means[-1]
        if ratio < t["vanishing_ratio"]:
            findings.append(Finding("vanishing_gradients", "warning", None,
                                    {"first_layer": evidence.layer_names[0], "last_layer": evidence.layer_names[-1],
                                     "first_grad_norm": means[0], "last_grad_norm": means[-1], "ratio": ratio},
                                    f"gradients vanish: the first layer's gradient norm ({_fmt(means[0])}) is {1 / ratio:.0e} times "
                                    f"smaller than the last layer's ({_fmt(means[-1])}), so the early layers barely learn",
                                    "model.activation=relu, model.batch_norm=true, model.init=kaiming, or a residual model (model=resnet)"))
    norms = evidence.grad_norms
    spikes = []  # (ratio, index, median): a norm far above the median of the samples just before it
    start = statistics.median(norms[:t["exploding_min_samples"]]) if norms else 0.0
    for i in range(t["exploding_min_samples"], len(norms)):
        median = statistics.median(norms[max(0, i - t["exploding_window"]):i])
        alive = median > 0 and median >= t["exploding_dead_floor"] * start
        if alive and norms[i] > t["exploding_ratio"] * median:
            spikes.append((norms[i] / median, i, median))
    if spikes:
        _, index, median = max(spikes)
        peak = norms[index]
        step = evidence.grad_steps[index] if evidence.grad_steps else None
        findings.append(Finding("exploding_gradients", "warning", None, {"max_grad_norm": peak, "median_grad_norm": median, "step": step},
                                f"gradients explode: the gradient norm reached {_fmt(peak)} (step {step}), "
                                f"{peak / median:.0f} times the median of the steps before it ({_fmt(median)})",
                                "trainer.grad_clip=1.0, a lower optim.lr"))
    dead = {name: share for name, share in evidence.dead_relu.items() if share > t["dead_relu_share"]}
    if dead:
        worst = max(dead, key=dead.get)
        findings.append(Finding("dead_relus", "warning", None, {"dead_share": evidence.dead_relu},
                                f"ReLU units are dead: {100 * dead[worst]:.0f}% of the units after {worst} never fire on a "
                                "validation batch, so they pass no gradient",
                                "model.activation=leaky_relu, a lower optim.lr, model.init=kaiming"))
    return findings


def _activation_before_loss(evidence: Evidence) -> Finding:
    check = evidence.output_check or {}
    how = "each row sums to 1" if check.get("rows_sum_to_one") else f"all outputs lie in [0, 1] after a final {check.get('last_module')}"
    return Finding("activation_before_loss", "error", None, check,
                   f"the model's outputs look like probabilities ({how}), but cross-entropy wants raw scores (logits): "
                   "it applies log-softmax itself, so the model learns slowly or not at all",
                   "remove the final Softmax/Sigmoid/ReLU from the model's forward")



def _fmt(value) -> str:
    from dlcli.numbers import short

    if isinstance(value, (list, tuple)):
        return ", ".join(short(v) for v in value)
    return short(value) if value is not None else "-"


def _lower(lr) -> str:
    return format(lr / 10, ".2g") if isinstance(lr, (int, float)) and lr > 0 else "0.01"


def _higher(lr) -> str:
    return format(lr * 10, ".2g") if isinstance(lr, (int, float)) and lr > 0 else "0.1"


# -- the file ------------------------------------------------------------------------------------

def write_findings(run_dir: Path, findings: list[Finding]) -> None:
    from dlcli.runs import write_json

    write_json(run_dir / "diagnostics.json", {"findings": [asdict(f) for f in findings]})


def read_findings(run_dir: Path) -> list[Finding] | None:
    from dlcli.runs import read_json

    from dlcli.errors import UserError

    path = run_dir / "diagnostics.json"
    if not path.is_file():
        return None
    record = read_json(path)
    findings = record.get("findings", []) if isinstance(record, dict) else None
    fields = set(Finding.__dataclass_fields__)
    if not isinstance(findings, list) or not all(isinstance(f, dict) and set(f) == fields for f in findings):
        raise UserError(f"{path} is not a diagnosis dl wrote (each finding holds {', '.join(sorted(fields))}): "
                        "delete it, and dl diagnose analyzes the run's files instead")
    return [Finding(**f) for f in findings]


def diagnose_run(run_dir: Path) -> tuple[list[Finding], bool]:
    """A run's findings: its diagnostics.json, or (killed runs, older runs) an analysis of its files.
    Returns the findings and whether they were read from diagnostics.json."""
    from dlcli.runs import read_metrics, read_summary

    saved = read_findings(run_dir)
    if saved is not None:
        return saved, True
    return analyze(read_metrics(run_dir / "metrics.csv"), read_summary(run_dir)), False


def diagnosis_lines(findings: list[Finding], skipped: str | None = None) -> list[str]:
    if skipped:
        head = f"diagnosis (the live checks stopped early: {skipped}):"
        return [head, *(line for f in findings for line in f.lines())] if findings else [head + " nothing else found"]
    if not findings:
        return ["diagnosis: nothing wrong found (overfitting, underfitting, learning rate, gradients, dead ReLUs, "
                "outputs, inputs, class balance and the input pipeline were checked)"]
    return ["diagnosis:", *(line for f in findings for line in f.lines())]
