"""TAB completion for `dl` in bash, zsh and fish, answered in a few milliseconds.

A TAB starts `dl` with _DL_COMPLETE set (the shell's script: shells); dlcli.__main__ hands it to
`complete.answer` before the CLI framework is imported, so a TAB costs a bare Python start, a few
stats and one small JSON read. What it offers comes from an index in dl's cache directory (index):
the commands and their options, written by `dl` itself from its CLI (dlcli.cli.completion), and
the config groups, options, keys, defaults and choices, read from the YAML of each config directory
(configs) and written again when one of those files changes.
"""

# Set by the shells' scripts when a TAB asks (its value names the shell); any other run of dl, and
# every process a TAB starts, goes without it.
COMPLETE_VAR = "_DL_COMPLETE"
SHELLS = ("bash", "zsh", "fish")
