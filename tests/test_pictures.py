"""curves.png as a reader needs it: a diverging run on a log axis, no legend entry without a line.
Drawn in this process from made-up histories (the figure, not the PNG, is looked at)."""

from __future__ import annotations

import numpy as np

from dlcli.tracking.plots import curves_figure, plot_curves, y_scale


def history(train_loss, val_loss=None, metric="accuracy"):
    return [{"epoch": i + 1, "train_loss": loss, f"train_{metric}": 0.5,
             **({"val_loss": val_loss[i], f"val_{metric}": 0.5} if val_loss is not None else {})}
            for i, loss in enumerate(train_loss)]


def legend_labels(axis) -> list[str]:
    legend = axis.get_legend()
    return [text.get_text() for text in legend.get_texts()] if legend else []


def test_a_diverging_loss_is_drawn_on_a_log_axis_and_a_tame_one_is_not():
    diverged = curves_figure(history([2.3, 1.9, 4e8, 4.16e20], [2.2, 2.0, 3e9, float("nan")]), "accuracy")
    loss_axis, metric_axis = diverged.axes
    assert loss_axis.get_yscale() == "log" and "log scale" in loss_axis.get_ylabel()
    assert metric_axis.get_yscale() == "linear"  # its values stay within a decade
    tame = curves_figure(history([2.3, 1.2, 0.6], [2.2, 1.3, 0.7]), "accuracy")
    assert tame.axes[0].get_yscale() == "linear" and tame.axes[0].get_ylabel() == "loss"


def test_a_run_without_a_validation_split_has_no_val_in_its_legend(tmp_path):
    refit = curves_figure(history([2.3, 1.2, 0.6]), "accuracy")
    for axis in refit.axes:
        assert legend_labels(axis) == ["train"] and len(axis.get_lines()) == 1
    both = curves_figure(history([2.3, 1.2], [2.2, 1.3]), "accuracy")
    assert legend_labels(both.axes[0]) == ["train", "val"]
    plot_curves(history([2.3, 1.2]), "accuracy", tmp_path / "curves.png")
    assert (tmp_path / "curves.png").read_bytes().startswith(b"\x89PNG")


def test_values_that_span_decades_through_zero_get_a_symmetric_log_axis():
    assert y_scale(np.array([0.5, 0.4, 0.3])) == "linear"
    assert y_scale(np.array([1.0, 1e4, np.inf, np.nan])) == "log"  # inf and NaN are not values to scale to
    assert y_scale(np.array([-1e5, 0.0, 0.9])) == "symlog"  # an r2 that dived
    assert y_scale(np.array([np.nan, np.nan])) == "linear"
