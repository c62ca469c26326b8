"""The constraints of the torch classes dl ships configs for (conf/optim, conf/sched, conf/loss),
which their signatures do not state: a rate is positive, two betas each lie in [0, 1), a decay
factor is positive. dl's own classes declare theirs beside them (@constrained); a class named by
`_target_` that is in neither place is checked by its annotations alone.

A count of a schedule's steps may also be a share of the run (0.5: half of it), which the run turns
into epochs or batches from its own length (dlcli.engine.schedulers.resolve_run_shares), so that an
option's defaults fit a run of any length.

"auto" is a value dl fills in at run time (from the data or each parameter group's own rate).
"""

from __future__ import annotations

from dlcli.config.constraints import (
    BOOLEAN,
    NON_NEGATIVE,
    NON_NEGATIVE_INT,
    POSITIVE,
    POSITIVE_INT,
    RATE,
    RUN_SHARE,
    Interval,
    ListOf,
    Options,
    Positions,
    nullable,
    one_of,
)

AUTO = Options(("auto",))
BETA = Interval(0, 1, closed="left")
BETAS = ListOf(BETA, 2, 2)
ADAM = {"lr": POSITIVE, "betas": BETAS, "eps": POSITIVE, "weight_decay": NON_NEGATIVE, "amsgrad": BOOLEAN,
        "maximize": BOOLEAN, "foreach": nullable(BOOLEAN), "capturable": BOOLEAN, "differentiable": BOOLEAN,
        "fused": nullable(BOOLEAN)}

LIBRARY = {
    "torch.optim.SGD": {"lr": POSITIVE, "momentum": RATE, "dampening": RATE, "weight_decay": NON_NEGATIVE,
                        "nesterov": BOOLEAN, "maximize": BOOLEAN},
    "torch.optim.Adam": ADAM,
    "torch.optim.AdamW": ADAM,
    "torch.optim.NAdam": {**ADAM, "momentum_decay": NON_NEGATIVE, "decoupled_weight_decay": BOOLEAN},
    "torch.optim.RAdam": {**ADAM, "decoupled_weight_decay": BOOLEAN},
    "torch.optim.RMSprop": {"lr": POSITIVE, "alpha": BETA, "eps": POSITIVE, "weight_decay": NON_NEGATIVE, "momentum": RATE,
                            "centered": BOOLEAN, "maximize": BOOLEAN},
    "torch.optim.Adagrad": {"lr": POSITIVE, "lr_decay": NON_NEGATIVE, "weight_decay": NON_NEGATIVE,
                            "initial_accumulator_value": NON_NEGATIVE, "eps": POSITIVE, "maximize": BOOLEAN},
    # etas: (decrease, increase) factors, below and above 1; step_sizes: (smallest, largest) step
    "torch.optim.Rprop": {"lr": POSITIVE, "etas": Positions((("decrease", Interval(0, 1, closed="neither")),
                                                             ("increase", Interval(1, None, closed="neither")))),
                          "step_sizes": ListOf(POSITIVE, 2, 2), "maximize": BOOLEAN},
    "torch.optim.lr_scheduler.StepLR": {"step_size": one_of(POSITIVE_INT, RUN_SHARE), "gamma": POSITIVE},
    "torch.optim.lr_scheduler.MultiStepLR": {"milestones": ListOf(one_of(POSITIVE_INT, RUN_SHARE), 1), "gamma": POSITIVE},
    "torch.optim.lr_scheduler.ExponentialLR": {"gamma": POSITIVE},
    "torch.optim.lr_scheduler.CosineAnnealingLR": {"T_max": POSITIVE_INT, "eta_min": NON_NEGATIVE},
    "torch.optim.lr_scheduler.LinearLR": {"start_factor": Interval(0, 1, closed="right"), "end_factor": Interval(0, 1),
                                          "total_iters": POSITIVE_INT},
    "torch.optim.lr_scheduler.PolynomialLR": {"total_iters": POSITIVE_INT, "power": POSITIVE},
    "torch.optim.lr_scheduler.OneCycleLR": {"max_lr": one_of(POSITIVE, ListOf(POSITIVE, 1), AUTO), "epochs": POSITIVE_INT,
                                            "steps_per_epoch": one_of(POSITIVE_INT, AUTO), "total_steps": nullable(POSITIVE_INT),
                                            "pct_start": Interval(0, 1, closed="neither"),
                                            "anneal_strategy": Options(("cos", "linear")), "cycle_momentum": BOOLEAN,
                                            "div_factor": POSITIVE, "final_div_factor": POSITIVE, "three_phase": BOOLEAN},
    "torch.optim.lr_scheduler.CyclicLR": {"base_lr": one_of(POSITIVE, ListOf(POSITIVE, 1), AUTO),
                                          "max_lr": one_of(POSITIVE, ListOf(POSITIVE, 1)), "step_size_up": one_of(POSITIVE_INT, RUN_SHARE),
                                          "step_size_down": nullable(one_of(POSITIVE_INT, RUN_SHARE)),
                                          "mode": Options(("triangular", "triangular2", "exp_range")), "gamma": POSITIVE,
                                          "cycle_momentum": BOOLEAN},
    "torch.optim.lr_scheduler.ReduceLROnPlateau": {"mode": Options(("min", "max", "auto")), "factor": Interval(0, 1, closed="neither"),
                                                   "patience": NON_NEGATIVE_INT, "threshold": NON_NEGATIVE,
                                                   "threshold_mode": Options(("rel", "abs")), "cooldown": NON_NEGATIVE_INT,
                                                   "min_lr": NON_NEGATIVE, "eps": NON_NEGATIVE},
    "torch.nn.HuberLoss": {"delta": POSITIVE, "reduction": Options(("mean",))},
    "torch.nn.SmoothL1Loss": {"beta": NON_NEGATIVE, "reduction": Options(("mean",))},
    "torch.nn.MSELoss": {"reduction": Options(("mean",))},
    "torch.nn.L1Loss": {"reduction": Options(("mean",))},
}
