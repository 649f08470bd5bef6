"""A saved classifier ready to answer requests: rows checked, predicted, explained.

The model loads once (``from_pretrained`` checks every file against
``manifest.json``); each request's rows are checked against the model's columns
before anything is predicted, so a bad request names the field at fault.
"""

from __future__ import annotations

import hashlib
import math
import threading
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..explain import explain, top_experts
from ..model.io import MANIFEST_NAME
from ..tabular import AttentionMoEClassifier

#: experts reported per head and prediction
TOP_EXPERTS = 3


class RowError(ValueError):
    """A request row that does not fit the model; ``field`` names where (``rows[2].age``)."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field


def plain(value: Any) -> Any:
    """A NumPy scalar as the Python one (JSON and SQL take those)."""
    return value.item() if isinstance(value, (np.generic,)) else value


def _manifest_sha256(directory: Path) -> str | None:
    """SHA-256 of ``manifest.json``: one checksum that covers every file it lists."""
    path = directory / MANIFEST_NAME
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else None


class Predictor:
    """A fitted :class:`~attnmoe.tabular.AttentionMoEClassifier` loaded from ``model_dir``.

    Attributes
    ----------
    columns : list of str
        The model's feature columns, in its order.
    model_id : str
        The model folder's name.
    checksum : str or None
        SHA-256 of its ``manifest.json`` (None for a folder saved without one).
    """

    def __init__(self, model_dir: str | Path, clf: AttentionMoEClassifier | None = None) -> None:
        self.directory = Path(model_dir)
        # ``clf``: the model already loaded from ``model_dir`` (``attnmoe predict``)
        self.clf = AttentionMoEClassifier.from_pretrained(self.directory) if clf is None else clf
        names = getattr(self.clf, "feature_names_in_", None)
        if names is None:
            raise ValueError(f"{model_dir}: the model was fitted without column names")
        self.columns = [str(c) for c in names]
        self.numeric = {
            c.name for c in self.clf.encoder_.columns_ if c.kind in ("binned", "numeric")
        }
        self.model_id = self.directory.resolve().name
        self.checksum = _manifest_sha256(self.directory)
        self._lock = threading.Lock()  # one prediction at a time: the models are shared

    @property
    def classes(self) -> list:
        return [plain(c) for c in self.clf.classes_]

    def _check_cell(self, where: str, column: str, value: Any) -> None:
        if value is None:  # a missing cell: masked, as in a CSV
            return
        if column in self.numeric:
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise RowError(where, f"expected a number or null, got {type(value).__name__}")
        elif not isinstance(value, (str, int, float, bool)):
            kind = type(value).__name__
            raise RowError(where, f"expected a string, number, bool or null, got {kind}")
        if isinstance(value, float) and not math.isfinite(value):
            raise RowError(where, "expected a finite number")

    def frame(self, rows: list[Any]) -> pd.DataFrame:
        """The request's ``rows`` (column -> value objects) as a table in the model's order.

        Raises
        ------
        RowError
            A row that is no object, an unknown or missing column, a value of the wrong type.
        """
        for i, row in enumerate(rows):
            if not isinstance(row, dict):
                raise RowError(f"rows[{i}]", "expected an object of column: value")
            unknown = [c for c in row if c not in self.columns]
            if unknown:
                known = f"unknown column; the model's columns are {self.columns}"
                raise RowError(f"rows[{i}].{unknown[0]}", known)
            missing = [c for c in self.columns if c not in row]
            if missing:
                raise RowError(f"rows[{i}].{missing[0]}", "missing column (null if unknown)")
            for column in self.columns:
                self._check_cell(f"rows[{i}].{column}", column, row[column])
        return pd.DataFrame.from_records(rows, columns=self.columns)

    def _experts(self, X: pd.DataFrame, predicted: np.ndarray) -> list[dict[str, list]]:
        """Per row, head -> its top experts toward the predicted class (gate, share)."""
        with warnings.catch_warnings():  # masked cells are reported by predict_proba
            warnings.simplefilter("ignore", UserWarning)
            frame = explain(self.clf, X, classes=list(predicted))
        frame = frame[frame["kind"] == "expert"]
        # a deeper pure model's experts sit on head paths; one layer's on heads
        path = frame["path"].astype(str)
        codes, heads = pd.factorize(np.where(path != "", path, frame["head"].astype(str)))
        # one top_experts call for every (row, head): each pair ranked as a row of its own
        ranked = top_experts(frame.assign(row=frame["row"] * len(heads) + codes), n=TOP_EXPERTS)
        out: list[dict[str, list]] = [{} for _ in range(len(X))]
        for r in ranked.itertuples(index=False):
            row, head = divmod(int(r.row), len(heads))
            out[row].setdefault(str(heads[head]), []).append({
                "feature": str(r.feature),
                "value": str(r.value),
                "gate": float(r.gate),
                "share": float(r.share),
            })  # fmt: skip
        return out

    def predict(self, X: pd.DataFrame, proba: np.ndarray | None = None) -> list[dict[str, Any]]:
        """Per row: ``class``, ``probability`` (of it), ``probabilities`` (class -> p)
        and ``experts`` (head -> the top experts with their gate and share).

        The probabilities are ``predict_proba``'s, unchanged (``proba``: already
        computed for ``X``).
        """
        with self._lock:
            proba = self.clf.predict_proba(X) if proba is None else proba
            predicted = self.clf.classes_[proba.argmax(1)]
            experts = self._experts(X, predicted)
        classes = self.classes
        return [
            {
                "class": plain(predicted[i]),
                "probability": float(proba[i].max()),
                "probabilities": {str(c): float(p) for c, p in zip(classes, proba[i], strict=True)},
                "experts": experts[i],
            }
            for i in range(len(X))
        ]
