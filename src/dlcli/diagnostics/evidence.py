"""The evidence a run's diagnosis rests on, gathered live by the Diagnostics callback, cheaply:
gradient norms per layer every `trainer.diagnostics_every` optimizer steps (kept on the device,
read once an epoch), one look at a training batch before the first step (the untrained loss, the
outputs, the inputs' scale, the class balance) and one at a validation batch after the last (which
ReLUs ever fire). A check that cannot be made on this model or data steps aside; the run goes on.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from dlcli.diagnostics.through_time import gradient_reach
from dlcli.engine.callbacks import Callback

if TYPE_CHECKING:
    import torch  # noqa: PLC0415  (dl diagnose runs without torch: dlcli.diagnostics imports this module)
    from torch import nn  # noqa: PLC0415  (dl diagnose runs without torch: dlcli.diagnostics imports this module)

PEEK_SAMPLES = 256  # the batch the checks look at before and after training


@dataclass
class Evidence:
    """What the callback measured live (absent when a run is re-analyzed from its files)."""

    layer_names: list[str] = field(default_factory=list)
    layer_grad_means: list[float] = field(default_factory=list)  # mean sampled gradient norm per layer
    grad_norms: list[float] = field(default_factory=list)  # sampled total gradient norms, in order
    grad_steps: list[int] = field(default_factory=list)
    dead_relu: dict = field(default_factory=dict)  # layer -> share of units never firing
    saturated: dict = field(default_factory=dict)  # sigmoid/tanh layer -> share of its outputs near its limits
    output_check: dict | None = None  # probabilities fed to cross-entropy
    input_scale: dict | None = None  # the largest feature std / |mean| of a training batch
    majority_share: float | None = None
    initial_loss: float | None = None  # on a training batch before the first step (fresh runs)
    data_shares: list[float] = field(default_factory=list)  # per epoch: time waiting for batches / training time
    loader: bool = False  # batches come through a DataLoader (num_workers can help)
    gradient_reach: float | None = None  # a recurrent layer's gradient at its first step / at its last, after training


class Diagnostics(Callback):
    """Gathers the evidence during training, cheaply: every `every` optimizer steps, each weight's
    gradient norm is stacked on the device; the numbers are read once an epoch."""

    def __init__(self, every: int = 10, warn=None, early=None):
        """`early(evidence)` gives the findings the look before training already decides; each is
        warned about at once (dlcli.diagnostics.checks.said_before_training)."""
        self.every = max(1, int(every))
        self.warn = warn or (lambda message: None)
        self.early = early
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
        from dlcli.engine.state import steps_taken  # noqa: PLC0415  (dl diagnose runs without torch: dlcli.diagnostics imports this module)

        # a resumed run goes on counting: its findings name the steps an uninterrupted run would
        self._steps = steps_taken(state, len(session.train_data), session.step.batch_size)
        self._safely(self._fit_start, session, state)
        if self.early is not None and self.failed is None:
            for finding in self.early(self.evidence):
                self.warn(f"{finding.severity}: {finding.message}")

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
        import torch  # noqa: PLC0415  (dl diagnose runs without torch: dlcli.diagnostics imports this module)
        from torch import nn  # noqa: PLC0415  (dl diagnose runs without torch: dlcli.diagnostics imports this module)

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
            targets = getattr(session.train_data, "targets", None)
            if targets is not None and len(targets):
                counts = torch.bincount(targets.long().reshape(-1))
                self.evidence.majority_share = float(counts.max()) / float(counts.sum())
        flat = x.reshape(len(x), -1).float()
        if len(flat) > 1 and x.is_floating_point():  # token ids are names, not measurements: no scale to judge
            std, mean = flat.std(dim=0), flat.mean(dim=0)
            self.evidence.input_scale = {"max_std": float(std.max()), "max_abs_mean": float(mean.abs().max()),
                                         "feature": int(torch.argmax(torch.maximum(std, mean.abs())))}

    # -- during training: gradient norms, sampled ------------------------------------------------
    def _after_backward(self, model) -> None:
        import torch  # noqa: PLC0415  (dl diagnose runs without torch: dlcli.diagnostics imports this module)

        norms = torch.stack([p.grad.detach().float().norm() if p.grad is not None else p.new_zeros((), dtype=torch.float32)
                             for _, p in self.weights])
        self._pending.append(norms)
        self._pending_steps.append(self._steps)

    def _epoch_end(self, state, row, improved) -> None:
        import torch  # noqa: PLC0415  (dl diagnose runs without torch: dlcli.diagnostics imports this module)

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

    # -- after training: which ReLUs ever fire, how close sigmoids sit to their limits -------------
    def _fit_end(self, state, status) -> None:
        import torch  # noqa: PLC0415  (dl diagnose runs without torch: dlcli.diagnostics imports this module)
        from torch import nn  # noqa: PLC0415  (dl diagnose runs without torch: dlcli.diagnostics imports this module)

        self._epoch_end(state, {}, False)  # the samples of an epoch that ended in a crash count too
        if status not in ("completed", "pruned"):
            return
        self.evidence.gradient_reach = _reach_through_time(self.session)
        relus = [(name, m) for name, m in self.session.model.named_modules() if isinstance(m, nn.ReLU)]
        squashing = [(name, m) for name, m in self.session.model.named_modules() if isinstance(m, (nn.Sigmoid, nn.Tanh))]
        if not relus and not squashing:
            return
        fired: dict[str, torch.Tensor] = {}
        near_limits: dict[str, float] = {}

        def watch(name):
            def hook(module, inputs, output):
                if not isinstance(output, torch.Tensor) or output.ndim < 2:
                    return
                # a unit is a feature (N x F) or a channel (N x C x ...): does it fire for any sample?
                alive = (output > 0).transpose(0, 1).reshape(output.shape[1], -1).any(dim=1)
                key = name if name not in fired or fired[name].shape == alive.shape else f"{name} ({len(alive)} units)"
                fired[key] = alive if key not in fired else fired[key] | alive  # a module reused on other shapes
            return hook

        def squash(name):
            def hook(module, inputs, output):
                if isinstance(output, torch.Tensor) and output.numel():
                    # within 5% of the limits (sigmoid: <0.05 or >0.95; tanh: |y| > 0.9) the slope is under a tenth of its peak
                    edge = output.abs() > 0.9 if isinstance(module, nn.Tanh) else (output - 0.5).abs() > 0.45
                    near_limits[name] = float(edge.float().mean())
            return hook

        handles = [m.register_forward_hook(watch(name)) for name, m in relus]
        handles += [m.register_forward_hook(squash(name)) for name, m in squashing]
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
        self.evidence.saturated = near_limits


def _reach_through_time(session) -> float | None:
    """dlcli.diagnostics.through_time on a training batch, in evaluation mode (no dropout)."""
    from torch import nn  # noqa: PLC0415  (dl diagnose runs without torch: dlcli.diagnostics imports this module)

    model = session.model
    if not any(isinstance(module, nn.RNNBase) for module in model.modules()):
        return None  # nothing recurrent: no batch is read (a folder's would be decoded)
    was_training = model.training
    model.eval()
    try:
        with _rng_untouched(session.device):
            x, y = session.train_data.peek(PEEK_SAMPLES)
        return gradient_reach(model, x, y, session.loss_fn)
    finally:
        model.train(was_training)


def _rng_untouched(device: torch.device):
    """Reading a batch may draw random numbers (augmentation): keep training's streams as they were."""
    import torch  # noqa: PLC0415  (dl diagnose runs without torch: dlcli.diagnostics imports this module)

    return torch.random.fork_rng(devices=[device] if device.type == "cuda" else [])


def _last_module(model: nn.Module):
    leaves = [m for m in model.modules() if not list(m.children())]
    return leaves[-1] if leaves else None
