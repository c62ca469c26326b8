"""logger=mlflow: an MLflow run per dl run, in <runs_dir>/mlflow.db by default (artifacts in
<runs_dir>/mlartifacts/), nested under a sweep's or k-fold's parent run.

Resume continues the same MLflow run (epochs are sent only once last.pt holds them, so a resumed
run never sends an epoch twice). A local store must lie in the runs directory that holds the run
(dlcli.rundir.directory.runs_dir_holding: <runs_dir>/<name>/<timestamp>/ -> <runs_dir>), not in any folder
above it: a run or store copied from elsewhere records another machine's paths, a received config
may name any place, and dl writes nothing outside the runs directory (the logger says why and goes
off; training goes on).
"""

from __future__ import annotations

import json
import logging
import math
import time
from pathlib import Path
from urllib.parse import unquote, urlparse

from omegaconf import OmegaConf

from dlcli.system.files import write_text
from dlcli.rundir.directory import ARTIFACTS_DIR, git_commit, read_json, runs_dir_holding
from dlcli.tracking.base import ParentRun, RunLogger, final_numbers

MLFLOW_RECORD = "mlflow.json"  # in a run (or sweep, or k-fold parent): which MLflow run it is
MLFLOW_STATUS = {"completed": "FINISHED", "failed": "FAILED", "interrupted": "KILLED", "pruned": "KILLED"}


class MLflowLogger(RunLogger):
    """An MLflow run per dl run (nested under a sweep's or k-fold's parent run): the flattened
    config as params, each epoch's metrics with step = epoch, tags for the status, run directory and
    git commit, and config.yaml and summary.json as artifacts (pictures follow from dlcli.tracking.plots).
    The store is <runs dir that holds the run>/mlflow.db unless `tracking_uri` names another."""

    option = "mlflow"
    needs = "mlflow"

    def __init__(self, tracking_uri: str | None = None, experiment: str | None = None, parent_run_id: str | None = None):
        super().__init__()
        self.tracking_uri, self.experiment, self.parent_run_id = tracking_uri, experiment, parent_run_id
        self.client = self.run_id = None
        self.pending: list[dict] = []

    def start(self, session, state) -> None:
        from mlflow.entities import Param  # noqa: PLC0415  (optional extra: pip install dlcli[mlflow])

        record = self.run.run_dir / MLFLOW_RECORD
        if record.is_file():  # a resumed run continues its MLflow run, in the store it was made in
            self.client, self.run_id = recorded_mlflow_run(self.run.run_dir)
            self.client.update_run(self.run_id, status="RUNNING")
            return
        # a local store lives in the runs directory that holds this run, whoever wrote the config
        uri = self.tracking_uri or default_tracking_uri(self.run.run_dir)
        check_store_beside(uri, self.run.run_dir)
        self.client = mlflow_client(uri)
        experiment_id = experiment_id_for(self.client, self.experiment or str(self.run.cfg.name))
        check_artifacts_beside(self.client, experiment_id=experiment_id)
        tags = {"dl.run_dir": str(self.run.run_dir), "dl.status": "running"}
        if self.parent_run_id:
            tags["mlflow.parentRunId"] = str(self.parent_run_id)
        commit = git_commit()
        if commit:
            tags["mlflow.source.git.commit"] = commit
        created = self.client.create_run(experiment_id, run_name=run_label(self.run.run_dir), tags=tags)
        self.run_id = created.info.run_id
        write_text(record, json.dumps({"run_id": self.run_id, "tracking_uri": self.client.tracking_uri,
                                        "experiment_id": experiment_id}) + "\n")
        params = [Param(key, value[:6000]) for key, value in flat_params(self.run.cfg).items()]
        for start in range(0, len(params), 100):  # MLflow takes at most 100 params per call
            self.client.log_batch(self.run_id, params=params[start:start + 100])

    def epoch(self, state, row: dict) -> None:
        self.pending.append(row)
        saved = self.run.checkpointer.saved_state
        self._send(saved.epoch if saved is not None else 0)

    def fit_end(self, state, status: str) -> None:
        saved = self.run.checkpointer.saved_state
        # A run that did not complete may be resumed from last.pt, which retrains the epochs after
        # it: those are not sent now, so that MLflow never gets an epoch twice.
        self._send(math.inf if status == "completed" or saved is None else saved.epoch)

    def _send(self, up_to: float) -> None:
        from mlflow.entities import Metric  # noqa: PLC0415  (optional extra: pip install dlcli[mlflow])

        ready = [row for row in self.pending if row["epoch"] <= up_to]
        if not ready:
            return
        now = int(time.time() * 1000)
        metrics = [Metric(key, float(value), now, int(row["epoch"])) for row in ready for key, value in row.items() if key != "epoch"]
        for start in range(0, len(metrics), 1000):  # MLflow takes at most 1000 metrics per call
            self.client.log_batch(self.run_id, metrics=metrics[start:start + 1000])
        self.pending = [row for row in self.pending if row["epoch"] > up_to]

    def summarize(self, summary: dict) -> None:
        from mlflow.entities import Metric, RunTag  # noqa: PLC0415  (optional extra: pip install dlcli[mlflow])

        now, step = int(time.time() * 1000), int(summary.get("epochs_completed") or 0)
        self.client.log_batch(self.run_id, metrics=[Metric(k, v, now, step) for k, v in final_numbers(summary).items()],
                              tags=[RunTag("dl.status", str(summary.get("status")))])
        for name in ("config.yaml", "summary.json", "overrides.yaml"):
            if (self.run.run_dir / name).is_file():
                self.client.log_artifact(self.run_id, str(self.run.run_dir / name))
        self.client.set_terminated(self.run_id, status=MLFLOW_STATUS.get(summary.get("status"), "FAILED"))
        self.terminated = True

    def close(self) -> None:
        """A run whose logging failed half-way is still marked ended in MLflow, if MLflow answers."""
        if self.client is not None and self.run_id is not None and not getattr(self, "terminated", False):
            self.client.set_terminated(self.run_id, status="FAILED")

    @classmethod
    def log_pictures(cls, run_dir: Path, paths) -> None:
        """The pictures as artifacts of the run's MLflow run (the store beside the run, never one elsewhere)."""
        if not (run_dir / MLFLOW_RECORD).is_file():
            return
        client, run_id = recorded_mlflow_run(run_dir)
        for path in paths:
            client.log_artifact(run_id, str(path))

    @classmethod
    def open_parent(cls, directory: Path, node, cfg, kind: str, params: dict) -> ParentRun:
        """The sweep's or k-fold's own MLflow run, created once and recorded in <directory>/mlflow.json,
        reopened on resume; the trials' or folds' runs carry it as their parent."""
        client, run_id = _open_parent_run(directory, cfg, node, kind, params)

        def close(status: str, numbers: dict) -> None:
            from mlflow.entities import Metric, RunTag  # noqa: PLC0415  (optional extra: pip install dlcli[mlflow])

            now = int(time.time() * 1000)
            client.log_batch(run_id, metrics=[Metric(k, v, now, 0) for k, v in numbers.items()],
                             tags=[RunTag("dl.status", status)])
            client.set_terminated(run_id, status=MLFLOW_STATUS.get(status, "FAILED"))

        return ParentRun(cls.option, f"logger.{cls.option}.parent_run_id={run_id}", close)

    @classmethod
    def as_new_run(cls, node) -> None:
        """A run of its own (not a late child of the old run's parent), logging to the store of this
        command's runs_dir rather than a local store the saved file names (a server stays named)."""
        if "parent_run_id" in node:
            node.parent_run_id = None
        if node.get("tracking_uri") and _local_path(str(node.tracking_uri)) is not None:
            node.tracking_uri = None


def mlflow_client(tracking_uri: str):
    from mlflow.tracking import MlflowClient  # noqa: PLC0415  (optional extra: pip install dlcli[mlflow])

    for name in ("mlflow", "alembic"):  # their INFO lines (creating tables, ...) are not the user's business
        logging.getLogger(name).setLevel(logging.WARNING)
    return MlflowClient(tracking_uri)


def recorded_mlflow_run(directory: Path):
    """The MLflow client and run recorded in a run's (or a sweep's) mlflow.json, for a resume.

    A run directory may have been copied from another machine, or sent: its record then names a
    store elsewhere, whose runs keep artifacts at paths of that machine. dl writes nothing outside
    the runs directory, so a local store must be the one beside this run (an ancestor folder of it
    holds the store), and the MLflow run's artifacts must live beside that store; otherwise this
    says why logging cannot go on (the logger turns itself off and training goes on)."""
    record = read_json(directory / MLFLOW_RECORD)
    run_id, uri = (record.get("run_id"), record.get("tracking_uri")) if isinstance(record, dict) else (None, None)
    if not isinstance(run_id, str) or not isinstance(uri, str):
        raise ValueError(f"{directory / MLFLOW_RECORD} is damaged (no run_id and tracking_uri)")
    check_store_beside(uri, directory)
    client = mlflow_client(uri)
    check_artifacts_beside(client, run_id=run_id)
    return client, run_id


def check_store_beside(uri: str, directory: Path) -> Path | None:
    """A local MLflow store (its file, or a file store's folder) must lie directly in the runs
    directory that holds `directory` (where the default store runs/mlflow.db is), so that it and its
    mlartifacts/ beside it are inside that runs directory; a server is not a place on this disk
    (None). Otherwise why this run cannot log there: the store was copied from elsewhere, or a config
    names another place (any folder above the run, up to /), and dl writes nothing outside the runs
    directory."""
    store = _local_path(uri)
    if store is None:
        return None
    home = runs_dir_holding(directory)
    if home is None:
        raise ValueError(f"not inside a runs directory (<runs_dir>/<name>/<timestamp>/), {directory} has no place for the MLflow "
                         f"store {uri}: dl writes nothing outside the run, so this run is not logged to MLflow")
    if store.expanduser().resolve().parent != home:
        raise ValueError(f"copied from elsewhere or named by the config, the MLflow store {uri} is not in {home}, the runs directory "
                         "that holds the run: dl writes nothing outside it, so this run is not logged to MLflow (for a store "
                         "kept elsewhere, use an MLflow server)")
    return store


def check_artifacts_beside(client, run_id: str | None = None, experiment_id: str | None = None) -> None:
    """The artifacts of a run (or of an experiment's runs) in a local store must live beside the
    store: a store copied from another machine records that machine's paths."""
    store = _local_path(client.tracking_uri)
    if store is None:
        return
    location = client.get_run(run_id).info.artifact_uri if run_id else client.get_experiment(experiment_id).artifact_location
    artifacts = _local_path(location or "")
    if artifacts is not None and not _inside(artifacts.resolve(), store.resolve().parent):
        raise ValueError(f"the MLflow store {client.tracking_uri} keeps artifacts in {artifacts}, outside its own folder "
                         "(it was copied from elsewhere): dl writes nothing outside the runs directory, so this run is "
                         "not logged to MLflow")


def _local_path(uri: str) -> Path | None:
    """The file or folder a local MLflow store or artifact URI names; None for a server (http,
    databricks, postgresql, ...) or an in-memory database."""
    if not uri:
        return None
    parsed = urlparse(uri)
    scheme = parsed.scheme.lower()
    if scheme == "sqlite" or scheme.startswith("sqlite+"):  # sqlite:///relative.db, sqlite:////absolute.db, sqlite+driver:...
        path = uri.split(":", 1)[1].removeprefix("///")
        return None if path in ("", ":memory:") or path.startswith(":memory:") else Path(unquote(path.split("?", 1)[0]))
    if scheme == "file":
        return Path(unquote(parsed.path))
    if not scheme or len(scheme) == 1:  # a plain path (or a Windows drive letter)
        return Path(uri)
    return None


def _inside(path: Path, root: Path) -> bool:
    return path == root or root in path.parents


def default_tracking_uri(directory: Path) -> str:
    """The default store of a run, sweep or k-fold directory: mlflow.db in the runs directory that holds it."""
    home = runs_dir_holding(directory)
    if home is None:
        raise ValueError(f"not inside a runs directory (<runs_dir>/<name>/<timestamp>/), {directory} has no place for an MLflow "
                         "store: dl writes nothing outside the run, so this run is not logged to MLflow")
    return f"sqlite:///{home / 'mlflow.db'}"


def experiment_id_for(client, name: str) -> str:
    found = client.get_experiment_by_name(name)
    if found is not None:
        return found.experiment_id
    # With the default local store, artifacts live beside it (runs/mlartifacts/), not in ./mlruns
    # of whatever directory dl happened to run in; a server keeps its own artifact store.
    # (any sqlite URI: MLflow's own default for a database store is ./mlruns in the working directory)
    location = None
    store = _local_path(client.tracking_uri)
    if store is not None and client.tracking_uri.lower().startswith("sqlite"):
        location = (store.expanduser().resolve().parent / ARTIFACTS_DIR).as_uri()
    try:
        return client.create_experiment(name, artifact_location=location)
    except Exception:  # another process created it a moment ago
        return client.get_experiment_by_name(name).experiment_id


def run_label(run_dir: Path) -> str:
    """runs/train/2026-11-24_10-31-07 -> train/2026-11-24_10-31-07; trials/003 -> sweep/.../trials/003."""
    parts = run_dir.parts
    return "/".join(parts[-2:]) if parts[-2] not in ("trials",) else "/".join(parts[-4:])


def flat_params(cfg) -> dict[str, str]:
    params: dict[str, str] = {}

    def walk(node, prefix: str) -> None:
        for key, value in node.items():
            path = f"{prefix}{key}"
            if path.startswith("logger"):
                continue
            if isinstance(value, dict) and value:
                walk(value, path + ".")
            else:
                params[path] = json.dumps(value) if isinstance(value, (list, dict, bool)) or value is None else str(value)

    walk(OmegaConf.to_container(cfg, resolve=True), "")
    return params


def _open_parent_run(directory: Path, cfg, node, kind: str, params: dict) -> ParentRun:
    record = directory / MLFLOW_RECORD
    if record.is_file():
        client, run_id = recorded_mlflow_run(directory)
        client.update_run(run_id, status="RUNNING")
    else:
        uri = node.get("tracking_uri") or default_tracking_uri(directory)
        check_store_beside(uri, directory)
        client = mlflow_client(uri)
        experiment_id = experiment_id_for(client, node.get("experiment") or str(cfg.name))
        check_artifacts_beside(client, experiment_id=experiment_id)
        tags = {"dl.run_dir": str(directory), "dl.kind": kind, "dl.status": "running"}
        run_id = client.create_run(experiment_id, run_name=run_label(directory), tags=tags).info.run_id
        write_text(record, json.dumps({"run_id": run_id, "tracking_uri": client.tracking_uri, "experiment_id": experiment_id}) + "\n")
        from mlflow.entities import Param  # noqa: PLC0415  (optional extra: pip install dlcli[mlflow])

        client.log_batch(run_id, params=[Param(k, str(v)[:6000]) for k, v in params.items()])
    return client, run_id


