"""Figures of a training run's evaluation, drawn from the small aggregates of
:mod:`ml_engine.training.evaluation`.

Each function returns a ``matplotlib.figure.Figure`` bound to the Agg canvas (no display, no
``pyplot`` state), ready for ``mlflow.log_figure(fig, "roc.png")`` or ``fig.savefig``.

Example::

    curves = classification_curves(predictions, result.spec)
    fig = roc_figure(curves, {"1": metrics["auc_roc"]})
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

__all__ = [
    "confusion_matrix_figure",
    "feature_importance_figure",
    "pr_figure",
    "residuals_figure",
    "roc_figure",
]

CHANCE_LABEL = "chance"


def _figure(width: float = 6.0, height: float = 5.0) -> Figure:
    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _label(cls: str, name: str, areas: Mapping[str, float] | None) -> str:
    if areas and cls in areas:
        return f"{cls} ({name} {areas[cls]:.3f})"
    return cls


def roc_figure(
    curves: Mapping[str, Mapping[str, Sequence[float]]],
    auc: Mapping[str, float] | None = None,
) -> Figure:
    """ROC curves: true positive rate over false positive rate, one line per class.

    Args:
        curves: class label -> ``{"fpr", "tpr", ...}``
            (:func:`~ml_engine.training.evaluation.classification_curves`).
        auc: class label -> area, shown in the legend (optional).

    Returns:
        The figure; each class's line is labelled with the class (and its area), the
        diagonal is labelled ``chance``.
    """
    fig = _figure()
    ax = fig.add_subplot()
    for cls, c in curves.items():
        ax.plot(c["fpr"], c["tpr"], drawstyle="default", label=_label(cls, "AUC", auc))
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", label=CHANCE_LABEL)
    ax.set(
        xlabel="false positive rate",
        ylabel="true positive rate",
        xlim=(0, 1),
        ylim=(0, 1.01),
        title="ROC curve" + ("s (one vs rest)" if len(curves) > 1 else ""),
    )
    ax.legend(loc="lower right")
    return fig


def pr_figure(
    curves: Mapping[str, Mapping[str, Sequence[float]]],
    auc_pr: Mapping[str, float] | None = None,
) -> Figure:
    """Precision-recall curves, one line per class (points where precision is defined).

    Args:
        curves: class label -> ``{"precision", "recall", ...}``
            (:func:`~ml_engine.training.evaluation.classification_curves`).
        auc_pr: class label -> area, shown in the legend (optional).

    Returns:
        The figure; each class's line is labelled with the class (and its area).
    """
    fig = _figure()
    ax = fig.add_subplot()
    for cls, c in curves.items():
        ax.plot(c["recall"], c["precision"], label=_label(cls, "AUC-PR", auc_pr))
    ax.set(
        xlabel="recall",
        ylabel="precision",
        xlim=(0, 1),
        ylim=(0, 1.01),
        title="Precision-recall curve" + ("s (one vs rest)" if len(curves) > 1 else ""),
    )
    ax.legend(loc="lower left")
    return fig


def confusion_matrix_figure(confusion: Mapping[str, Any]) -> Figure:
    """The confusion matrix as a heat map with the count in every cell.

    Args:
        confusion: ``{"labels", "matrix"}``
            (:func:`~ml_engine.training.evaluation.confusion_matrix`): rows actual, columns
            predicted.

    Returns:
        The figure (one image, one text per cell).
    """
    labels = list(confusion["labels"])
    matrix = np.asarray(confusion["matrix"], dtype=np.int64)
    k = len(labels)
    fig = _figure(max(4.0, 1.0 + 0.6 * k), max(3.5, 0.8 + 0.6 * k))
    ax = fig.add_subplot()
    image = ax.imshow(matrix, cmap="Blues")
    fig.colorbar(image, ax=ax, shrink=0.8)
    threshold = matrix.max() / 2 if matrix.size else 0
    for i in range(k):
        for j in range(k):
            ax.text(
                j,
                i,
                str(matrix[i, j]),
                ha="center",
                va="center",
                color="white" if matrix[i, j] > threshold else "black",
            )
    ax.set_xticks(range(k), labels=labels, rotation=45 if k > 4 else 0)
    ax.set_yticks(range(k), labels=labels)
    ax.set(xlabel="predicted", ylabel="actual", title="Confusion matrix")
    return fig


def residuals_figure(curves: Mapping[str, Sequence[float]]) -> Figure:
    """Regression diagnostics: a residual histogram and binned predicted-vs-actual means.

    Args:
        curves: :func:`~ml_engine.training.evaluation.regression_curves`.

    Returns:
        The figure: left axes one bar per residual bin (actual - predicted), right axes the
        mean prediction per bin of the actual value (a line labelled ``binned means``) and
        the identity line (``perfect``).
    """
    fig = _figure(11.0, 4.5)
    left, right = fig.subplots(1, 2)
    edges = np.asarray(curves["residual_edges"], dtype=float)
    left.bar(edges[:-1], curves["residual_counts"], width=np.diff(edges), align="edge")
    left.axvline(0.0, color="grey", linestyle="--")
    left.set(xlabel="residual (actual - predicted)", ylabel="rows", title="Residuals")
    right.plot(curves["actual_mean"], curves["predicted_mean"], marker="o", label="binned means")
    lo, hi = curves["actual_edges"][0], curves["actual_edges"][-1]
    right.plot([lo, hi], [lo, hi], linestyle="--", color="grey", label="perfect")
    right.set(
        xlabel="actual (bin mean)", ylabel="predicted (bin mean)", title="Predicted vs actual"
    )
    right.legend(loc="upper left")
    return fig


def feature_importance_figure(importances: Mapping[str, Any], top_n: int = 20) -> Figure:
    """The ``top_n`` features by absolute importance as horizontal bars, largest on top.

    Args:
        importances: ``{"kind", "names", "values"}`` sorted by decreasing absolute value
            (:func:`~ml_engine.training.evaluation.feature_importances`).
        top_n: how many features to show.

    Returns:
        The figure: one bar per feature (signed for coefficients), named on the y axis.
    """
    names = list(importances["names"])[:top_n]
    values = list(importances["values"])[:top_n]
    fig = _figure(7.0, max(3.0, 0.8 + 0.3 * len(names)))
    ax = fig.add_subplot()
    positions = np.arange(len(names))[::-1]
    ax.barh(positions, values)
    ax.set_yticks(positions, labels=names)
    ax.axvline(0.0, color="grey", linewidth=0.8)
    ax.set(xlabel=str(importances["kind"]).replace("_", " "), title=f"Top {len(names)} features")
    return fig
