"""Errors a user can cause. The CLI prints their message on one line and exits with code 2."""

import unicodedata

MAX_LINE = 300  # a message quotes at most this much of someone else's text (a 50 MB CSV header...)


def first_line(error: BaseException | str, default: str | None = None, limit: int = MAX_LINE) -> str:
    """The first non-empty line of an exception's message (or of a text), cut to `limit`
    characters: what a one-line error may quote. An empty message gives `default`, or the
    exception's type name."""
    text = str(error)
    line = next((line.strip() for line in text.splitlines() if line.strip()), "")
    if not line:
        return default if default is not None else (type(error).__name__ if isinstance(error, BaseException) else "")
    return line if len(line) <= limit else line[: limit - 1] + "…"


# control and format characters (a newline, an escape, a right-to-left override, a zero-width space), line and
# paragraph separators, surrogates, private-use and unassigned code points: nothing a name needs, all a disguise can use
UNPRINTABLE = ("Cc", "Cf", "Cs", "Zl", "Zp", "Co", "Cn")


def printable(text: str) -> str:
    """`text` with its control and format characters escaped (\\n, \\x1b, \\u202e): what dl prints
    of a message that quotes a user's value stays one line and cannot steer the terminal."""
    if all(" " <= c < "\x7f" for c in text):
        return text
    return "".join(c.encode("unicode_escape").decode("ascii") if unicodedata.category(c) in UNPRINTABLE else c for c in text)


def printable_lines(text: str) -> str:
    """`printable`, line by line: a text of several lines (a config shown as YAML, a run's opening
    lines) keeps them; within each, every control and format character is escaped."""
    return "\n".join(printable(line) for line in text.split("\n"))


class UserError(Exception):
    """Bad input: the message says what is wrong and what would be right, on one line: whatever
    user value it quotes has its control characters escaped here, once for every message."""

    exit_code = 2

    def __init__(self, message: str = ""):
        super().__init__(printable(str(message)))


class InputTooSmall(UserError):
    """A model cannot take images this small. The message ends where the fix goes: the caller
    knows whether the data can be resized (`hint`) and adds the override that works."""

    def __init__(self, message: str, smallest: int):
        super().__init__(message)
        self.smallest = smallest

    def with_hint(self, can_resize: bool) -> UserError:
        if can_resize:
            return UserError(f"{self}: set data.resize={self.smallest} (or larger)")
        return UserError(f"{self}: this data cannot be resized; use a model for small inputs (e.g. model=mlp) "
                         "or image data with larger pictures")


class RunFailed(Exception):
    """A run started but could not finish (e.g. the loss became NaN); it is marked failed."""

    exit_code = 1


class TrialPruned(Exception):
    """A sweep's pruner stopped this trial early: its run is marked pruned, not failed."""
