"""TAB completion (issue 36): what each kind of word is offered, the index rebuilt when a config
changes, the shells' scripts and their installation, and a TAB answered without the CLI framework.

Most tests call the completion in-process with the words typed (as the shells' scripts pass
them); the slow ones drive the real entry point from bash, zsh and fish where they are installed.
"""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from dlcli.cli import app
from dlcli.cli.completion import build_index, describe, with_shell_named
from dlcli.completion import complete, index
from dlcli.completion.complete import answer, candidates, configs_of, rendered
from dlcli.completion.shells import install, script
from dlcli.sweep.kinds import KINDS

CONF = Path(__file__).resolve().parents[1] / "conf"
BIN = str(Path(sys.executable).parent)  # where the `dl` script is: the shells' scripts run `dl`


@pytest.fixture(scope="module")
def tree():
    return describe(typer.main.get_command(app))


def offered(tree, line: str, described: bool = False) -> dict[str, str]:
    """What a TAB after `line` offers (value -> description), as the shells ask for it."""
    words = line.split()[1:] + ([""] if line.endswith(" ") else [])
    return dict(candidates(words, tree, configs_of, described=described))


def test_commands_subcommands_and_options_come_from_the_cli(tree, workdir):
    assert list(offered(tree, "dl tr")) == ["train"]
    assert set(offered(tree, "dl ")) >= {"train", "eval", "predict", "export", "inspect", "diagnose", "runs", "sweep",
                                           "lr-find", "param-count", "conv-shape", "cache"}
    assert set(KINDS) <= set(offered(tree, "dl sweep "))
    assert list(offered(tree, "dl sweep grid --prune ")) == ["none", "median", "asha", "hyperband"]  # declared choices
    assert list(offered(tree, "dl sweep tpe --prune=h")) == ["--prune=hyperband"]
    assert set(offered(tree, "dl eval --split ")) == {"test", "val", "train"}
    assert set(offered(tree, "dl --install-completion ")) == {"bash", "zsh", "fish"}
    assert offered(tree, "dl train --q") == {"--quiet": offered(tree, "dl train --q")["--quiet"]}
    assert "--build-completion-index" not in offered(tree, "dl --")  # hidden
    assert offered(tree, "dl eval run --json ") == {}  # eval takes one run, and it is given


def test_groups_options_keys_defaults_and_declared_choices(tree, workdir):
    models = offered(tree, "dl train model=", described=True)
    assert set(models) == {f"model={path.stem}" for path in (CONF / "model").glob("*.yaml")}
    assert models["model=lenet"].startswith("LeNet-5")  # the option file's first comment
    assert models["model=mlp"].startswith("(default)")
    assert list(offered(tree, "dl train model=le")) == ["model=lenet"]
    assert set(offered(tree, "dl train experiment=")) == {f"experiment={p.stem}" for p in (CONF / "experiment").glob("*.yaml")}
    heads = offered(tree, "dl train ", described=True)
    assert heads["model="] == "default mlp" and heads["seed="] == "default 0" and "trainer." in heads
    assert offered(tree, "dl train optim=adam optim.l", described=True) == {"optim.lr=": "default 0.001", "optim.l1=": "default 0.0"}
    assert offered(tree, "dl train optim.lr=", described=True) == {"optim.lr=0.03": "default"}  # sgd's
    assert offered(tree, "dl train experiment=lenet_fashion model.act", described=True) == {"model.activation=": "default sigmoid"}
    assert list(offered(tree, "dl train trainer.precision=")) == ["trainer.precision=32", "trainer.precision=bf16", "trainer.precision=16"]
    assert list(offered(tree, "dl train data.cache=")) == ["data.cache=auto", "data.cache=memory", "data.cache=none"]  # own_settings.GROUPS
    assert set(offered(tree, "dl train trainer.amp=")) == {"trainer.amp=true", "trainer.amp=false"}
    assert "+data.standardize_target=" in offered(tree, "dl train +data.st")  # a setting dl reads, added with +
    assert "~model.hidden" in offered(tree, "dl train ~model.h")
    assert "trainer.devices=" in offered(tree, "dl param-count trainer.dev")  # a schema key


def test_local_conf_is_offered_and_the_index_rebuilt_when_a_config_changes(tree, workdir):
    (workdir / "conf" / "model").mkdir(parents=True)
    (workdir / "conf" / "model" / "mine.yaml").write_text("# my own net\n_target_: torch.nn.Identity\nwidth: 3\n")
    assert offered(tree, "dl train model=mi", described=True) == {"model=mine": "[./conf] my own net"}
    assert offered(tree, "dl train model=mine model.w", described=True) == {"model.width=": "default 3"}
    (workdir / "conf" / "model" / "minor.yaml").write_text("_target_: torch.nn.Identity\n")
    assert set(offered(tree, "dl train model=mi")) == {"model=mine", "model=minor"}  # at the next TAB
    other = workdir / "elsewhere"
    (other / "conf" / "data").mkdir(parents=True)
    (other / "conf" / "data" / "theirs.yaml").write_text("_target_: x.Y\n")
    os.chdir(other)  # another directory, its own ./conf and its own index
    assert list(offered(tree, "dl train data=the")) == ["data=theirs"] and offered(tree, "dl train model=mi") == {}
    assert list(offered(tree, f"dl train --config-dir {workdir / 'conf'} model=mi")) == ["model=mine", "model=minor"]
    indexes = list((index.index_dir()).glob("configs-*.json"))
    assert len(indexes) == 3
    for path in indexes:
        path.write_text("{not json")  # corrupt: read as missing, and rebuilt
    assert list(offered(tree, "dl train data=the")) == ["data=theirs"]


def test_run_and_sweep_directories_are_offered(tree, workdir):
    run = workdir / "runs" / "train" / "2026-01-01_10-00-00"
    run.mkdir(parents=True)
    (run / "config.yaml").write_text("seed: 0\n")
    (run / "summary.json").write_text("{}")
    sweep = workdir / "runs" / "sweeps" / "grid-1"
    (sweep / "trials").mkdir(parents=True)
    (sweep / "sweep.yaml").write_text("kind: grid\n")
    (workdir / "runs" / "notes.txt").write_text("")
    assert list(offered(tree, "dl eval r")) == ["runs/"]
    assert offered(tree, "dl eval runs/", described=True) == {"runs/sweeps/": "", "runs/train/": ""}  # folders only
    assert offered(tree, "dl inspect runs/train/", described=True) == {f"{run.relative_to(workdir)}/": "run directory"}
    assert offered(tree, "dl diagnose runs/sweeps/", described=True) == {"runs/sweeps/grid-1/": "sweep directory"}
    for line in ("dl train resume=runs/train/", "dl train refit=runs/train/"):
        key = line.split()[-1].split("=")[0]
        assert list(offered(tree, line)) == [f"{key}=runs/train/{run.name}/"]
    assert list(offered(tree, "dl sweep tpe --resume runs/sw")) == ["runs/sweeps/"]
    assert list(offered(tree, "dl runs ")) == ["diff", "runs/"]  # the word that makes `dl runs` a diff, and folders
    assert list(offered(tree, f"dl runs diff {run.relative_to(workdir)} runs/t")) == ["runs/train/"]
    assert "runs/notes.txt" in offered(tree, "dl predict runs/train/x runs/n")  # predict's input: any path


def test_each_shell_reads_its_own_lines():
    found = [("model=lenet", "LeNet-5"), ("model=mlp", "")]
    assert rendered("bash", found, "model=") == "lenet\nmlp\n"  # readline replaces the text after the last '='
    assert rendered("bash", [("--device=cuda:0", "")], "--device=cuda:") == "0\n"  # and after ':'
    assert rendered("bash", [("--device=cuda:0", "")], "--device=cuda:", " \t\n") == "--device=cuda:0\n"  # (COMP_WORDBREAKS changed)
    assert rendered("zsh", found, "model=") == "model=lenet\tLeNet-5\nmodel=mlp\n"
    assert rendered("fish", [("a", "x\ny\tz")], "") == "a\tx y z\n"  # one line each


def test_a_missing_or_corrupt_commands_index_prints_nothing_and_is_rebuilt_in_the_background(workdir, monkeypatch):
    started = []
    monkeypatch.setattr(index, "rebuild_in_background", lambda: started.append(True))
    bash = {"COMP_LINE": "dl tr", "COMP_POINT": "5"}
    assert answer("bash", ["dl"], bash) == "" and started == [True]  # no index yet
    index.index_dir().mkdir(parents=True, exist_ok=True)
    (index.index_dir() / index.COMMANDS).write_text("\x00garbage")
    assert answer("bash", ["dl"], bash) == "" and len(started) == 2
    build_index(typer.main.get_command(app))
    assert answer("bash", ["dl"], bash) == "train\n" and len(started) == 2  # fresh: nothing started
    assert answer("zsh", ["dl", "dl", "train", "model=le"], {}).startswith("model=lenet\tLeNet-5")
    assert answer("tcsh", ["dl", "dl", "t"], {}) == ""
    written = json.loads((index.index_dir() / index.COMMANDS).read_text())
    written["stamp"] = ["0.0.0", 0, 0]  # another dl's: still answered from, and rebuilt
    (index.index_dir() / index.COMMANDS).write_text(json.dumps(written))
    assert answer("bash", ["dl"], bash) == "train\n" and len(started) == 3


def test_a_cache_that_cannot_be_written_keeps_the_index_in_a_private_temporary_folder(tree, workdir, monkeypatch):
    """Without an index no TAB answers at all: where dl's cache directory cannot be written, the
    index lives in a folder of this user's own in the temporary directory, never in one another
    user made or can write."""
    blocked = workdir / "file"
    blocked.write_text("")
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocked))  # (a file: nothing can be made under it, even as root)
    monkeypatch.setenv("TMPDIR", str(workdir / "tmp"))
    private = workdir / "tmp" / f"dl-completion-{os.getuid()}"
    assert index.index_dir() == private and private.stat().st_mode & 0o777 == 0o700
    assert list(offered(tree, "dl train model=le")) == ["model=lenet"]
    build_index(typer.main.get_command(app))  # what the background build does
    assert answer("bash", ["dl"], {"COMP_LINE": "dl tr", "COMP_POINT": "5"}) == "train\n"
    assert not (blocked / "dl").exists()

    shared = workdir / "shared" / f"dl-completion-{os.getuid()}"
    shared.mkdir(parents=True)
    shared.chmod(0o777)  # anyone could have written its index
    monkeypatch.setenv("TMPDIR", str(workdir / "shared"))
    assert index.index_dir() == blocked / "dl" / "completion"  # not used: no index, and nothing raised
    index.rebuild_in_background()  # cannot take its lock: starts nothing, raises nothing
    assert list(shared.iterdir()) == []


def test_a_fifo_a_dangling_link_or_a_huge_folder_never_stops_a_tab(tree, workdir):
    """A FIFO named like an option would block the TAB that reads it; a dangling link must not hide
    the options added beside it; in a folder of thousands, the entries that match are offered."""
    (workdir / "conf" / "model").mkdir(parents=True)
    os.mkfifo(workdir / "conf" / "model" / "pipe.yaml")
    (workdir / "conf" / "model" / "dangling.yaml").symlink_to("nowhere.yaml")
    assert "model=mine" not in offered(tree, "dl train model=")
    (workdir / "conf" / "model" / "mine.yaml").write_text("# my own\n_target_: dlcli.models.mlp.MLP\n")
    assert list(offered(tree, "dl train model=mi")) == ["model=mine"]
    many = workdir / "many"
    for number in range(1500):
        (many / f"r{number:04d}").mkdir(parents=True)
    assert list(offered(tree, "dl eval many/r1499")) == ["many/r1499/"]


def test_bash_gets_names_escaped_so_a_folder_name_never_runs(workdir):
    """readline inserts what the script gives it as typed text: `$(touch X)` would run and `my run`
    split in two, so bash's candidates are escaped, and an escaped word is read back as one."""
    (workdir / "runs" / "$(touch PWNED)").mkdir(parents=True)
    (workdir / "runs" / "my run").mkdir()
    shown = rendered("bash", complete.folder_entries("runs/", described=False, directories_only=True), "runs/")
    assert shown.splitlines() == ["runs/\\$\\(touch\\ PWNED\\)/", "runs/my\\ run/"]
    words = complete.typed_words("bash", ["dl"], {"COMP_LINE": "dl eval runs/my\\ r", "COMP_POINT": "18"})
    assert words == ["eval", "runs/my r"]
    assert rendered("bash", [("model=lenet", "")], "model=le") == "lenet\n"  # plain values are as they were


def test_device_names_are_offered_where_a_device_is_given(tree, workdir):
    assert list(offered(tree, "dl train trainer.device=c")) == ["trainer.device=cpu", "trainer.device=cuda", "trainer.device=cuda:0"]
    for command in ("train", "eval run", "predict run"):
        assert list(offered(tree, f"dl {command} --device ")) == ["auto", "cpu", "cuda", "cuda:0", "mps"], command


def test_install_keeps_a_startup_file_that_is_not_utf8_and_quotes_a_home_the_shell_would_expand(workdir):
    home = workdir / 'odd "$HOME" home'
    home.mkdir()
    (home / ".bashrc").write_bytes(b"\xff\xfe not utf-8\n")
    install("bash", {"HOME": str(home)})
    written = (home / ".bashrc").read_bytes()
    assert written.startswith(b"\xff\xfe not utf-8\n") and written.count(b"dl --install-completion") == 1
    line = written.decode("utf-8", "replace").splitlines()[-1]
    assert subprocess.run(["bash", "-n", "-c", line], capture_output=True).returncode == 0  # the shell parses it
    assert f"'{home}/.local/share/dl/completion.bash'" in line


def test_install_writes_where_each_shell_looks_once(workdir, monkeypatch):
    home = workdir / "home"
    home.mkdir()
    environ = {"HOME": str(home)}
    first = install("bash", environ)
    assert first == ("wrote ~/.local/share/dl/completion.bash and added a line to ~/.bashrc that loads it: "
                     "open a new shell, or run `. ~/.bashrc`")
    assert "kept the line" in install("bash", environ)
    rc = (home / ".bashrc").read_text()
    assert rc.count("completion.bash") == 2 and len(rc.splitlines()) == 1  # one line, naming the file twice ([ -f F ] && . F)
    assert (home / ".local/share/dl/completion.bash").read_text() == script("bash")
    install("zsh", {**environ, "XDG_DATA_HOME": str(workdir / "data")})
    assert (workdir / "data/dl/zsh/_dl").read_text().startswith("#compdef dl")
    assert (home / ".zshrc").read_text().count("dl/zsh/_dl") == 1
    assert install("fish", environ) == "wrote ~/.config/fish/completions/dl.fish: new fish sessions complete dl (this one too, from its next dl TAB)"
    assert 'complete -c dl -f -a "(__dl_complete)"' in (home / ".config/fish/completions/dl.fish").read_text()


def test_completion_options_name_the_shell_or_take_shells(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path))
    runner = CliRunner()
    shown = runner.invoke(app, ["--show-completion", "zsh"])
    assert shown.exit_code == 0 and shown.output == script("zsh")
    assert "compdef _dl dl" in shown.output and "_describe" in shown.output
    bash = script("bash")
    assert "complete -F _dl_completion dl" in bash and "COMP_WORDBREAKS" in bash and "_DL_COMPLETE=bash" in bash
    monkeypatch.setenv("SHELL", "/usr/bin/fish")
    assert runner.invoke(app, with_shell_named(["--show-completion"])).output == script("fish")
    assert with_shell_named(["--install-completion", "-h"]) == ["--install-completion", "", "-h"]
    assert with_shell_named(["train", "--show-completion"]) == ["train", "--show-completion"]  # (a command's words)
    bad = runner.invoke(app, ["--install-completion", "tcsh"])
    assert bad.exit_code == 2 and bad.output.strip() == "error: --install-completion tcsh: choose one of bash, zsh, fish"
    monkeypatch.setenv("SHELL", "/bin/tcsh")
    unknown = runner.invoke(app, with_shell_named(["--install-completion"]))
    assert unknown.exit_code == 2 and len(unknown.output.strip().splitlines()) == 1 and "$SHELL (/bin/tcsh)" in unknown.output
    assert not (tmp_path / ".bashrc").exists()


def tab_environment(home: Path) -> dict:
    return {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "HOME": str(home)}


@pytest.mark.slow
def test_a_tab_imports_no_framework_and_answers_in_bash(workdir):
    """The real entry point, as a shell starts it: nothing of typer, click, torch, Hydra or
    OmegaConf in the process, and bash's script completing from COMP_WORDS."""
    environment = tab_environment(workdir)
    build_index(typer.main.get_command(app))  # (what `dl --build-completion-index` writes, here: this process's cache is inherited)
    probe = ("import sys, runpy; sys.argv = ['dl', 'dl', 'train', 'model=le']; runpy.run_module('dlcli', run_name='__main__'); "
             "print(sorted({m.split('.')[0] for m in sys.modules} & {'typer', 'click', 'torch', 'hydra', 'omegaconf', 'rich', 'yaml'}))")
    out = subprocess.run([sys.executable, "-c", probe], env={**environment, "_DL_COMPLETE": "zsh"}, capture_output=True, text=True)
    assert out.stdout.splitlines() == ["model=lenet\tLeNet-5: conv 6@5x5 pad 2, pool, conv 16@5x5, pool, fc 120, fc 84, fc classes.", "[]"], out.stderr
    if shutil.which("bash") is None:
        pytest.skip("no bash here")
    (workdir / "runs" / "train").mkdir(parents=True)
    (workdir / "completion.bash").write_text(script("bash"))
    driver = r"""
source ./completion.bash
t() { COMP_LINE="$1"; COMP_POINT=${#COMP_LINE}; COMP_WORDS=($2); COMP_CWORD=$3; [[ $COMP_CWORD -ge ${#COMP_WORDS[@]} ]] && COMP_WORDS+=("")
      _dl_completion dl; echo "${COMPREPLY[*]}"; }
t "dl tr" "dl tr" 1
t "dl train model=le" "dl train model = le" 4
t "dl train model=" "dl train model =" 3
t "dl train optim=adam optim.l" "dl train optim = adam optim.l" 4
t "dl eval ru" "dl eval ru" 2
complete -p dl
"""
    out = subprocess.run(["bash", "-c", driver], cwd=workdir, env=environment, capture_output=True, text=True)
    lines = out.stdout.splitlines()
    assert lines[:2] == ["train", "lenet"] and lines[3:] == ["optim.lr= optim.l1=", "runs/", "complete -F _dl_completion dl"], out.stderr
    assert lines[2].split() == sorted(path.stem for path in (CONF / "model").glob("*.yaml"))  # after `model=`: the options alone


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("zsh") is None and shutil.which("fish") is None, reason="neither zsh nor fish here")
def test_zsh_and_fish_scripts_complete_where_those_shells_are_installed(workdir):
    environment = tab_environment(workdir)
    build_index(typer.main.get_command(app))  # (this process's cache directory, inherited)
    if shutil.which("fish"):
        (workdir / "dl.fish").write_text(script("fish"))
        out = subprocess.run(["fish", "-c", 'source ./dl.fish; complete -C"dl train model=le"; complete -C"dl sweep grid --prune a"'],
                             cwd=workdir, env=environment, capture_output=True, text=True)
        assert out.stdout.splitlines() == ["model=lenet\tLeNet-5: conv 6@5x5 pad 2, pool, conv 16@5x5, pool, fc 120, fc 84, fc classes.",
                                           "asha"], out.stderr
    if shutil.which("zsh"):
        (workdir / "_dl").write_text(script("zsh"))
        # zsh's completion system needs a terminal; its two functions the script calls print what they are given
        driver = """compdef() { print -r -- "compdef $*" }
_describe() { print -rl -- "${(@P)4}" "${@:5}" }
source ./_dl
words=(dl train optim=adam optim.l); CURRENT=4; _dl
words=(dl tr); CURRENT=2; _dl"""
        out = subprocess.run(["zsh", "-f", "-c", driver], cwd=workdir, env=environment, capture_output=True, text=True)
        assert out.stdout.splitlines() == ["compdef _dl dl", "optim.lr=:default 0.001", "optim.l1=:default 0.0", "-S", "",
                                           "train:Train a model: compose the config, fit on the best device, test the best checkp…"], out.stderr


@pytest.mark.slow  # starts the background build: an interpreter that imports the CLI
def test_the_background_build_runs_nothing_of_the_folder_the_tab_was_pressed_in(workdir):
    """A TAB may be pressed in a folder someone sent: the build it starts (`python -m dlcli`, which
    puts its working directory first on the import path) runs in dl's own index folder, so a
    planted module that shadows a library dl imports never runs."""
    import time

    marker = workdir / "RAN"
    for name in ("typer", "click", "torch"):
        (workdir / f"{name}.py").write_text(f"open({str(marker)!r}, 'w').write('{name}')\n")
    index.rebuild_in_background()
    written = index.index_dir() / index.COMMANDS
    deadline = time.monotonic() + 120
    while not written.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert written.exists() and not marker.exists()
