"""The recurrent networks' pitfall the generic checks cannot see: gradients that vanish through
time in a plain RNN (dlcli.diagnostics.through_time measures them after training). Registered
with the other checks (dlcli.diagnostics.checks); exploding gradients keep their own check, which
names clipping as the remedy, and says why for a recurrent network."""

from __future__ import annotations

from dlcli.diagnostics.checks import Facts, check
from dlcli.diagnostics.report import Finding
from dlcli.diagnostics.through_time import recurrent_cell


@check("vanishing_through_time", thresholds={
    # the gradient at the first step this small beside the last step's, after training: the start
    # of a sequence hardly moves the loss. Measured on digits read as 64-step sequences (5 epochs,
    # Adam): untrained, all three cells pass ~1e-13 to the first step; trained, a plain RNN 2.1, an
    # LSTM 0.22, a GRU 0.53: a network that learned to carry the sequence keeps its gradient, and one
    # still under this after training did not
    "reach": 1e-4,
})
def vanishing_through_time(f: Facts, t: dict) -> Finding | None:
    reach = f.evidence.gradient_reach
    if reach is None or reach >= t["reach"] or recurrent_cell(f.config) != "rnn":
        return None
    return Finding("vanishing_through_time", "warning", None, {"first_to_last_step_gradient": reach},
                   f"gradients vanish through time: after training, the loss's gradient at the plain RNN's first step "
                   f"is {reach:.0e} of that at its last, so the start of each sequence barely teaches it anything",
                   f.advise(then="model=lstm or model=gru (their gates carry the gradient across the steps)"))
