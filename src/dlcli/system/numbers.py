"""How numbers are printed: about 4 significant figures in tables and lines (files keep full precision).

Plain Python only: the CLI imports this before it knows whether it will need torch.
"""

from __future__ import annotations

import math
import numbers


def short(value) -> str:
    """A number as people read it: 0.01827, 0.9600, 146.9, 169,791, 4.163e+20, 1.827e-05; ints unchanged."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return str(value)
    if isinstance(value, numbers.Integral):
        return str(value)
    value = float(value)
    if not math.isfinite(value):
        return str(value)
    if value == 0:
        return "0"
    magnitude = math.floor(math.log10(abs(value)))
    if magnitude >= 6:  # a million and more (a diverging loss): 4.163e+20, not 27 digits of commas
        return f"{value:.3e}"
    if magnitude >= 4:  # 169,791: the digits above the 4th are worth keeping, the decimals are not
        return f"{value:,.0f}"
    if magnitude < -3:
        return f"{value:.3e}"
    return f"{value:.{max(0, 3 - magnitude)}f}"


def rounded(value):
    """A float rounded to 4 significant figures (for override text such as optim.lr=0.01827)."""
    if isinstance(value, bool) or not isinstance(value, float) or not math.isfinite(value) or value == 0:
        return value
    return float(f"{value:.4g}")


def setting(value) -> str:
    """A config value as typed: floats to 4 significant figures without padding (0.01827, 0.1, 1e-05),
    lists as [64, 256], None as null."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return format(value, ".4g")
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(setting(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {setting(v)}" for k, v in value.items()) + "}"
    return str(value)


def as_number(value):
    """A swept value as typed on the command line ('0.018268998599127650') as the number it is, so
    that it prints to 4 significant figures; any other text as it is."""
    if isinstance(value, str) and any(ch.isdigit() for ch in value) and not value.lstrip("-").isdigit():
        try:
            return float(value)
        except ValueError:
            return value
    return value
