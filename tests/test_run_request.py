"""The run functions take one RunRequest: what it carries reaches the run (its directory, the
overrides it records, the facts its summary adds, whether it looks at the test split), and a
check it carries refuses the built experiment before runs/ is touched."""

from dataclasses import FrozenInstanceError, replace

import pytest
import yaml

from conftest import quiet_reporter, read
from dlcli.engine.progress import Reporter
from dlcli.errors import UserError
from dlcli.run.dispatch import train
from dlcli.run.request import RunRequest

TINY = ["data=iris", "trainer.epochs=1", "trainer.plots=false", "trainer.diagnostics=false"]  # 150 rows, one epoch


def test_a_request_trains_one_run_in_the_directory_it_names(workdir, fast):
    into = workdir / "chosen"
    into.mkdir()
    typed = [*TINY, "name=asked"]
    request = RunRequest(fast(*typed), typed, quiet_reporter(), run_dir=into,
                         evaluate_test=False, summary_facts={"asked_by": "test"})
    result = train(request)
    assert result.status == "completed" and result.run_dir == into
    summary = read(into / "summary.json")
    assert summary["asked_by"] == "test" and summary["epochs_completed"] == 1
    assert summary["test"] is None  # evaluate_test=False: the test split was never looked at
    assert yaml.safe_load((into / "overrides.yaml").read_text()) == typed
    assert not (workdir / "runs").exists()  # nothing besides the directory it was given


def test_a_requests_check_refuses_the_built_experiment_before_runs_is_touched(workdir, fast):
    def refuse(experiment) -> None:
        raise UserError(f"refused {experiment.data.name}")

    with pytest.raises(UserError, match="refused iris"):
        train(RunRequest(fast(*TINY), reporter=quiet_reporter(), check_experiment=refuse))
    assert not (workdir / "runs").exists()


def test_a_request_is_varied_by_replace_and_never_changed_in_place(fast):
    request = RunRequest(fast(*TINY))
    assert isinstance(request.reporter, Reporter)  # the console's, made for it
    fold = replace(request, run_dir="fold-1")
    assert fold.reporter is request.reporter and request.run_dir is None
    with pytest.raises(FrozenInstanceError):
        request.run_dir = "elsewhere"
