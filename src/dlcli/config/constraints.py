"""Constraints on settings, declared as data, with one validator and one message renderer.

Every setting of every component has a constraint: declared beside the component (`@constrained`
on dl's own classes and factories, `CONSTRAINTS` beside the schema of trainer/split/root), taken
from a table for the torch classes dl ships configs for (dlcli.config.library_constraints), or derived
from the parameter's annotation (bool, int, float, str, lists of them: dlcli.config.annotations). `problem(value)` says what
is wrong in words that complete "KEY=VALUE ..."; `render` writes the one line every error uses;
`valid_examples`/`invalid_examples` feed the property-based tests.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

from dlcli.errors import UserError, printable

MAX_SHOWN = 80  # characters of a bad value quoted in a message
FLOAT32_MAX = 3.4028234663852886e38  # real-valued settings end up as float32 factors


class Constraint:
    def problem(self, value) -> str | None:
        """None when `value` satisfies the constraint, else what it must be ("must be ...")."""
        raise NotImplementedError

    def describe(self) -> str:
        raise NotImplementedError

    def valid_examples(self) -> list:
        return []

    def invalid_examples(self) -> list:
        return []


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


@dataclass(frozen=True)
class Interval(Constraint):
    """A number (or a whole number) between `low` and `high` (None: unbounded); `closed` says which
    ends belong: both, left, right or neither."""

    low: float | None = None
    high: float | None = None
    closed: str = "both"
    integer: bool = False

    def problem(self, value):
        if _is_number(value) and not math.isfinite(value):
            return "must be a finite number"
        if not self.integer and _is_number(value) and abs(value) > FLOAT32_MAX:
            # settings become float32 tensors' factors (weight_decay=3.5e38 overflows inside the step)
            return f"must be a number of at most {FLOAT32_MAX:.3g} in size (the largest float32)"
        if self.integer and (not isinstance(value, int) or isinstance(value, bool)):
            return f"must be {self.describe()}"
        if not _is_number(value):
            return f"must be {self.describe()}"
        low_ok = self.low is None or value > self.low or (value == self.low and self.closed in ("both", "left"))
        high_ok = self.high is None or value < self.high or (value == self.high and self.closed in ("both", "right"))
        return None if low_ok and high_ok else f"must be {self._range()}"  # of the right kind: the range is what is wrong

    def _range(self) -> str:
        return self.describe().removeprefix("a whole number ").removeprefix("a number ").removeprefix("of ")

    def describe(self) -> str:
        kind = "a whole number" if self.integer else "a number"
        low, high = self.low, self.high
        if low is None and high is None:
            return kind
        if high is None:
            return f"{kind} {'of at least' if self.closed in ('both', 'left') else 'above'} {_num(low)}"
        if low is None:
            return f"{kind} {'of at most' if self.closed in ('both', 'right') else 'below'} {_num(high)}"
        left = "[" if self.closed in ("both", "left") else "("
        right = "]" if self.closed in ("both", "right") else ")"
        return f"{kind} in {left}{_num(low)}, {_num(high)}{right}"

    def valid_examples(self):
        low = self.low if self.low is not None else -10
        high = self.high if self.high is not None else low + 10
        inside = [v for v in (low, (low + high) / 2, high) if self.problem(int(v) if self.integer else v) is None]
        return [int(v) if self.integer else v for v in inside]

    def invalid_examples(self):
        out = ["x", True, [1], float("nan"), float("inf")]
        if self.low is not None:
            out += [self.low - 1, self.low - 1e-9 if not self.integer else self.low - 1]
            if self.closed in ("right", "neither"):
                out.append(int(self.low) if self.integer else self.low)
        if self.high is not None:
            out += [self.high + 1, 10**30]
            if self.closed in ("left", "neither"):
                out.append(int(self.high) if self.integer else self.high)
        if self.integer:
            out.append(0.5 + (self.low or 0))
        else:
            out.append(1e39)
        return [v for v in out if self.problem(v) is not None]


@dataclass(frozen=True)
class Options(Constraint):
    values: tuple

    def problem(self, value):
        ok = any(value == v and type(value) is type(v) for v in self.values)  # 1 is not True, "1" is not 1
        return None if ok else f"is not valid: choose one of {', '.join(show(v) for v in self.values)}"

    def describe(self) -> str:
        return show(self.values[0]) if len(self.values) == 1 else "one of " + ", ".join(show(v) for v in self.values)

    def valid_examples(self):
        return list(self.values)

    def invalid_examples(self):
        return [v for v in ("no_such_option", 12345, True, [self.values[0]] if self.values else []) if self.problem(v) is not None]


@dataclass(frozen=True)
class Boolean(Constraint):
    def problem(self, value):
        return None if isinstance(value, bool) else "must be true or false"

    def describe(self) -> str:
        return "true or false"

    def valid_examples(self):
        return [True, False]

    def invalid_examples(self):
        return ["maybe", 1, 0.5, [True]]


@dataclass(frozen=True)
class Text(Constraint):
    """A string; `plain_name`: one folder name (no '/', no leading '.', no control characters).
    `usual`: values it commonly takes, offered by TAB completion (any other text is still checked
    where it is used, as a device name is)."""

    non_empty: bool = False
    plain_name: bool = False
    max_length: int = 4096
    usual: tuple[str, ...] = ()

    def problem(self, value):
        if not isinstance(value, str):
            return f"must be {self.describe()}"
        if (self.non_empty or self.plain_name) and not value.strip():
            return f"must be {self.describe()}, not empty"
        if len(value) > self.max_length:
            return f"must be {self.describe()} of at most {self.max_length} characters"
        if any(ord(c) < 32 or ord(c) == 127 for c in value):
            return f"must be {self.describe()} without control characters (a newline, a tab)"
        if self.plain_name and ("/" in value or "\\" in value or value.startswith(".")):
            return f"must be {self.describe()} (no '/', not starting with '.')"
        if self.plain_name and printable(value) != value:
            # a name becomes a folder others list: a right-to-left override or a zero-width space there is a disguise
            return f"must be {self.describe()} without format characters (a right-to-left override, a zero-width space)"
        return None

    def describe(self) -> str:
        return "a plain name" if self.plain_name else "text"

    def valid_examples(self):
        return ["abc"]

    def invalid_examples(self):
        out = [12, ["a"], "a\nb"]
        if self.non_empty or self.plain_name:
            out.append("")
        if self.plain_name:
            out += ["a/b", ".hidden", "\u202eevil", "a\u200bb"]
        return out


@dataclass(frozen=True)
class ListOf(Constraint):
    """A list whose elements each meet `element`, with `min_length` to `max_length` of them."""

    element: Constraint
    min_length: int = 0
    max_length: int | None = None

    def problem(self, value):
        if not isinstance(value, (list, tuple)):
            if self.element.problem(value) is None:  # one value where a list belongs: say how to write it
                return f"must be {self.describe()}, e.g. [{show(value)}]"
            return f"must be {self.describe()}"
        if len(value) < self.min_length or (self.max_length is not None and len(value) > self.max_length):
            return f"must be {self.describe()}"
        for index, item in enumerate(value):
            inner = self.element.problem(item)
            if inner is not None:
                return f"must be {self.describe()}: element {index} ({show(item)}) {inner}"
        return None

    def describe(self) -> str:
        if self.max_length is not None and self.max_length == self.min_length:
            count = f"exactly {self.min_length}"
        elif self.max_length is not None:
            count = f"{self.min_length} to {self.max_length}"
        elif self.min_length:
            count = f"at least {self.min_length}"
        else:
            count = "any number of"
        return f"a list of {count} {_plural(self.element.describe())}"

    def valid_examples(self):
        items = self.element.valid_examples()[:1] or [None]
        return [items * max(self.min_length, 1)] if items[0] is not None else []

    def invalid_examples(self):
        out = ["x", 3]
        if self.min_length > 0:
            out.append([])
        if self.max_length is not None:
            good = self.element.valid_examples()[:1]
            if good:
                out.append(good * (self.max_length + 1))
        bad = self.element.invalid_examples()[:2]
        out += [[b] * max(self.min_length, 1) for b in bad]
        return [v for v in out if self.problem(v) is not None]


@dataclass(frozen=True)
class Positions(Constraint):
    """A list of fixed length whose elements each meet their own constraint, named: Rprop's etas are
    [decrease in (0, 1), increase above 1]."""

    items: tuple  # ((name, constraint), ...)

    def problem(self, value):
        if not isinstance(value, (list, tuple)) or len(value) != len(self.items):
            return f"must be {self.describe()}"
        for item, (name, constraint) in zip(value, self.items):
            inner = constraint.problem(item)
            if inner is not None:
                return f"must be {self.describe()}: its {name} {show(item)} {inner}"
        return None

    def describe(self) -> str:  # the names only: a broken element's message says what that one must be
        return "a list [" + ", ".join(name for name, _ in self.items) + "]"

    def valid_examples(self):
        firsts = [constraint.valid_examples()[:1] for _, constraint in self.items]
        return [[first[0] for first in firsts]] if all(firsts) else []

    def invalid_examples(self):
        good = self.valid_examples()
        out = ["x", 3, []]
        if good:
            out.append(good[0] * 2)
            for index, (_, constraint) in enumerate(self.items):
                for bad in constraint.invalid_examples()[:2]:
                    out.append([*good[0][:index], bad, *good[0][index + 1:]])
        return [v for v in out if self.problem(v) is not None]


@dataclass(frozen=True)
class AnyOf(Constraint):
    """Any of several constraints (None allowed with Nullable)."""

    options: tuple

    def problem(self, value):
        problems = [c.problem(value) for c in self.options]
        if any(p is None for p in problems):
            return None
        return f"must be {self.describe()}"

    def describe(self) -> str:
        return " or ".join(c.describe() for c in self.options)

    def valid_examples(self):
        return [v for c in self.options for v in c.valid_examples()]

    def invalid_examples(self):
        return [v for c in self.options for v in c.invalid_examples() if self.problem(v) is not None]


@dataclass(frozen=True)
class Null(Constraint):
    def problem(self, value):
        return None if value is None else "must be null"

    def describe(self) -> str:
        return "null"

    def valid_examples(self):
        return [None]


@dataclass(frozen=True)
class Anything(Constraint):
    """No constraint dl can state (a value the component checks itself, with its own message)."""

    def problem(self, value):
        return None

    def describe(self) -> str:
        return "any value"


def nullable(constraint: Constraint) -> Constraint:
    return AnyOf((Null(), constraint))


def without_null(constraint: Constraint) -> Constraint:
    """The constraint a given value must meet where null means "not given" (a command's option)."""
    if isinstance(constraint, AnyOf):
        rest = tuple(c for c in constraint.options if not isinstance(c, Null))
        return rest[0] if len(rest) == 1 else AnyOf(rest)
    return constraint


def one_of(*constraints: Constraint) -> Constraint:
    return AnyOf(tuple(constraints))


@dataclass(frozen=True)
class RunShare(Interval):
    """A share of the run, strictly between 0 and 1: a schedule's count of epochs (or batches)
    that the run turns into one from its own length (dlcli.engine.schedulers.resolve_run_shares)."""

    low: float | None = 0
    high: float | None = 1
    closed: str = "neither"

    def describe(self) -> str:
        return "a share of the run in (0, 1)"


# the common ones
POSITIVE_INT = Interval(1, None, integer=True)
NON_NEGATIVE_INT = Interval(0, None, integer=True)
POSITIVE = Interval(0, None, closed="neither")
NON_NEGATIVE = Interval(0, None)
PROBABILITY = Interval(0, 1)
RATE = Interval(0, 1, closed="left")  # dropout, label smoothing, momentum: 1 would stop learning
FRACTION = Interval(0, 1, closed="left")
RUN_SHARE = RunShare()
SEED = Interval(0, 2**32 - 1, integer=True)  # what numpy, scikit-learn and torch all accept
NUMBER = Interval()
INTEGER = Interval(integer=True)
BOOLEAN = Boolean()
TEXT = Text()


def constrained(**constraints: Constraint) -> Callable:
    """Declare the constraints of a class's (or factory's) settings beside it."""
    def declare(target):
        target.__constraints__ = {**getattr(target, "__constraints__", {}), **constraints}
        return target
    return declare


def check(key: str, value, constraint: Constraint) -> None:
    problem = constraint.problem(value)
    if problem is not None:
        raise UserError(render(key, value, problem))


def render(key: str, value, problem: str) -> str:
    """The one line every setting error reads as: KEY=VALUE what it must be."""
    return f"{key}={show(value)} {problem}"


def show(value) -> str:
    """A value as a user typed it: true/false, null, lists in brackets; control characters escaped
    and long values cut, so a message stays one line."""
    if isinstance(value, bool):
        text = str(value).lower()
    elif value is None:
        text = "null"
    elif isinstance(value, (list, tuple)):
        text = "[" + ",".join(show(v) for v in value) + "]"
    else:
        text = str(value)
    text = printable(text) if text else "''"  # (an empty value shown as '', not as nothing)
    return text if len(text) <= MAX_SHOWN else text[: MAX_SHOWN - 1] + "…"


def _plural(description: str) -> str:
    """'a number in [0, 1)' -> 'numbers in [0, 1)', for 'a list of 2 ...'."""
    for single, many in (("a list [", "lists ["), ("a whole number", "whole numbers"), ("a number", "numbers"), ("a plain name", "plain names"),
                         ("text", "texts"), ("true or false", "values true or false"), ("one of", "values among")):
        if description.startswith(single):
            return many + description[len(single):]
    return f"values ({description})"


def _num(value) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)
