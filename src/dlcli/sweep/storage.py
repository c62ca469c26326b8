"""A sweep's study in a database server (`--storage URL`, `dl sweep join URL`): the URL checked,
shown with its password masked, and opened as Optuna's RDBStorage with heartbeats.

The password never travels in a URL that dl keeps or passes on: it is taken out of the URL the
user typed into this process's environment (DL_STORAGE_PASSWORD, which a user may also set
instead of typing it; libpq's own PGPASSWORD and ~/.pgpass work too), so sweep.yaml, logs, a
trial's config and `dl runs` only ever see the URL without it, and the worker processes of
--jobs inherit it. Heartbeats: each worker records one per running trial every `heartbeat`
seconds; a trial silent for three of them is failed and retried once by another worker
(Optuna's RetryFailedTrialCallback).
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path

from dlcli.errors import UserError, first_line
from dlcli.sweep.kinds import quiet_optuna

PASSWORD_VARIABLE = "DL_STORAGE_PASSWORD"
DEFAULT_HEARTBEAT = 10  # seconds between a worker's signs of life; a trial silent for 3 of them is retried
STALE_AFTER = 3  # heartbeats missed before a trial counts as its worker's death
MOST_RETRIES = 1  # a trial whose worker died runs once more; a second death fails it for good
CONNECT_SECONDS = 10  # an unreachable server is one line after this long, not a hang
DRIVERS = {"postgresql": "psycopg", "mysql": "pymysql"}  # the dialect's default driver when the URL names none
EXAMPLE = "postgresql://USER@HOST:5432/DATABASE"


def is_database_url(text: str) -> bool:
    return "://" in str(text)


def make_url(url: str):
    """SQLAlchemy's parsed URL (imported here: `dl --help` reads this module's defaults without it)."""
    from sqlalchemy.engine import make_url as parse  # noqa: PLC0415  (dl --help runs without sqlalchemy)

    return parse(url)


def _ambiguous_credentials(url: str) -> bool:
    """More than one '@' before the host: a password's own '@' left unescaped. SQLAlchemy would
    split it at the first, taking the rest of the password for the user name (and print it)."""
    _, sep, rest = str(url).partition("://")
    return bool(sep) and rest.split("?", 1)[0].count("@") > 1


def _hidden_credentials(url: str) -> str:
    """The URL with everything between :// and the last '@' (where a user and password would be) hidden."""
    head, sep, rest = str(url).partition("://")
    return f"{head}{sep}***@{rest.rsplit('@', 1)[1]}" if sep and "@" in rest else str(url)


def _parsed(url: str):
    from sqlalchemy.exc import ArgumentError  # noqa: PLC0415  (dl --help runs without sqlalchemy)

    if _ambiguous_credentials(url):
        raise UserError(f"{_hidden_credentials(url)}: more than one '@' before the host: write a password's '@' as %40, "
                        f"or give the password in {PASSWORD_VARIABLE}")
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError):
        raise UserError(f"{masked(url)} is not a database URL: give one such as {EXAMPLE} "
                        f"(the password in {PASSWORD_VARIABLE})") from None
    if parsed.get_backend_name() not in (*DRIVERS, "sqlite"):
        raise UserError(f"{masked(url)}: dl keeps a study in PostgreSQL, MySQL or (one worker only) SQLite, "
                        f"not {parsed.get_backend_name()}: give a URL such as {EXAMPLE}")
    return parsed


def masked(url: str) -> str:
    """The URL as dl shows it: its password replaced by ***."""
    if _ambiguous_credentials(url):  # where the password ends cannot be told: hide user and password
        return _hidden_credentials(url)
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # not a URL at all: hide everything between :// and @, where a password would be
        return _hidden_credentials(url)


def without_password(url: str) -> str:
    """The URL dl keeps and passes on. Its password, if it had one, moves to this process's
    environment, where the workers it starts find it."""
    parsed = _parsed(url)
    if parsed.password:
        os.environ[PASSWORD_VARIABLE] = str(parsed.password)
    bare = parsed._replace(password=None)  # (URL.set(password=None) would keep it: None there means "unchanged")
    if parsed.get_backend_name() in DRIVERS and "+" not in parsed.drivername:  # SQLAlchemy's default would be psycopg2
        bare = bare.set(drivername=f"{parsed.get_backend_name()}+{DRIVERS[parsed.get_backend_name()]}")
    return bare.render_as_string(hide_password=False)


def check_workers(url: str, jobs: int) -> None:
    """SQLite locks the whole file for each write: several workers wait on it ("database is
    locked") and a file shared over NFS by several machines gets corrupted."""
    if _parsed(url).get_backend_name() == "sqlite" and jobs > 1:
        raise UserError(f"--storage {masked(url)} with --jobs {jobs}: SQLite allows one writer at a time and breaks when "
                        f"several workers share it; use a PostgreSQL or MySQL server ({EXAMPLE}), or leave --storage out "
                        "for the journal in the sweep directory")


_opened: dict = {}  # (url, heartbeat) -> storage: one engine (and its connections) per process, whatever opens it


def open_storage(url: str, heartbeat: int | None = DEFAULT_HEARTBEAT, checked: bool = False):
    """Optuna's RDBStorage for a URL without its password (the environment's is added here),
    with heartbeats and one retry of a trial whose worker died (heartbeat None: a trial reporting
    its epochs, which keeps no heartbeat). Creates Optuna's tables on first use and checks their
    version once per process (`checked`: a trial's process, whose worker has checked them)."""
    key = (url, heartbeat, os.getpid())  # a forked process opens its own: connections do not survive a fork
    if heartbeat is None:  # any of this process's will do (the worker's, for a trial trained in it)
        key = next((k for k in _opened if k[0] == url and k[2] == os.getpid()), key)
    if key not in _opened:
        checked = checked or any(k[0] == url and k[2] == os.getpid() for k in _opened)
        _opened[key] = _open(url, heartbeat, checked)
    return _opened[key]


def _with_password(url: str):
    """The parsed URL, with the environment's password where it gives none."""
    parsed = _parsed(url)
    password = os.environ.get(PASSWORD_VARIABLE)
    if password and not parsed.password and parsed.get_backend_name() != "sqlite":
        parsed = parsed.set(password=password)
    return parsed


def _engine_options(parsed) -> dict:
    engine: dict = {"pool_pre_ping": True}  # a connection the server dropped is replaced, not used
    if parsed.get_backend_name() in ("postgresql", "mysql"):
        engine["connect_args"] = {"connect_timeout": CONNECT_SECONDS}
    return engine


def holds_studies(url: str) -> bool:
    """Whether the database holds Optuna's tables, asked without creating anything (opening the
    storage creates them, and SQLite creates its file): a command that only reads a study (join,
    report, dl runs) leaves a database it was pointed at by mistake as it was."""
    from sqlalchemy import create_engine, inspect  # noqa: PLC0415  (dl --help runs without sqlalchemy)

    parsed = _with_password(url)
    if parsed.get_backend_name() == "sqlite" and not (parsed.database and Path(parsed.database).is_file()):
        return False
    with connection_errors(url):
        engine = create_engine(parsed, **_engine_options(parsed))
        try:
            return inspect(engine).has_table("studies")
        finally:
            engine.dispose()


def _open(url: str, heartbeat: int | None, checked: bool = False):
    optuna = quiet_optuna()
    parsed = _with_password(url)
    engine = _engine_options(parsed)
    with connection_errors(url):
        beats = {} if heartbeat is None else {"heartbeat_interval": heartbeat, "grace_period": STALE_AFTER * heartbeat,
                                              **_retry_once(optuna)}
        storage = optuna.storages.RDBStorage(parsed.render_as_string(hide_password=False), engine_kwargs=engine,
                                             skip_compatibility_check=checked, **beats)
    # the one cache of trials every Study of this process reads through (load_study would wrap the
    # storage in a cache of its own each time, and a trial taken through one is unknown to another)
    return optuna.storages.get_storage(storage)


def _retry_once(optuna) -> dict:
    """Optuna's callback that enqueues a trial whose worker died once more, by its name in this
    Optuna (renamed in 4.9, the old name deprecated)."""
    if hasattr(optuna.storages, "RetryHeartbeatStaleTrialCallback"):
        return {"heartbeat_stale_trial_callback": optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=MOST_RETRIES)}
    return {"failed_trial_callback": optuna.storages.RetryFailedTrialCallback(max_retry=MOST_RETRIES)}


@contextmanager
def connection_errors(url: str, doing: str = "reach"):
    """A database that cannot be reached, refuses the login or goes away is one line naming it
    (password masked): Optuna writes each change in one transaction, so what was written stays
    whole, and running the same command again carries on."""
    from optuna.exceptions import StorageInternalError  # noqa: PLC0415  (dl --help runs without optuna)
    from sqlalchemy.exc import SQLAlchemyError  # noqa: PLC0415  (dl --help runs without sqlalchemy)

    try:
        yield
    except ImportError as exc:
        raise UserError(f"--storage {masked(url)} needs its database driver ({exc.name or first_line(exc)}), an optional "
                        "extra: pip install -e \".[postgres]\" (or .[mysql])") from None
    except (SQLAlchemyError, StorageInternalError, OSError) as exc:  # Optuna wraps a failed commit in its own error
        cause = exc.__cause__ if isinstance(exc, StorageInternalError) and exc.__cause__ is not None else exc
        reason = first_line(_without_secrets(str(getattr(cause, "orig", None) or cause), url))
        again = "" if doing == "reach" else " (what the study holds is whole: run the same command again to carry on)"
        raise UserError(f"could not {doing} the study's database {masked(url)}: {reason}{again}") from None


def _without_secrets(text: str, url: str) -> str:
    """A driver's message with any password it quotes masked (some quote the connection string)."""
    secrets = [os.environ.get(PASSWORD_VARIABLE)]
    try:
        secrets.append(make_url(url).password)
    except Exception:
        pass
    for secret in filter(None, secrets):
        text = text.replace(str(secret), "***")
    return text
