"""The kinds of sweep, as one table: what each asks of the user, how many trials it plans, and the
Optuna sampler that asks for its trials. `dl sweep KIND` commands are made from this table, so a
new kind (an Optuna sampler) is one entry here.

Each sampler asks for trial N with its random stream seeded by (seed, N), so a trial's draw does
not depend on how many draws came before it in this process: a resumed sweep continues where it
stopped instead of drawing trial 0's values again.
"""

from __future__ import annotations

import itertools
import logging
import warnings
from dataclasses import dataclass
from typing import Callable

from dlcli.errors import UserError
from dlcli.sweep.space import SearchSpace


@dataclass(frozen=True)
class Kind:
    name: str
    summary: str  # the command's help line
    overrides_help: str
    examples: tuple[str, ...]
    draws: bool  # takes --trials and --seed (a grid enumerates instead)
    seed_help: str
    sampler: Callable[[SearchSpace, int, int | None, int], object]  # (space, seed, trials, trial number) -> an Optuna sampler


def grid_combinations(space: SearchSpace) -> list[dict[str, str]]:
    """Every combination of the discrete parameters, in the order they were given."""
    continuous = [p.key for p in space.params if not p.discrete]
    if continuous:
        raise UserError(f"grid search cannot enumerate the interval for {continuous[0]}: use `dl sweep random` or `tpe`, or list values")
    if not space.params:
        raise UserError("nothing to sweep: give at least one override with several values, e.g. optim.lr=0.1,0.01")
    return [dict(zip(space.keys, combo)) for combo in itertools.product(*(p.values for p in space.params))]


def quiet_optuna():
    """Optuna, with its own log lines and experimental-feature warnings off (the sweep prints its own)."""
    import optuna  # noqa: PLC0415  (dl --help runs without optuna)

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    # dl gives each grid trial its point itself (enqueued, run once each): the grid sampler's own
    # bookkeeping then warns of "re-evaluating a configuration" where nothing runs twice (a retried trial)
    logging.getLogger("optuna.samplers._grid").setLevel(logging.ERROR)
    return optuna


_optuna = quiet_optuna


def _trial_seed(seed: int, number: int) -> int:
    return (seed * 1_000_003 + number) % 2**32


def _grid_sampler(space: SearchSpace, seed: int, trials: int | None, number: int):
    optuna = _optuna()
    combinations = 1
    for p in space.params:
        combinations *= len(p.values)
    if combinations > 1:  # every combination is enqueued in order; GridSampler knows the whole grid
        return optuna.samplers.GridSampler({p.key: list(p.values) for p in space.params}, seed=seed)
    return optuna.samplers.RandomSampler(seed=seed)  # one combination: GridSampler cannot record an enqueued one


def _random_sampler(space: SearchSpace, seed: int, trials: int | None, number: int):
    return _optuna().samplers.RandomSampler(seed=_trial_seed(seed, number))


def _tpe_sampler(space: SearchSpace, seed: int, trials: int | None, number: int):
    # TPE's first trials are random draws; keep a third of a small budget for learning from them.
    # constant_liar: trials still running count as bad guesses, so parallel workers spread out.
    startup = max(1, min(10, (trials or 30) // 3))
    return _optuna().samplers.TPESampler(seed=_trial_seed(seed, number), multivariate=True, n_startup_trials=startup,
                                         constant_liar=True)


KINDS: dict[str, Kind] = {kind.name: kind for kind in (
    Kind("grid", "Every combination of the swept values.",
         "Sweep overrides (a,b,c  range()  choice()  glob()) and plain ones.",
         ("dl sweep grid optim.lr=0.3,0.1,0.03 model.hidden=[64],[256] --jobs 2",
          "dl sweep grid model=mlp,softmax 'trainer.batch_size=range(32,129,32)' trainer.epochs=10",
          "dl sweep grid --resume runs/sweeps/sweep/2026-11-24_10-31-07"),
         draws=False, seed_help="", sampler=_grid_sampler),
    Kind("random", "Random draws: choice() and lists uniformly, interval() uniformly, tag(log, ...) log-uniformly.",
         "interval(a,b), tag(log,interval(a,b)), int(interval(a,b)), choice(), a,b,c and plain overrides.",
         ("dl sweep random 'optim.lr=tag(log,interval(1e-4,1))' 'optim.weight_decay=interval(0,1e-3)' --trials 20",
          "dl sweep random 'trainer.batch_size=int(interval(16,256))' model=mlp,softmax --trials 8 --seed 3 --prune asha"),
         draws=True, seed_help="Seed of the draws (Optuna's RandomSampler): the same seed draws the same trials.",
         sampler=_random_sampler),
    Kind("tpe", "Search that learns from its trials: Optuna's TPE sampler (multivariate) over the swept values.",
         "interval(a,b), tag(log,interval(a,b)), int(interval(a,b)), range(), choice(), a,b,c and plain overrides.",
         ("dl sweep tpe 'optim.lr=tag(log,interval(1e-4,1))' 'model.dropout=interval(0,0.6)' "
          "'model.hidden=choice([64],[256],[256,256])' --trials 40 --jobs 2 --prune hyperband",
          "dl sweep tpe 'optim.lr=tag(log,interval(1e-3,1))' 'trainer.batch_size=range(16,129,16)' --trials 20 --seed 1"),
         draws=True, seed_help="Seed of Optuna's TPESampler.", sampler=_tpe_sampler),
)}


def kind_of(name: str) -> Kind:
    if name not in KINDS:
        raise UserError(f"sweep kind {name} is not known: choose one of {', '.join(KINDS)}")
    return KINDS[name]


def check_budget(kind: str, space: SearchSpace, trials: int | None) -> int:
    """The number of trials the sweep plans, or a one-line reason it cannot."""
    if not kind_of(kind).draws:
        return len(grid_combinations(space))
    if trials is None:
        raise UserError(f"dl sweep {kind} needs --trials N")
    if not space.params:
        raise UserError("nothing to sweep: give at least one override such as 'optim.lr=tag(log,interval(1e-4,1))'")
    if kind == "tpe" and all(p.discrete for p in space.params):
        widest = max(space.params, key=lambda p: len(p.values))
        if trials < len(widest.values):
            raise UserError(f"dl sweep tpe with {trials} trials cannot try each of the {len(widest.values)} choices of {widest.name} "
                            f"once: give --trials {len(widest.values)} or more, or use dl sweep grid")
    return trials


def sampler_for(kind: str, space: SearchSpace, seed: int, trials: int | None, number: int = 0):
    """The sampler that asks for trial `number` of a sweep of this kind."""
    return kind_of(kind).sampler(space, seed, trials, number)
