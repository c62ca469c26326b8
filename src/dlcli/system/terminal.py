"""The consoles dl prints through. Whatever they show, a run's name, a path, a cell of `dl runs`, a
table's title, passes through dlcli.errors.printable first: control and format characters (an
escape sequence, a newline, a right-to-left override, a zero-width space) are shown escaped
(\\x1b, \\n, \\u202e, \\u200b), so a name someone gave a run, or a file someone sent, can neither
steer the terminal nor make a line read other than it is. --json output keeps the exact strings
(JSON escapes them itself)."""

from __future__ import annotations

from rich.console import Console

from dlcli.errors import printable_lines


class SafeConsole(Console):
    """A Rich console whose every string (print's, a table's cells, headers and title, a progress
    bar's description) is made printable before Rich reads it, line by line: one place for all.
    (A table's cells are escaped where they are made too, so their widths count what is shown.)"""

    def render_str(self, text: str, **options):
        return super().render_str(printable_lines(text), **options)
