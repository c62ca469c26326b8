"""Reading files that may come from someone else: a run's config.yaml and overrides.yaml, a
sweep's sweep.yaml and best.yaml, an --overrides-file, the JSON files of a run.

Reading runs nothing and costs little, whatever the file holds:
- YAML is parsed by PyYAML's safe loader (no Python objects), and its size is bounded before it is
  parsed and again after aliases are expanded: ten levels of nine aliases each describe 9^10
  nodes in a few hundred bytes, and OmegaConf copies every one of them;
- `${...}` interpolations are refused: a saved config is written resolved, so one found there was
  put in by hand, and resolving it could read the environment (`${oc.env:HOME}`) or call any
  resolver registered in this process;
- JSON is bounded in size and nesting, and a damaged file is a one-line error.
What the file may *build* (its `_target_`s) is dlcli.trust.targets's question.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from dlcli.errors import UserError, first_line

MAX_FILE_BYTES = 16 * 1024 * 1024  # a run's config is a few KB; preprocessing.json of a wide table a few MB
MAX_NODES = 200_000  # after aliases are expanded: far above any real config, far below a bomb
MAX_DEPTH = 100
# PyYAML's safe loader in C (libyaml, in PyYAML's wheels) where it was built: the same documents,
# about 8 times faster (`dl runs` reads every run's config.yaml); the pure-Python one elsewhere
SAFE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def read_yaml(path: Path, what: str | None = None) -> Any:
    """The plain Python value of a YAML file (dicts, lists, strings, numbers, booleans, None)."""
    what = what or str(path)
    text = _read_bounded(path, what)
    loader = SAFE_LOADER(text)
    try:
        root = loader.get_single_node()
        if root is None:
            return None
        _check_size(root, what)
        value = loader.construct_document(root)
    except yaml.YAMLError as exc:
        raise UserError(f"{what} is not readable YAML ({first_line(exc)}): restore it from a copy") from None
    except RecursionError:
        raise UserError(f"{what} is nested too deeply to be a dl file") from None
    finally:
        loader.dispose()
    check_no_interpolation(value, what)
    return value


def read_json(path: Path, what: str | None = None) -> Any:
    what = what or str(path)
    text = _read_bounded(path, what)
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise UserError(f"{what} is not readable JSON ({first_line(exc)}): restore it from a copy") from None


def never_write_where_it_names(config: Any) -> None:
    """A config read from a received file, or composed with overrides from one (an --overrides-file,
    a resumed sweep's sweep.yaml), writes into no folder it names: it never downloads (a download
    writes into data.root) and keeps no decoded cache in its data.cache_dir (the user's own cache
    directory is used). Reading data already there is fine. (A plain dict or a DictConfig, in place.)"""
    data = config.get("data") if config is not None else None
    if data is None or not hasattr(data, "get"):
        return
    if data.get("download"):
        data["download"] = False
    if data.get("cache_dir") is not None:
        data["cache_dir"] = None


def writes_only_where_typed(config: Any, file_keys: set[str], typed_keys: set[str], what: str) -> None:
    """A config composed with overrides read from a file (which may come from someone else; the
    keys it set, and those the user typed) writes into a folder only where the user says: it
    downloads only when data.download=true is typed, and never into a data.root only the file
    names; it keeps decoded images in data.cache_dir only when that is typed. Data already where
    the file says is read there."""
    data = config.get("data")
    if data is None or not hasattr(data, "get"):
        return
    if data.get("download") and "data.download" not in typed_keys:
        data["download"] = False
    elif data.get("download") and "data.root" in file_keys and "data.root" not in typed_keys:
        raise UserError(f"data.download=true with {what}, which names data.root={data.get('root')}: a download goes only "
                        "where you say; type data.root=PATH too")
    if data.get("cache_dir") is not None and "data.cache_dir" not in typed_keys:
        data["cache_dir"] = None


def check_no_interpolation(value: Any, what: str, path: str = "") -> None:
    """Refuse `${...}` anywhere in a received value (keys included)."""
    if isinstance(value, str):
        if "${" in value:
            where = f" at {path}" if path else ""
            raise UserError(f"{what} holds the interpolation {_clip(value)}{where}: a file dl did not write for you may not "
                            "read the environment or call resolvers; write the value itself instead")
    elif isinstance(value, dict):
        for key, child in value.items():
            check_no_interpolation(key, what, path)
            check_no_interpolation(child, what, f"{path}.{key}" if path else str(key))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            check_no_interpolation(child, what, f"{path}[{index}]")


def _read_bounded(path: Path, what: str) -> str:
    if path.exists() and not path.is_file():  # a FIFO or a device: opening it could wait forever
        raise UserError(f"{what} is not a regular file: not a file dl wrote")
    try:
        with open(path, "rb") as file:
            data = file.read(MAX_FILE_BYTES + 1)
    except FileNotFoundError:
        raise UserError(f"{what} does not exist") from None
    except OSError as exc:
        raise UserError(f"{what} cannot be read: {exc.strerror or exc}") from None
    if len(data) > MAX_FILE_BYTES:
        raise UserError(f"{what} is larger than {MAX_FILE_BYTES // (1024 * 1024)} MB: not a file dl wrote")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise UserError(f"{what} is not UTF-8 text: not a file dl wrote") from None


def _check_size(root, what: str) -> None:
    """Count the nodes the document stands for once aliases are expanded, without expanding
    them: an alias is the same node object, so each node's size is computed once."""
    sizes: dict[int, int] = {}
    open_nodes: set[int] = set()

    def size(node, depth: int) -> int:
        if depth > MAX_DEPTH:
            raise UserError(f"{what} is nested more than {MAX_DEPTH} levels deep: not a file dl wrote")
        known = sizes.get(id(node))
        if known is not None:
            return known
        if id(node) in open_nodes:
            raise UserError(f"{what} contains itself (a recursive YAML alias): not a file dl wrote")
        open_nodes.add(id(node))
        if isinstance(node, yaml.MappingNode):
            total = 1 + sum(size(key, depth + 1) + size(value, depth + 1) for key, value in node.value)
        elif isinstance(node, yaml.SequenceNode):
            total = 1 + sum(size(child, depth + 1) for child in node.value)
        else:
            total = 1
        if total > MAX_NODES:
            raise UserError(f"{what} expands to more than {MAX_NODES:,} values (YAML aliases): not a file dl wrote")
        open_nodes.discard(id(node))
        sizes[id(node)] = total
        return total

    size(root, 0)


def _clip(text: str, limit: int = 60) -> str:
    text = text.replace("\n", " ")
    return text if len(text) <= limit else text[: limit - 1] + "…"
