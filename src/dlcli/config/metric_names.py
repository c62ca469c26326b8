"""Which metrics each task has, and which way each is better. Plain Python: `dl runs` sorts and
groups runs by them without importing torch."""

from __future__ import annotations

# Metric names per task: the first is the one model selection uses.
# A language model's perplexity is exp(mean token cross-entropy); bits_per_token is that mean over ln 2 (bits per
# character for char tokens); its accuracy is the next token's.
TASK_METRICS = {"classification": ("accuracy",), "regression": ("rmse", "mae", "r2", "log_rmse"),
                "language_model": ("perplexity", "bits_per_token", "accuracy")}
HIGHER_IS_BETTER = {"accuracy": True, "rmse": False, "mae": False, "r2": True, "log_rmse": False, "loss": False, "macro_f1": True,
                    "perplexity": False, "bits_per_token": False}


def monitor_mode(monitor: str) -> str:
    """'max' when a larger value of the monitored metric is better, else 'min'."""
    metric = monitor
    for prefix in ("train_", "val_", "test_", "best_"):
        metric = metric.removeprefix(prefix)
    return "max" if HIGHER_IS_BETTER.get(metric, False) else "min"
