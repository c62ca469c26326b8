"""What dl prints of a name or a received string cannot disguise itself (issue 33 item 22): control
and format characters (an escape sequence, a right-to-left override, a zero-width space), line
separators, private-use and unassigned code points are shown escaped by every console and every
plain line dl prints; --json keeps the exact string (JSON escapes it); --name refuses them."""

from __future__ import annotations

import json
import shutil

import pytest

from conftest import run_cli

DISGUISES = {"right-to-left override": "\u202e", "zero-width space": "\u200b", "escape sequence": "\x1b[2J",
             "line separator": "\u2028", "private use": "\ue000", "unassigned": "\U000e0fff", "bell": "\x07"}


@pytest.mark.parametrize("name", DISGUISES, ids=str)
def test_printable_escapes_every_disguise_and_keeps_plain_text(name):
    from dlcli.errors import printable, printable_lines

    text = f"a{DISGUISES[name]}b"
    shown = printable(text)
    assert shown.startswith("a") and shown.endswith("b") and shown.isascii() and shown.isprintable(), shown
    assert printable("plain text, é and 日本 stay") == "plain text, é and 日本 stay"
    assert printable_lines(f"one{DISGUISES[name]}\ntwo") == f"{printable('one' + DISGUISES[name])}\ntwo"


@pytest.mark.slow  # trains: over half a second in the fast lane
def test_a_received_runs_names_are_escaped_in_every_printed_line(workdir):
    assert run_cli("train", "data=iris", "trainer.epochs=1", "trainer.plots=false", "--name", "sent", "-q").exit_code == 0
    disguised = workdir / "runs" / "\u202eevil\x1b[2J"
    shutil.move(workdir / "runs" / "sent", disguised)
    run = next(disguised.iterdir())
    summary = json.loads((run / "summary.json").read_text())
    (run / "summary.json").write_text(json.dumps({**summary, "status": "failed", "message": "x\u200by"}))

    listed = run_cli("runs", "runs")
    assert listed.exit_code == 0, listed.output
    for raw in ("\u202e", "\x1b", "\u200b"):
        assert raw not in listed.output, repr(listed.output)
    assert "\\u202eevil" in listed.output and "\\x1b" in listed.output

    as_json = run_cli("runs", "runs", "--json")
    assert json.loads(as_json.stdout)[0]["run"].startswith("\u202eevil\x1b[2J/")  # the exact string, JSON-escaped

    quiet = run_cli("eval", str(run), "-q")
    assert quiet.exit_code == 0, quiet.output
    assert "\u202e" not in quiet.stdout and "\x1b" not in quiet.stdout and "\\u202eevil" in quiet.stdout


def test_a_run_line_through_the_reporter_is_escaped_on_screen_and_in_train_log(tmp_path):
    import io

    from rich.console import Console

    from dlcli.engine.progress import Reporter

    screen = io.StringIO()
    reporter = Reporter(Console(file=screen), show_progress=False)  # any console: the reporter escapes itself
    reporter.attach_log(tmp_path / "train.log")
    reporter.log("run runs/\u202eevil\nsecond line")
    reporter.log_file.close()
    for text in (screen.getvalue(), (tmp_path / "train.log").read_text()):
        assert "\u202e" not in text and "runs/\\u202eevil\nsecond line" in text
