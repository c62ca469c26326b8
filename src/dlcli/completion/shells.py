"""The scripts that make bash, zsh and fish ask `dl` for candidates at each TAB, and their
installation where each shell looks (`dl --install-completion [SHELL]`, `dl --show-completion [SHELL]`).

Each script runs `dl` with _DL_COMPLETE=<shell> and the words typed so far (bash: its line up to
the cursor and its word-break characters; zsh and fish: the words as arguments) and reads one
candidate a line, `value<TAB>description` for the shells that show descriptions (dlcli.completion.complete).
"""

from __future__ import annotations

import os
import shlex
from pathlib import Path
from typing import Mapping

from dlcli.completion import COMPLETE_VAR, SHELLS
from dlcli.errors import UserError

BASH = r"""# dl's TAB completion for bash (dl --show-completion bash): source it, or run dl --install-completion bash
_dl_completion() {
    local IFS=$'\n'
    # the line up to the cursor, and the characters at which readline starts the text it replaces
    # (COMP_WORDS splits at '=' too, but a word of its own '=' is not what readline replaces)
    COMPREPLY=($(COMP_LINE="$COMP_LINE" COMP_POINT="$COMP_POINT" COMP_WORDBREAKS="$COMP_WORDBREAKS" @VAR@=bash "$1" 2>/dev/null))
    # a key (model=), a folder (runs/) or a node (optim.) goes on: no space after it
    if [[ ${#COMPREPLY[@]} -eq 1 && ${COMPREPLY[0]} == *[=/.] ]]; then
        compopt -o nospace 2>/dev/null
    fi
    return 0
}
complete -F _dl_completion dl
"""

ZSH = r"""#compdef dl
# dl's TAB completion for zsh (dl --show-completion zsh): source it after compinit, or put it in a
# folder of $fpath as _dl; dl --install-completion zsh does the first
_dl() {
    local -a spaced unspaced
    local line value about entry
    for line in "${(@f)$(@VAR@=zsh "${words[1]}" "${(@)words[1,CURRENT]}" 2>/dev/null)}"; do
        [[ -z $line ]] && continue
        value=${line%%$'\t'*}
        about=""
        [[ $line == *$'\t'* ]] && about=${line#*$'\t'}
        entry=${value//:/\\:}
        [[ -n $about ]] && entry="$entry:$about"
        # a key (model=), a folder (runs/) or a node (optim.) goes on: no space after it
        if [[ $value == *[=/.] ]]; then unspaced+=("$entry"); else spaced+=("$entry"); fi
    done
    (( ${#spaced} )) && _describe -t dl-values 'dl' spaced
    (( ${#unspaced} )) && _describe -t dl-values 'dl' unspaced -S ''
    return 0
}
if [[ $funcstack[1] == _dl ]]; then _dl "$@"; else compdef _dl dl; fi
"""

FISH = r"""# dl's TAB completion for fish (dl --show-completion fish): fish loads it from ~/.config/fish/completions/dl.fish
function __dl_complete
    set -l current (commandline -ct)
    env @VAR@=fish dl (commandline -opc) "$current" 2>/dev/null
end
complete -c dl -f -a "(__dl_complete)"
"""

SCRIPTS = {"bash": BASH, "zsh": ZSH, "fish": FISH}
MARK = "# dl's TAB completion (dl --install-completion)"


def script(shell: str) -> str:
    return SCRIPTS[shell].replace("@VAR@", COMPLETE_VAR)


def chosen_shell(named: str | None, environ: Mapping[str, str], option: str) -> str:
    """The shell named, else the one $SHELL runs."""
    if named:
        if named not in SHELLS:
            raise UserError(f"{option} {named}: choose one of {', '.join(SHELLS)}")
        return named
    found = Path(environ.get("SHELL", "")).name
    if found not in SHELLS:
        raise UserError(f"{option}: cannot tell your shell from $SHELL ({environ.get('SHELL') or 'not set'}): "
                        f"name it, one of {', '.join(SHELLS)} (e.g. {option} bash)")
    return found


def install(shell: str, environ: Mapping[str, str]) -> str:
    """Write the shell's script where it looks, and (bash, zsh) one line in its startup file that
    loads it, once however often this runs; the line that says what was done and how to start."""
    home = Path(environ.get("HOME") or Path.home())
    data = _xdg(environ, "XDG_DATA_HOME", home / ".local" / "share") / "dl"
    if shell == "fish":
        target = _xdg(environ, "XDG_CONFIG_HOME", home / ".config") / "fish" / "completions" / "dl.fish"
        _write(target, script("fish"))
        return f"wrote {_short(target, home)}: new fish sessions complete dl (this one too, from its next dl TAB)"
    target = data / ("completion.bash" if shell == "bash" else "zsh/_dl")
    _write(target, script(shell))
    if shell == "bash":
        startup, line = home / ".bashrc", f'[ -f {_quoted(target)} ] && . {_quoted(target)}  {MARK}'
    else:
        startup = Path(environ.get("ZDOTDIR") or home) / ".zshrc"
        line = f'(( $+functions[compdef] )) || {{ autoload -Uz compinit && compinit; }}; . {_quoted(target)}  {MARK}'
    added = _add_line(startup, line)
    said = "added a line to" if added else "kept the line in"
    return f"wrote {_short(target, home)} and {said} {_short(startup, home)} that loads it: open a new shell, or run `. {_short(startup, home)}`"


def _xdg(environ: Mapping[str, str], name: str, fallback: Path) -> Path:
    value = environ.get(name, "")
    return Path(value) if value and Path(value).is_absolute() else fallback  # (a relative one is ignored, as XDG says)


def _write(target: Path, text: str) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = target.with_name(f".{target.name}.tmp")
    temporary.write_text(text, encoding="utf-8")
    os.replace(temporary, target)


def _quoted(path: Path) -> str:
    """`path` as the shell reads it back: in double quotes (the form earlier installs wrote, so
    their line is found again), or in single quotes where it holds what double quotes expand."""
    text = str(path)
    return f'"{text}"' if not any(c in text for c in '"$`\\!') else shlex.quote(text)


def _add_line(startup: Path, line: str) -> bool:
    """Append `line` to the startup file unless it is there already; False when it was. A file
    that is not UTF-8 is kept byte for byte (surrogate escapes)."""
    try:
        text = startup.read_text(encoding="utf-8", errors="surrogateescape")
    except FileNotFoundError:
        text = ""
    if line in text.splitlines():
        return False
    with startup.open("a", encoding="utf-8", errors="surrogateescape") as file:
        file.write(("" if not text or text.endswith("\n") else "\n") + line + "\n")
    return True


def _short(path: Path, home: Path) -> str:
    try:
        return f"~/{path.relative_to(home)}"
    except ValueError:
        return str(path)
