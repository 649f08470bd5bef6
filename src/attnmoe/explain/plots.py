"""The report pages' plots: matplotlib figures (Agg backend) as PNG ``data:`` URIs.

A page embeds each plot as ``<img src="data:image/png;base64,...">``, so it
needs no network and no files beside it. Labels taken from the user's data are
drawn as written (matplotlib would read ``$...$`` as math).
"""

from __future__ import annotations

import base64
import io
from collections.abc import Iterable

import numpy as np
import pandas as pd


def figure(width: float, height: float):
    """A new matplotlib figure and axes, drawn off-screen (Agg)."""
    import matplotlib

    matplotlib.use("Agg", force=True)  # no display, no GUI toolkit
    import matplotlib.pyplot as plt

    return plt.subplots(figsize=(width, height))


def png(fig) -> str:
    """``fig`` as a PNG data URL (embedded in the page: no file beside it); closes it."""
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _labels(values: Iterable) -> list[str]:
    """Data values as plot labels, drawn as written: matplotlib reads ``$...$`` as math."""
    return [str(v).replace("$", r"\$") for v in values]


def heatmap(matrix: pd.DataFrame, title: str, xlabel: str, ylabel: str) -> str:
    """Gate weights, one cell per (row, column) of ``matrix``, each written on its cell."""
    fig, ax = figure(1.2 + 0.9 * matrix.shape[1], 1.0 + 0.45 * matrix.shape[0])
    values = matrix.to_numpy(dtype=float)
    image = ax.imshow(values, cmap="viridis", aspect="auto", vmin=0)
    ax.set_xticks(range(matrix.shape[1]), _labels(matrix.columns), rotation=35, ha="right")
    ax.set_yticks(range(matrix.shape[0]), _labels(matrix.index))
    for (r, c), value in np.ndenumerate(values):
        ax.text(c, r, f"{value:.2f}", ha="center", va="center", color="w", fontsize=8)
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    fig.colorbar(image, ax=ax, label="mean gate weight")
    return png(fig)


def reliability(bins: pd.DataFrame, n_rows: int) -> str:
    """Share correct against mean confidence per bin (``confidence``, ``share_correct``,
    ``rows``); a point's area grows with its bin's share of the ``n_rows`` rows."""
    fig, ax = figure(4.6, 4.2)
    ax.plot([0, 1], [0, 1], "--", color="grey", label="perfectly calibrated")
    sizes = 20 + 200 * bins["rows"].to_numpy() / max(1, n_rows)
    ax.scatter(bins["confidence"], bins["share_correct"], s=sizes, zorder=3)
    ax.plot(bins["confidence"], bins["share_correct"], color="C0", label="this model")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("confidence (probability of the predicted class)")
    ax.set_ylabel("share correct")
    ax.set_title("Reliability: are the probabilities honest?")
    ax.legend(loc="upper left")
    return png(fig)


def confusion(matrix: np.ndarray, classes: list[str]) -> str:
    """Counts of (true, predicted) classes, each written on its cell."""
    n = len(classes)
    fig, ax = figure(1.5 + 0.8 * n, 1.2 + 0.7 * n)
    ax.imshow(matrix, cmap="Blues")
    for (r, c), value in np.ndenumerate(matrix):
        ax.text(c, r, str(value), ha="center", va="center")
    ax.set_xticks(range(n), _labels(classes))
    ax.set_yticks(range(n), _labels(classes))
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title("Confusion matrix")
    return png(fig)


def shift_bars(
    before: pd.Series,
    after: pd.Series,
    labels: tuple[str, str] = ("training-like data (DATA)", "new data (--shift-data)"),
) -> str:
    """Mean gate weight per column on the training-like data and on the new data
    (``labels``: the two bars' names in the legend)."""
    fig, ax = figure(1.5 + 0.9 * len(before), 3.6)
    x = np.arange(len(before))
    ax.bar(x - 0.2, before.to_numpy(), width=0.4, label=labels[0])
    ax.bar(x + 0.2, after.to_numpy(), width=0.4, label=labels[1])
    ax.set_xticks(x, _labels(before.index), rotation=35, ha="right")
    ax.set_ylabel("mean gate weight")
    ax.set_title("Which columns the model listens to, before and after")
    ax.legend()
    return png(fig)
