"""The pitfall of a forecaster: a model that does not beat persistence (every future step equals
the last observed value), the naive forecast any forecast must beat to be worth anything. A series
run records persistence's errors in its summary (dlcli.data.forecast); the model's best validation
error is set beside them. Registered with the other checks (dlcli.diagnostics.checks)."""

from __future__ import annotations

from dlcli.diagnostics.checks import Facts, check
from dlcli.diagnostics.other_models import other_models
from dlcli.diagnostics.report import Finding, fmt


@check("no_better_than_persistence", thresholds={
    "ratio": 1.0,  # the model's best validation error at or above persistence's times this: it has learned nothing to use
})
def no_better_than_persistence(f: Facts, t: dict) -> Finding | None:
    naive = ((f.summary.get("persistence") or {}).get("val") or {}).get(f.metric)
    monitor = f.summary.get("monitor")
    model = f.summary.get(f"best_{monitor}") if monitor == f"val_{f.metric}" else None
    if not isinstance(naive, (int, float)) or not isinstance(model, (int, float)) or model < naive * t["ratio"]:
        return None
    config = f.config or {}
    window, epochs = (config.get("data") or {}).get("window"), (config.get("trainer") or {}).get("epochs")
    return Finding("no_better_than_persistence", "warning", f.summary.get("best_epoch"),
                   {f"val_{f.metric}": model, f"persistence_val_{f.metric}": naive},
                   f"the forecast does not beat persistence: validation {f.metric} {fmt(model)}, and repeating the last "
                   f"observed value scores {fmt(naive)}, so the model is no better than the naive forecast",
                   f.advise(*([("data.window", window * 2)] if isinstance(window, int) else []),
                            *([("trainer.epochs", epochs * 2)] if isinstance(epochs, int) else []),
                            then=f"a model that reads the sequence ({other_models(f.config, 'lstm', 'gru', 'cnn1d')}), or a higher optim.lr"))
