"""Answer one TAB: read the words typed so far, find where they stand in the command tree, and
print what may come next, in the form the shell's script reads (bash: values; zsh and fish: a
value and its description, separated by a tab).

This is all a TAB runs (dlcli.__main__ calls `main` before the CLI is imported): the standard
library, a few stats and the JSON index (dlcli.completion.index). It reads YAML only when the
configs index must be rebuilt, and never imports typer, click, torch, Hydra or OmegaConf.
Anything unexpected prints nothing: a shell shows no candidates rather than garbage.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path
from collections.abc import Callable, Mapping, Sequence

import dlcli
from dlcli.completion import SHELLS
from dlcli.completion.index import configs_path, fresh_commands, read_index, tree_stamp, write_index
from dlcli.config.places import config_directories
from dlcli.trust.workdir import made_by_dl

DESCRIBED = ("zsh", "fish")  # the shells that show a description beside each candidate
RUN_KEYS = ("resume", "refit", "model.weights")  # config keys that name a run directory (conf/config.yaml, conf/model/*)
MOST = 1000  # entries offered from one folder: a TAB in a huge folder stays fast (each is looked into)
HELP = {"--help": "Show the help and exit."}
BASH_BREAKS = "\"'><=;|&(:"  # bash's COMP_WORDBREAKS unless changed (then its script passes it)

Candidate = tuple[str, str]  # what the shell inserts, and a line about it


def main(shell: str) -> None:
    """One TAB: the candidates on stdout; nothing at all where anything goes wrong."""
    try:
        text = answer(shell, sys.argv, os.environ)
    except Exception:  # a broken index, a folder gone mid-listing: no candidates, never a traceback
        text = ""
    sys.stdout.write(text)


def answer(shell: str, argv: Sequence[str], environ: Mapping[str, str]) -> str:
    words = typed_words(shell, argv, environ)
    if shell not in SHELLS or not words:
        return ""
    found = candidates(words, (fresh_commands() or {}).get("root") or {}, configs_of, described=shell in DESCRIBED)
    return rendered(shell, found, words[-1], environ.get("COMP_WORDBREAKS", BASH_BREAKS))


def typed_words(shell: str, argv: Sequence[str], environ: Mapping[str, str]) -> list[str]:
    """The words after `dl`, the last one the word being completed ('' after a space). bash
    passes its line up to the cursor (its own words split at '=' and ':'); zsh and fish pass their
    words as arguments."""
    if shell == "bash":
        line = environ.get("COMP_LINE", "")[: int(environ.get("COMP_POINT") or len(environ.get("COMP_LINE", "")))]
        # the words as the shell will pass them: a backslash-escaped space stays inside its word
        # (`runs/my\ run/`), and the escapes go (the candidates are escaped again: rendered)
        words = [_UNESCAPE.sub(r"\1", word) for word in _UNESCAPED_SPACE.split(line.strip())] if line.strip() else []
        words += [""] if not line or (line[-1].isspace() and not line.endswith("\\" + line[-1])) else []
    else:
        words = list(argv[1:])
    return words[1:]


def candidates(words: list[str], root: dict, configs: Callable[[list[str]], dict], described: bool = False) -> list[Candidate]:
    """What may replace the last of `words`, given the command tree `root` and the configs index
    that `configs(config_dirs)` reads."""
    node, positional, expecting = root, [], None
    for word in words[:-1]:
        if expecting is not None:
            expecting = None
        elif word.startswith("-"):
            option = node.get("options", {}).get(word.split("=", 1)[0])
            expecting = option if option and not option.get("flag") and "=" not in word else None
        elif not positional and word in node.get("commands", {}):
            node = node["commands"][word]
        else:
            positional.append(word)
    current = words[-1]
    if expecting is not None:
        return _takes(expecting, current, "", words, configs, described)
    if current.startswith("--") and "=" in current:
        name, _, value = current.partition("=")
        option = node.get("options", {}).get(name)
        return _takes(option, value, f"{name}=", words, configs, described) if option else []
    if current.startswith("-"):
        options = {**{name: option.get("help", "") for name, option in node.get("options", {}).items()}, **HELP}
        return [(name, about) for name, about in options.items() if name.startswith(current)]
    if node.get("commands") and not positional:
        return [(name, sub.get("help", "")) for name, sub in node["commands"].items() if name.startswith(current)]
    arguments = node.get("arguments", [])
    if not arguments:
        return []
    argument = arguments[min(len(positional), len(arguments) - 1)]
    if len(positional) >= len(arguments) and not argument.get("many"):
        return []
    first = [(word, about) for word, about in node.get("words", {}).items() if word.startswith(current)] if not positional else []
    return first + _takes(argument, current, "", words, configs, described)


def _takes(parameter: dict, typed: str, prefix: str, words: list[str], configs, described: bool) -> list[Candidate]:
    """The values a parameter (an option or an argument) takes: its declared choices, run
    directories, paths, or overrides."""
    kind = parameter.get("takes")
    if parameter.get("choices"):
        found = [(value, "") for value in parameter["choices"] if value.startswith(typed)]
    elif kind == "overrides":
        found = overrides(typed, words, configs)
    elif kind in ("run", "path"):
        found = folder_entries(typed, described, directories_only=kind == "run")
    else:
        found = []
    return [(prefix + value, about) for value, about in found]


def configs_of(config_dirs: list[str]) -> dict:
    """The configs index of the directories a command reads (the package's conf/, ./conf, each
    existing --config-dir), rebuilt at once where a file in them changed since it was written."""
    directories = config_directories([d for d in config_dirs if Path(d).expanduser().is_dir()])
    # the paths (two sets never share an index) and dl's version (its schema and declared choices are read too)
    stamp = [dlcli.__version__, *([str(directory), *tree_stamp(directory)] for directory in directories)]
    path = configs_path(directories)
    index = read_index(path)
    if index is None or index.get("stamp") != stamp:
        from dlcli.completion.configs import build_configs  # noqa: PLC0415  (a TAB reads YAML only when the index is stale)

        index = {**build_configs(directories), "stamp": stamp}
        write_index(path, index)  # (a cache that cannot be written: rebuilt at each TAB, still answered)
    return index


def overrides(typed: str, words: list[str], configs) -> list[Candidate]:
    """`group=option`, `key=value`, the keys of the chosen options (with their defaults), `+key=`
    for the settings dl reads that an option leaves out, `~key` to remove one."""
    sign = typed[:1] if typed[:1] in ("+", "~") else ""
    text = typed[len(sign):]
    given = [word for word in words[:-1] if "=" in word and not word.startswith("-")]
    index = configs([value for option, value in zip(words, words[1:]) if option == "--config-dir"])
    defaults = current_defaults(index, given)
    if "=" in text and sign != "~":
        key, _, value = text.partition("=")
        return [(f"{sign}{key}={choice}", about) for choice, about in values_of(key, value, index, defaults) if choice.startswith(value)]
    if "." in text or sign:
        keys = {key: f"default {value}" for key, value in defaults.items() if "." in key or key not in index["groups"]}
        if sign == "+":  # the settings dl reads itself that the chosen option's YAML leaves out
            keys.update({f"{group}.{key}": "a setting dl reads" for group, own in index["own"].items() for key in own
                         if f"{group}.{key}" not in keys})
        ending = "" if sign == "~" else "="
        return [(f"{sign}{key}{ending}", about) for key, about in keys.items() if key.startswith(text)]
    return [(name, about) for name, about in _heads(index, defaults).items() if name.startswith(text)]


def _heads(index: dict, defaults: dict[str, str]) -> dict[str, str]:
    """The first words of overrides: `model=` for a group with a choice to make, `trainer.` for a
    node of keys, `seed=` for a top-level key."""
    heads = {}
    for group, content in index["groups"].items():
        if len(content["options"]) != 1:
            heads[f"{group}="] = f"default {content['default']}" if content.get("default") else f"{len(content['options'])} options"
    for key, value in defaults.items():
        head, dot, _ = key.partition(".")
        if dot:
            heads.setdefault(f"{head}.", "")
        elif key not in index["groups"]:
            heads.setdefault(f"{key}=", f"default {value}")
    return heads


def current_defaults(index: dict, given: list[str]) -> dict[str, str]:
    """Every key the config has with the options chosen so far (typed `group=option`, an
    experiment's choices, else the primary config's) and its value there."""
    typed = {word.partition("=")[0]: word.partition("=")[2] for word in given}
    groups = index["groups"]
    experiment = groups.get("experiment", {}).get("options", {}).get(typed.get("experiment", ""), {})
    values = {key: value for key, value in index["top"].items() if key not in groups}
    for group, content in groups.items():
        option = content["options"].get(typed.get(group) or experiment.get("chooses", {}).get(group) or content.get("default") or "")
        if option is not None and not option.get("global"):
            values.update({f"{group}.{key}": value for key, value in option["keys"].items()})
    values.update(experiment.get("keys", {}) if experiment.get("global") else {})
    return values


def values_of(key: str, typed: str, index: dict, defaults: dict[str, str]) -> list[Candidate]:
    """What `key=` may take: a group's options, a run directory, the declared choices, true or
    false, or the current value."""
    group = index["groups"].get(key)
    if group is not None:
        default = group.get("default")
        return [(name, ("(default) " if name == default else "") + _about(option)) for name, option in group["options"].items()]
    if key in RUN_KEYS:
        return folder_entries(typed, described=True, directories_only=True)
    default = defaults.get(key, "")
    choices = index["choices"].get(key) or (["true", "false"] if default in ("true", "false") else [])
    if choices:
        return [(choice, "default" if choice == default else "") for choice in choices]
    return [(default, "default")] if default else []


def _about(option: dict) -> str:
    where = option.get("from", "dl")
    if where == "dl":
        return option.get("about", "")
    shown = "./conf" if Path(where) == Path.cwd() / "conf" else where
    return f"[{shown}] {option.get('about', '')}".rstrip()


def folder_entries(typed: str, described: bool, directories_only: bool) -> list[Candidate]:
    """The entries of the folder `typed` names that start as it does: folders end in '/' (a TAB
    goes on into them), each said to be a run, a sweep or a k-fold run where dl made it."""
    folder, slash, start = typed.rpartition("/")
    base = Path(os.path.expanduser(folder + slash) if slash else ".")
    found = []
    try:
        # the entries that start as typed, then at most MOST of them (capping before filtering
        # would drop matches in a folder of thousands of runs)
        matching = (entry for entry in os.scandir(base)
                    if entry.name.startswith(start) and not (entry.name.startswith(".") and not start.startswith(".")))
        entries = [entry for _, entry in zip(range(MOST), matching)]
    except OSError:
        return []
    for entry in sorted(entries, key=lambda e: e.name):
        is_dir = entry.is_dir()
        if not is_dir and directories_only:
            continue
        value = f"{folder}{slash}{entry.name}{'/' if is_dir else ''}"
        kind = made_by_dl(Path(entry.path)) if is_dir and described else None
        found.append((value, (kind or "").removeprefix("a ")))
    return found


def rendered(shell: str, found: list[Candidate], current: str, breaks: str = BASH_BREAKS) -> str:
    """The lines the shell's script reads. bash (readline) replaces only the end of the current
    word after its last word-break character (`model=le`: `le`): each value is cut to that part."""
    about: dict[str, str] = {}
    for value, text in found:
        about.setdefault(value, text)  # (a value offered twice keeps its first description)
    if shell == "bash":
        # readline inserts what it gets as typed text: a folder named `$(cmd)` or `my run` would
        # run `cmd` or split in two when the line is entered, so each value is escaped for the shell
        cut = max((current.rfind(character) + 1 for character in breaks if not character.isspace()), default=0)
        return "".join(f"{_shell_escaped(value[cut:])}\n" for value in about if value[:cut] == current[:cut])
    return "".join(f"{value}\t{_one_line(text)}\n" if text else f"{value}\n" for value, text in about.items())


_UNESCAPED_SPACE = re.compile(r"(?<!\\)\s+")
_UNESCAPE = re.compile(r"\\(.)")
_SHELL_SPECIAL = re.compile(r"([^\w@%+=:,./~-])", re.ASCII)


def _shell_escaped(value: str) -> str:
    """`value` as bash reads it back unchanged: a backslash before each character that is not
    plainly a word's (a candidate's `=`, `/`, `.`, `:` and `~` stay as they are)."""
    return _SHELL_SPECIAL.sub(r"\\\1", value)


def _one_line(text: str) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= 80 else text[:79] + "…"
