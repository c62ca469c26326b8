"""The models a sequence finding suggests, without the one the run already has (a suggestion to try
the model in use is no suggestion)."""

from __future__ import annotations

from dlcli.config.compose import option_name


def other_models(config: dict | None, *names: str) -> str:
    """`model=a, b or c` of `names`, less the run's own model option."""
    node = (config or {}).get("model")
    current = option_name("model", node) if isinstance(node, dict) else None
    left = [name for name in names if name != current]
    return "model=" + (", ".join(left[:-1]) + " or " + left[-1] if len(left) > 1 else left[0])
