"""The graceful-stop mechanism (dlcli.system.interrupts), in this process: what a first and a second
stop request do in each scope, that a critical section holds them, that every handler is put back,
and that no module but interrupts installs a signal handler. The processes it governs (a run, a
multi-process run, a sweep) are stopped for real in test_interrupt.py, test_closing.py,
test_distributed.py and test_hardening.py."""

import os
import re
import signal
import time
from pathlib import Path

import pytest

from dlcli.system import interrupts
from dlcli.system.interrupts import GracefulStop, StopRecord, ctrl_c_deferred, forwarded_to_workers

SRC = Path(__file__).parent.parent / "src" / "dlcli"
# installing or reading a signal handler, however the module spells it
HANDLER_CALL = re.compile(r"\bsignal\.(signal|getsignal|siginterrupt|set_wakeup_fd)\s*\(|\bfrom\s+signal\s+import\b")


def handler_calls(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if HANDLER_CALL.search(line)]


def test_signal_handlers_are_installed_in_interrupts_only():
    assert handler_calls("    signal.signal(signal.SIGINT, signal.SIG_IGN)\nfrom signal import signal\nsignal.getsignal (2)") == [
        "signal.signal(signal.SIGINT, signal.SIG_IGN)", "from signal import signal", "signal.getsignal (2)"]
    assert handler_calls((SRC / "system" / "interrupts.py").read_text())  # the scan sees the one place that does
    elsewhere = {str(path.relative_to(SRC)): calls for path in sorted(SRC.rglob("*.py"))
                 if path.name != "interrupts.py" and (calls := handler_calls(path.read_text()))}
    assert not elsewhere, f"signal handlers belong in dlcli.system.interrupts: {elsewhere}"


def press() -> None:
    signal.raise_signal(signal.SIGINT)  # Python runs the handler as this call returns


def test_a_first_request_is_recorded_and_announced_a_second_stops_at_once(capsys):
    before = signal.getsignal(signal.SIGINT)
    with GracefulStop("this epoch") as stop:
        assert not stop.requested
        press()
        assert stop.requested
        assert "Ctrl-C: finishing this epoch to keep it, then stopping (Ctrl-C again to stop at once)" in capsys.readouterr().err
        with pytest.raises(KeyboardInterrupt):
            press()
    assert signal.getsignal(signal.SIGINT) is before and not interrupts._scopes


def test_a_first_request_stops_at_once_when_waiting_would_keep_nothing(capsys):
    with GracefulStop("this epoch", can_wait=lambda: False) as stop, pytest.raises(KeyboardInterrupt):
        press()
    assert stop.count == 1 and capsys.readouterr().err == ""


def test_a_critical_section_holds_requests_and_the_first_then_acts_under_the_scope_outside(capsys):
    with GracefulStop(None) as stop:
        with ctrl_c_deferred():
            press()
            press()  # a second held: only the first acts when the section ends
            assert not stop.requested
        assert stop.count == 1
        with pytest.raises(KeyboardInterrupt), ctrl_c_deferred():
            press()  # a second request, held, escalates when the section ends
    assert capsys.readouterr().err == ""  # finishing=None: nothing said (a rank other than 0)


def test_outside_any_scope_a_held_ctrl_c_is_python_s_keyboard_interrupt_after_the_section():
    finished = []
    with pytest.raises(KeyboardInterrupt), ctrl_c_deferred():
        press()
        finished.append("the write")
    assert finished == ["the write"]


def test_a_graceful_stop_counts_what_a_record_received_before_it_and_passes_its_own_on():
    with StopRecord() as record:
        with GracefulStop(None) as stop:
            assert not stop.requested
            press()
        assert record.count == 1  # a pool worker learns of it: it takes no more trials
        with GracefulStop(None) as stop:
            assert stop.requested  # one before the fit: the first epoch is finished, then it stops
        press()
        with pytest.raises(KeyboardInterrupt), GracefulStop(None):  # two before the fit: at once
            pass
    assert not interrupts._scopes


def test_forwarding_without_workers_stops_and_puts_back_what_the_launcher_replaced():
    before = signal.getsignal(signal.SIGQUIT), signal.getsignal(signal.SIGINT)
    with pytest.raises(KeyboardInterrupt), forwarded_to_workers():
        signal.signal(signal.SIGQUIT, lambda signum, frame: None)  # what torch's launcher leaves behind
        press()
    assert (signal.getsignal(signal.SIGQUIT), signal.getsignal(signal.SIGINT)) == before


@pytest.mark.slow  # forks
def test_a_forked_child_never_runs_its_parent_s_handlers_and_a_pool_worker_records_ctrl_c():
    with GracefulStop("this epoch"):
        child = os.fork()
        if child == 0:  # the child: exits 0 only when every check holds
            ok = not interrupts._scopes and signal.getsignal(signal.SIGINT) is signal.default_int_handler
            stops = interrupts.pool_worker_stance()
            press()
            ok = ok and stops.requested and callable(signal.getsignal(signal.SIGTERM))
            os._exit(0 if ok else 1)
        _, status = os.waitpid(child, 0)
    assert os.waitstatus_to_exitcode(status) == 0


def test_a_pool_worker_ends_on_sigterm_between_trials_and_stops_gracefully_during_one():
    """Between trials there is nothing to keep (the pool ending a broken worker): SIGTERM ends the
    worker at once. During a trial (its run's GracefulStop) it is a stop request, as Ctrl-C is: a
    supervisor's SIGTERM to the whole group keeps the trial's finished epochs, and the worker takes
    no more trials."""
    idle = os.fork()
    if idle == 0:
        interrupts.pool_worker_stance()
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)
        os._exit(3)  # (not reached: the signal ended it)
    _, status = os.waitpid(idle, 0)
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGTERM
    busy = os.fork()
    if busy == 0:
        stops = interrupts.pool_worker_stance()
        with GracefulStop(None) as trial:
            os.kill(os.getpid(), signal.SIGTERM)
            ok = trial.requested and stops.requested
        os._exit(0 if ok else 1)
    _, status = os.waitpid(busy, 0)
    assert os.waitstatus_to_exitcode(status) == 0


class CtrlCAtOnePoint:
    """A sweep's slots (dlcli.sweep.backends.Slots) whose trials finish at once, with a Ctrl-C sent
    to this process at one point of the sweep's loop: just after a trial is handed over, or while
    a finished trial's record is reported. Wherever it lands, every trial handed over is reported,
    once."""

    def __init__(self, at: str):
        self.at, self.sent, self.handed = at, False, []

    def ctrl_c(self, point: str) -> None:
        if point == self.at and not self.sent:
            self.sent = True
            os.kill(os.getpid(), signal.SIGINT)  # Python's handler runs at the next bytecode, here

    def submit(self, spec):
        self.handed.append(spec)
        if len(self.handed) == 2:
            self.ctrl_c("handed over")
        return spec

    def wait_any(self, pending):
        return min(pending)

    def record(self, handle):
        return {"number": handle}

    def stop(self, pending):
        return [{"number": handle} for handle in sorted(pending)]


@pytest.mark.parametrize("at", ["handed over", "reported"])
def test_a_ctrl_c_anywhere_in_a_sweeps_loop_reports_every_trial_it_handed_over_once(at):
    from dlcli.sweep.backends import fill_wait_drain

    slots, reported = CtrlCAtOnePoint(at), []

    def on_result(record):
        reported.append(record["number"])
        slots.ctrl_c("reported")
        return True

    with pytest.raises(KeyboardInterrupt):
        fill_wait_drain(iter(range(10)), 2, slots, on_result)
    assert slots.sent and sorted(reported) == slots.handed  # none lost, none twice
