"""`dl` processes for the tests that stop, kill and watch them, forked from an interpreter that has
imported dl already (as dl forks its own workers from its fork server: dlcli.system.fork_server).

A test that sends a signal to `dl` needs a process of its own, and `python -m dlcli` spends about
4 CPU seconds importing torch, scikit-learn and dl before it does anything; the suite starts some
thirty of them on 2 cores. `start_dl` instead asks a server (one per pytest process, started on
first use, dying with it) to fork one: the child becomes what `python -m dlcli ARGS` would be, then
runs dl's entry point exactly as `-m` does, and ends as an interpreter ends (atexit, threads). What
it takes from the request: the arguments, the working directory, the whole environment, stdin,
stdout and stderr (passed as file descriptors), a session of its own or not; its import path is
rebuilt as `-m` builds it (the working directory first unless PYTHONSAFEPATH, then PYTHONPATH);
signal handlers and the signal mask are a fresh interpreter's. Where the environment differs from
the server's in a variable read only while a library loads (OMP_NUM_THREADS, CUDA_VISIBLE_DEVICES,
PYTHON*...), the process is started the usual way instead.

What still needs a fresh interpreter is tested with one: what `dl` imports from the folder it runs
in (test_received_runs.py), what a TAB or `dl --help` costs (test_completion.py, test_cli.py).
The handle returned is used as subprocess.Popen's: pid, poll, wait, communicate, send_signal,
kill, returncode, stdout/stderr pipes.
"""

from __future__ import annotations

import atexit
import gc
import importlib
import json
import os
import runpy
import select
import selectors
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

# what `dl train`, `dl sweep` and a multi-process run import before their first epoch
PRELOAD = ("dlcli.cli", "dlcli.run.dispatch", "dlcli.run.launch", "dlcli.sweep.backends", "dlcli.experiment",
           "dlcli.trained.evaluate", "dlcli.diagnostics", "sklearn.datasets", "sklearn.model_selection", "pandas", "torch._dynamo")
# read by the libraries only as they load: a request that differs here gets a fresh interpreter
LOAD_TIME = ("OMP_", "MKL_", "OPENBLAS_", "CUDA_", "LD_", "PYTHON", "NCCL_", "KMP_", "GOMP_")
HANDLED_HERE = ("PYTHONPATH", "PYTHONSAFEPATH")  # the child's import path is rebuilt from these
PIPE, DEVNULL = subprocess.PIPE, subprocess.DEVNULL


# -- the server ------------------------------------------------------------------------------------

def serve(address: str, parent: int) -> dict | None:
    """Fork a child per request until the parent goes; returns only in a child, with its request."""
    from dlcli.system.processes import die_with_parent

    die_with_parent(parent)
    base_path = _own_base_path()
    for name in PRELOAD:
        importlib.import_module(name)
    gc.freeze()  # what was imported stays shared with the children: their collections skip it (no copy on write)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    # bound under another name and renamed once listening: the tests wait for `address` to appear,
    # and a connect between bind (which makes the file) and listen was refused
    listener.bind(address + ".binding")
    listener.listen(64)
    os.rename(address + ".binding", address)
    wake_read, wake_write = os.pipe()
    os.set_blocking(wake_write, False)
    signal.set_wakeup_fd(wake_write)
    signal.signal(signal.SIGCHLD, lambda *_: None)  # (wakes the loop through the pipe)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a terminal's Ctrl-C is for the tests' processes
    selector = selectors.DefaultSelector()
    selector.register(listener, selectors.EVENT_READ)
    selector.register(wake_read, selectors.EVENT_READ)
    waiting: dict[int, socket.socket] = {}  # child pid -> the connection its exit status goes to
    while True:
        for key, _ in selector.select():
            if key.fileobj is wake_read:
                os.read(wake_read, 4096)
                _report_ended(waiting)
                continue
            connection, _ = listener.accept()
            message, fds, _, _ = socket.recv_fds(connection, 1 << 20, 3)
            request = json.loads(message)
            pid = os.fork()
            if pid == 0:
                selector.close()
                for fd in (listener.fileno(), wake_read, wake_write, *(c.fileno() for c in waiting.values())):
                    os.close(fd)
                signal.set_wakeup_fd(-1)
                request["fds"], request["base_path"] = fds, base_path
                os.close(connection.detach())
                return request
            for fd in fds:
                os.close(fd)
            connection.sendall(f"{pid}\n".encode())
            waiting[pid] = connection
            _report_ended(waiting)


def _report_ended(waiting: dict[int, socket.socket]) -> None:
    while waiting:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        connection = waiting.pop(pid, None)
        if connection is not None:
            try:
                connection.sendall(f"{os.waitstatus_to_exitcode(status)}\n".encode())
            except OSError:  # the test that asked has gone
                pass
            connection.close()


def become_dl(request: dict) -> None:
    """In the forked child: become `python -m dlcli ARGS` as the request describes it, and run it."""
    if request["new_session"]:
        os.setsid()
    for target, fd in enumerate(request["fds"]):
        os.dup2(fd, target)
    for fd in set(request["fds"]):
        if fd > 2:
            os.close(fd)
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    for signum in signal.valid_signals():
        if signum in (signal.SIGKILL, signal.SIGSTOP):
            continue
        try:
            signal.signal(signum, signal.SIG_DFL)
        except (OSError, ValueError):
            pass
    signal.signal(signal.SIGINT, signal.default_int_handler)  # as a fresh interpreter has them
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_SETMASK, [])
    sys.path[:] = _import_path(request["env"], request["base_path"])
    sys.argv = ["-m", *request["args"]]
    sys.stdin = open(0, closefd=False)  # noqa: SIM115  (the interpreter's own streams, on the new descriptors)
    sys.stdout = open(1, "w", closefd=False)  # noqa: SIM115
    sys.stderr = open(2, "w", closefd=False)  # noqa: SIM115
    runpy.run_module("dlcli", run_name="__main__", alter_sys=True)


def _import_path(env: dict, base: list[str]) -> list[str]:
    """sys.path as `python -m` builds it in the working directory of now: PYTHONPATH's entries (an
    empty one is the working directory), then the interpreter's own, each once; the working
    directory first unless PYTHONSAFEPATH."""
    given = [os.path.abspath(entry) if entry else os.getcwd() for entry in env["PYTHONPATH"].split(os.pathsep)] \
        if env.get("PYTHONPATH") else []
    path = list(dict.fromkeys([*given, *base]))
    return path if env.get("PYTHONSAFEPATH") else [os.getcwd(), *path]


def _own_base_path() -> list[str]:
    """This interpreter's import path without what `-c` and PYTHONPATH put there."""
    given = {os.path.abspath(entry) if entry else os.getcwd() for entry in os.environ.get("PYTHONPATH", "").split(os.pathsep)} \
        if os.environ.get("PYTHONPATH") else set()
    return [entry for entry in sys.path[1:] if entry and entry not in given and entry != str(Path(__file__).parent)]


# -- the tests' side ---------------------------------------------------------------------------------

_server: dict = {}


def start_dl(args, cwd, env=None, stdin=None, stdout=None, stderr=None, start_new_session=False, text=False):
    """`python -m dlcli ARGS` (a subprocess.Popen, or the same from the server: see the module doc)."""
    env = dict(os.environ if env is None else env)
    server = _ready_server()
    if server is None or _differs_at_load(env, server["env"]):
        return subprocess.Popen([sys.executable, "-m", "dlcli", *args], cwd=cwd, env=env, stdin=stdin, stdout=stdout,
                                stderr=stderr, start_new_session=start_new_session, text=text)
    return ForkedDl(server, [str(a) for a in args], str(cwd), env, stdin, stdout, stderr, start_new_session, text)


def _differs_at_load(env: dict, server_env: dict) -> bool:
    names = {n for n in (*env, *server_env) if n.startswith(LOAD_TIME) and n not in HANDLED_HERE}
    return any(env.get(n) != server_env.get(n) for n in names)


def _ready_server() -> dict | None:
    if _server.get("process") is not None and _server["process"].poll() is None:
        return _server
    if not sys.platform.startswith("linux"):
        return None
    folder = tempfile.mkdtemp(prefix="dl-forked-")
    address = os.path.join(folder, "server")
    env = {k: v for k, v in os.environ.items() if k != "PYTEST_CURRENT_TEST"}
    code = f"import sys; sys.path.append({str(Path(__file__).parent)!r}); import forked_dl; forked_dl.main()"
    process = subprocess.Popen([sys.executable, "-c", code, address, str(os.getpid())], env=env, stdin=DEVNULL,
                               stdout=DEVNULL, stderr=DEVNULL, start_new_session=True, cwd=folder)
    deadline = time.monotonic() + 120
    while not os.path.exists(address):
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            return None
        time.sleep(0.02)
    _server.update(process=process, address=address, env=env)
    atexit.register(process.kill)
    return _server


def main() -> None:
    address, parent = sys.argv[1], int(sys.argv[2])
    request = serve(address, parent)
    if request is not None:  # a forked child: it is `dl` from here on, and ends as an interpreter does
        become_dl(request)


class ForkedDl:
    """A forked `dl`, handled as subprocess.Popen handles a process."""

    def __init__(self, server, args, cwd, env, stdin, stdout, stderr, new_session, text):
        self.args, self.returncode, self.text = args, None, text
        self.stdin = self.stdout = self.stderr = None
        ours, theirs = [], []
        for index, given in enumerate((stdin, stdout, stderr)):
            fd = self._fd_for(index, given, ours, theirs)
            theirs.append(fd)
        self._connection = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._connection.connect(server["address"])
        request = {"args": args, "cwd": cwd, "env": env, "new_session": new_session}
        socket.send_fds(self._connection, [json.dumps(request).encode()], theirs)
        for fd in ours:
            os.close(fd)
        self._received = b""
        self.pid = int(self._line(None))

    def _line(self, timeout: float | None) -> str | None:
        """The server's next line (the pid, then the exit status), or None if none came in `timeout`."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while b"\n" not in self._received:
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                return None
            if not select.select([self._connection], [], [], left)[0]:
                return None
            chunk = self._connection.recv(4096)
            if not chunk:
                raise RuntimeError(f"the server forking dl processes ended before dl {' '.join(self.args)} did")
            self._received += chunk
        line, self._received = self._received.split(b"\n", 1)
        return line.decode()

    def _fd_for(self, index: int, given, ours: list, theirs: list) -> int:
        if given is None:
            return index  # this process's own
        if given == subprocess.STDOUT:
            return theirs[1]
        if given == DEVNULL:
            fd = os.open(os.devnull, os.O_RDWR)
            ours.append(fd)
            return fd
        if given == PIPE:
            read, write = os.pipe()
            mine, child = (write, read) if index == 0 else (read, write)
            ours.append(child)
            stream = os.fdopen(mine, ("w" if index == 0 else "r") + ("" if self.text else "b"))
            setattr(self, ("stdin", "stdout", "stderr")[index], stream)
            return child
        return given if isinstance(given, int) else given.fileno()

    def poll(self):
        if self.returncode is None:
            line = self._line(0)
            if line is not None:
                self.returncode = int(line)
                self._connection.close()
        return self.returncode

    def wait(self, timeout=None):
        if self.returncode is None:
            line = self._line(timeout)
            if line is None:
                raise subprocess.TimeoutExpired(self.args, timeout)
            self.returncode = int(line)
            self._connection.close()
        return self.returncode

    def communicate(self, timeout=None):
        outputs = {}

        def drain(name: str) -> None:
            outputs[name] = getattr(self, name).read()

        readers = [threading.Thread(target=drain, args=(name,), daemon=True) for name in ("stdout", "stderr") if getattr(self, name)]
        for reader in readers:
            reader.start()
        deadline = None if timeout is None else time.monotonic() + timeout
        for reader in readers:
            reader.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
            if reader.is_alive():
                raise subprocess.TimeoutExpired(self.args, timeout)
        self.wait(None if deadline is None else max(0.01, deadline - time.monotonic()))
        for name in ("stdout", "stderr"):
            if getattr(self, name):
                getattr(self, name).close()
        return outputs.get("stdout"), outputs.get("stderr")

    def send_signal(self, signum: int) -> None:
        if self.poll() is None:
            try:
                os.kill(self.pid, signum)
            except ProcessLookupError:  # it ended and the server reaped it; its status is on the way
                pass

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        for stream in (self.stdin, self.stdout, self.stderr):
            if stream:
                stream.close()
        self.wait()


def run_dl(args, cwd, env=None, timeout=None, text=True) -> subprocess.CompletedProcess:
    """`python -m dlcli ARGS` run to its end, its output captured (subprocess.run's answer)."""
    process = start_dl(args, cwd, env=env, stdout=PIPE, stderr=PIPE, text=text)
    try:
        out, err = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        raise
    return subprocess.CompletedProcess(["dl", *map(str, args)], process.returncode, out, err)
