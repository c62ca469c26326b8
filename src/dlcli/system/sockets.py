"""Where multiprocessing binds the Unix sockets its processes hand file descriptors over.

A DataLoader worker hands each batch's shared memory to the main process as a file descriptor
(torch's default sharing strategy on Linux), over a Unix socket that multiprocessing binds in its
folder `$TMPDIR/pymp-XXXXXXXX/`. A socket's path must fit in `sockaddr_un.sun_path` (108 bytes on
Linux, 104 on macOS and the BSDs, the closing NUL included). Under a TMPDIR longer than about 75
characters (a cluster job's scratch folder, pytest's tmp_path under xdist) the worker cannot bind
it: the batch is dropped in its queue's background thread, with only a traceback on stderr
("OSError: AF_UNIX path too long"), and the main process waits for it forever, its workers idle.
Python 3.14 falls back to the system's temporary folder there itself (cpython gh-132124); this does
the same for the Pythons before it.
"""

from __future__ import annotations

import os
import sys
import tempfile
from multiprocessing import util

from dlcli.errors import UserError

# bytes of sockaddr_un.sun_path, the closing NUL included
SUN_PATH_MAX = 104 if sys.platform == "darwin" or "bsd" in sys.platform else 108
# what multiprocessing adds to the temporary folder: its own folder, then the socket's name
FOLDER_NAME, SOCKET_NAME = len("/pymp-XXXXXXXX"), len("/listener-XXXXXXXX")
SYSTEM_TEMP_DIRS = ("/tmp", "/var/tmp", "/usr/tmp")  # POSIX's, where TMPDIR is not followed


def make_worker_sockets_fit() -> None:
    """Give this process's multiprocessing folder a path short enough for a socket: called before
    a DataLoader starts its workers, which inherit the folder (made once per process, removed when
    it ends). Under a TMPDIR too long for that, the folder is made in the system's temporary folder."""
    if os.name == "nt":
        return  # Windows' processes talk over named pipes
    saved = tempfile.tempdir
    if not _fits(tempfile.gettempdir(), FOLDER_NAME + SOCKET_NAME):
        tempfile.tempdir = _system_temp_dir() or saved
    try:
        folder = util.get_temp_dir()  # the folder already made, when there is one
    finally:
        tempfile.tempdir = saved
    if not _fits(folder, SOCKET_NAME):
        raise UserError(f"the temporary folder {folder} is too long for the sockets DataLoader workers hand batches over "
                        f"(a socket's path may have at most {SUN_PATH_MAX - 1} characters), and none of "
                        f"{', '.join(SYSTEM_TEMP_DIRS)} is writable: set TMPDIR to a shorter folder, or data.num_workers=0")


def _fits(folder: str, added: int) -> bool:
    return len(os.fsencode(folder)) + added < SUN_PATH_MAX


def _system_temp_dir() -> str | None:
    """The first writable one of the system's temporary folders, if any."""
    return next((d for d in SYSTEM_TEMP_DIRS if os.path.isdir(d) and os.access(d, os.W_OK | os.X_OK)), None)
