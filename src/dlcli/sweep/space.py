"""Search spaces from Hydra's override grammar, parsed with Hydra's own parser.

`optim.lr=0.1,0.01`, `model=mlp,lenet`, `range(1,5)`, `choice(a,b)`, `glob(*)` are discrete;
`interval(a,b)`, `tag(log, interval(a,b))` and `int(interval(a,b))` are continuous (random and tpe
search only). Plain overrides apply to every trial. dlcli.sweep.study maps each to an Optuna
distribution.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from dlcli.config.compose import CONFIG_MODULE
from dlcli.config.places import search_path
from dlcli.errors import UserError, first_line


@dataclass
class Param:
    key: str
    values: list[str] | None = None  # discrete: the override values, as Hydra would print them
    low: float | None = None  # continuous bounds
    high: float | None = None
    log: bool = False
    integer: bool = False
    step: int | None = None  # range(start, stop, step) of integers: low..high in steps (values holds them too)

    @property
    def discrete(self) -> bool:
        return self.values is not None

    @property
    def name(self) -> str:
        """The config key without Hydra's +/++ prefix: how results name this column."""
        return self.key.lstrip("+")


@dataclass
class SearchSpace:
    fixed: list[str] = field(default_factory=list)  # overrides every trial gets
    params: list[Param] = field(default_factory=list)

    @property
    def keys(self) -> list[str]:
        return [p.key for p in self.params]

    @property
    def names(self) -> list[str]:
        return [p.name for p in self.params]

    def log_scaled(self, name: str) -> bool:
        return any(p.name == name and p.log for p in self.params)


def parse_space(overrides: Sequence[str], config_dirs: Sequence[str | Path] = ()) -> SearchSpace:
    """Split overrides into fixed ones and swept parameters (glob needs the config's group options)."""
    from hydra import initialize_config_module  # noqa: PLC0415  (dl --help runs without hydra)
    from hydra.core.global_hydra import GlobalHydra  # noqa: PLC0415  (dl --help runs without hydra)
    from hydra.core.override_parser.overrides_parser import OverridesParser  # noqa: PLC0415  (dl --help runs without hydra)
    from hydra.core.override_parser.types import IntervalSweep, RangeSweep  # noqa: PLC0415  (dl --help runs without hydra)

    space = SearchSpace()
    GlobalHydra.instance().clear()
    try:
        with initialize_config_module(config_module=CONFIG_MODULE, version_base=None):
            loader = GlobalHydra.instance().config_loader()
            for path in search_path(config_dirs):  # ./conf and --config-dir, as for dl train
                loader.get_search_path().append("dl-user", path)  # lets glob() see user options
            parser = OverridesParser.create(config_loader=loader)
            for text in overrides:
                try:
                    (override,) = parser.parse_overrides([text])
                except Exception as exc:
                    message = first_line(exc)
                    raise UserError(f"malformed override '{text}': {message}") from None
                key = override.get_key_element()
                if not override.is_sweep_override():
                    space.fixed.append(text)
                    continue
                value = override.value()
                if isinstance(value, IntervalSweep):
                    integer = isinstance(value.start, int) and isinstance(value.end, int)
                    low, high = value.start, value.end
                    if not low < high:
                        raise UserError(f"'{text}': interval({low}, {high}) needs low < high")
                    log = "log" in value.tags
                    if log and low <= 0:
                        raise UserError(f"'{text}': a log-scaled interval needs a positive lower bound (got {low})")
                    space.params.append(Param(key, low=low, high=high, log=log, integer=integer))
                else:
                    try:
                        values = list(override.sweep_string_iterator())
                    except Exception as exc:
                        raise UserError(f"'{text}': {first_line(exc)}") from None
                    if not values:
                        raise UserError(f"'{text}' sweeps over no values")
                    param = Param(key, values=values, log="log" in getattr(value, "tags", set()))
                    if isinstance(value, RangeSweep) and all(isinstance(v, int) for v in (value.start, value.stop, value.step)):
                        numbers = [int(v) for v in values]  # integer steps: TPE can treat them as ordered
                        param.low, param.high, param.step, param.integer = min(numbers), max(numbers), abs(int(value.step)), True
                    space.params.append(param)
    finally:
        GlobalHydra.instance().clear()
    keys = [p.key for p in space.params]
    duplicated = {k for k in keys if keys.count(k) > 1}
    if duplicated:
        raise UserError(f"{sorted(duplicated)[0]} is swept twice: give its values in one override")
    return space
