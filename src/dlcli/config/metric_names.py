"""Which metrics each task has, and which way each is better. Plain Python: `dl runs` sorts and
groups runs by them without importing torch."""

from __future__ import annotations

# Metric names per task: the first is the one model selection uses.
TASK_METRICS = {"classification": ("accuracy",), "regression": ("rmse", "mae", "r2", "log_rmse")}
HIGHER_IS_BETTER = {"accuracy": True, "rmse": False, "mae": False, "r2": True, "log_rmse": False, "loss": False, "macro_f1": True}


def monitor_mode(monitor: str) -> str:
    """'max' when a larger value of the monitored metric is better, else 'min'."""
    metric = monitor
    for prefix in ("train_", "val_", "test_", "best_"):
        metric = metric.removeprefix(prefix)
    return "max" if HIGHER_IS_BETTER.get(metric, False) else "min"
