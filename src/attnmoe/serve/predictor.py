"""A saved classifier ready to answer requests: rows checked, predicted, explained.

The model loads once (``from_pretrained`` checks every file against
``manifest.json``); each request's rows are checked against the model's columns
before anything is predicted, so a bad request names the field at fault.

One-layer models (the default) answer from precomputed experts-form tables
(:class:`~attnmoe.serve.tables.ExpertTables`): the rows are encoded cell by cell
(each distinct value's code remembered), and the probabilities, gates and expert
shares come from one NumPy pass over the rows of any number of requests at once.
Other models take the :func:`~attnmoe.explain.explain` path; both give the same
answers.
"""

from __future__ import annotations

import hashlib
import itertools
import math
import threading
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..explain import explain, top_experts
from ..explain.usage import expert_names, target_gates
from ..model.io import MANIFEST_NAME
from ..tabular import AttentionMoEClassifier
from ..tabular.encoding import interpolated_codes, label_indices
from .tables import ExpertTables

#: experts reported per head and prediction
TOP_EXPERTS = 3
#: distinct values whose code each categorical column remembers
CODE_CACHE = 4096
#: the largest finite float: a larger whole number in a binned column has no bin
_FLOAT_MAX = int(np.finfo(float).max)
#: int64's range: a whole number outside it makes pandas keep a column as objects
_INT64 = (-(2**63), 2**63 - 1)


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


def _column_texts(values: Sequence[Any]) -> list[str]:
    """One column's JSON cells as text, as ``pandas.DataFrame.from_records(rows)``
    followed by ``.astype(object).astype(str)`` spells them (the ``value`` that
    :func:`~attnmoe.explain.explain` reports): the column's type is inferred from all
    its cells, so a whole number beside a null or a fraction reads ``3.0``."""
    present = [v for v in values if v is not None]
    kinds = {type(v) for v in present}
    if not present:
        return ["None"] * len(values)
    if kinds == {str}:  # pandas' string dtype: a null is NaN
        return ["nan" if v is None else v for v in values]
    numbers = kinds <= {int, float}
    if numbers and all(_INT64[0] <= v <= _INT64[1] for v in present if type(v) is int):
        if float in kinds or len(present) < len(values):  # float64
            return ["nan" if v is None else str(float(v)) for v in values]
        return [str(v) for v in values]  # int64
    return [str(v) for v in values]  # objects: a null is None


@dataclass
class Prepared:
    """A request's checked rows, ready to predict with others (:meth:`Predictor.predict_many`).

    ``tokens`` (rows, columns + 1, the target masked) and ``texts`` (each cell as
    ``explain`` spells it) on the tables path; ``frame`` on the ``explain`` path.
    """

    n_rows: int
    tokens: np.ndarray | None = None
    texts: np.ndarray | None = None
    frame: pd.DataFrame | None = None


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
        self._lock = threading.Lock()  # one explain() at a time: the models are shared
        self.tables = ExpertTables.for_classifier(self.clf)
        self._codes: list[dict] = [{} for _ in self.columns]

    def register(self, log) -> None:
        """Note this model and its training baseline (if saved with one) in ``log``."""
        baseline = getattr(self.clf, "gate_baseline_", None)
        log.register_model(self.model_id, self.checksum, baseline)

    @property
    def classes(self) -> list:
        return [plain(c) for c in self.clf.classes_]

    def _check_cell(self, where: str, column: str, value: Any) -> None:
        if value is None:  # a missing cell: masked, as in a CSV
            return
        if column in self.numeric:
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise RowError(where, f"expected a number or null, got {type(value).__name__}")
            if isinstance(value, int) and abs(value) > _FLOAT_MAX:  # binned as a float
                raise RowError(where, "expected a finite number (this one is too large)")
        elif not isinstance(value, (str, int, float, bool)):
            kind = type(value).__name__
            raise RowError(where, f"expected a string, number, bool or null, got {kind}")
        if isinstance(value, float) and not math.isfinite(value):
            raise RowError(where, "expected a finite number")

    def check(self, rows: list[Any]) -> None:
        """Check the request's ``rows`` (column -> value objects) against the model.

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

    def frame(self, rows: list[Any]) -> pd.DataFrame:
        """The request's ``rows`` checked (:meth:`check`) and as a table in the model's order."""
        self.check(rows)
        return pd.DataFrame.from_records(rows, columns=self.columns)

    def _code(self, j: int, value: Any) -> float:
        """Column ``j``'s code of a checked JSON cell, as ``TableEncoder.encode`` gives it
        (fractional between a numeric column's knots)."""
        coding, mask = self.clf.encoder_.columns_[j], self.clf.mask_id_
        if value is None:
            return mask
        if coding.kind == "numeric":
            return float(interpolated_codes(coding.knots, np.array([float(value)]))[0][0])
        if coding.kind == "binned":
            return int(np.searchsorted(coding.edges, float(value), side="right"))
        cache = self._codes[j]
        key = (type(value), value)  # typed: True and 1 are different cells
        code = cache.get(key)
        if code is None:
            code = int(label_indices(coding.categories, [value])[0])
            code = mask if code < 0 else code
            if len(cache) < CODE_CACHE:
                cache[key] = code
        return code

    def prepare(self, rows: list[Any]) -> Prepared:
        """Check ``rows`` (:meth:`check`) and make them ready for :meth:`predict_many`."""
        self.check(rows)
        if self.tables is None:
            return Prepared(len(rows), frame=pd.DataFrame.from_records(rows, columns=self.columns))
        tokens = np.full((len(rows), len(self.columns) + 1), self.clf.mask_id_, dtype=float)
        texts = np.full(tokens.shape, "(masked)", dtype=object)
        for j, column in enumerate(self.columns):
            cells = [row[column] for row in rows]
            tokens[:, j] = [self._code(j, v) for v in cells]
            texts[:, j] = _column_texts(cells)
        return Prepared(len(rows), tokens=tokens, texts=texts)

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

    def _table_experts(
        self, share: np.ndarray, gate: np.ndarray, texts: np.ndarray
    ) -> list[dict[str, list]]:
        """Per row, head -> its top experts by ``|share|`` (ties: column order), as
        :meth:`_experts` ranks them."""
        features = [*self.columns, "(target)"]
        order = np.argsort(-np.abs(share), axis=-1, kind="stable")[..., :TOP_EXPERTS]
        out = []
        for b in range(share.shape[0]):
            out.append({
                str(h): [
                    {"feature": features[j], "value": str(texts[b, j]),
                     "gate": float(gate[b, h, j]), "share": float(share[b, h, j])}
                    for j in order[b, h]
                ]
                for h in range(share.shape[1])
            })  # fmt: skip
        return out

    def predict_many(self, batch: Sequence[Prepared]) -> list[list[dict[str, Any]]]:
        """The answers (:meth:`predict`) to several prepared requests, their rows
        predicted together on the tables path."""
        if self.tables is None:
            return [self.predict(p.frame) for p in batch]
        tokens = np.concatenate([p.tokens for p in batch])
        texts = np.concatenate([p.texts for p in batch])
        proba, share, gate = self.tables.answer(tokens)
        answers = self._answers(proba, self._table_experts(share, gate, texts), gate.mean(1))
        bounds = np.cumsum([0, *(p.n_rows for p in batch)])
        return [answers[a:z] for a, z in itertools.pairwise(bounds)]

    def predict(self, X: pd.DataFrame, proba: np.ndarray | None = None) -> list[dict[str, Any]]:
        """Per row: ``class``, ``probability`` (of it), ``probabilities`` (class -> p),
        ``experts`` (head -> the top experts with their gate and share) and ``gates``
        (expert -> its gate averaged over the heads and members, six decimals).

        The probabilities are ``predict_proba``'s (on the tables path, to rounding:
        float64 tables beside the model's own arithmetic); ``proba``: already computed
        for ``X``, then kept as given.
        """
        if self.tables is not None:
            with warnings.catch_warnings():  # masked cells are reported by predict_proba
                warnings.simplefilter("ignore", UserWarning)
                tokens = self.clf.tokens(X).numpy()
            texts = np.full(tokens.shape, "(masked)", dtype=object)
            texts[:, :-1] = X.reset_index(drop=True).astype(object).to_numpy().astype(str)
            proba, share, gate = self.tables.answer(tokens, proba)
            return self._answers(proba, self._table_experts(share, gate, texts), gate.mean(1))
        with self._lock, warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # masked cells: predict_proba's to say
            proba = self.clf.predict_proba(X) if proba is None else proba
            predicted = self.clf.classes_[proba.argmax(1)]
            experts = self._experts(X, predicted)
            gates = target_gates(self.clf, X).mean(1)
        return self._answers(proba, experts, gates)

    def _answers(
        self, proba: np.ndarray, experts: list[dict[str, list]], gates: np.ndarray
    ) -> list[dict[str, Any]]:
        """The answer per row; ``gates`` ``(rows, experts)``: each expert's gate averaged
        over the heads and members, logged for the monitor (``gates``, not served)."""
        predicted = self.clf.classes_[proba.argmax(1)]
        classes = self.classes
        names = expert_names(self.clf)
        return [
            {
                "class": plain(predicted[i]),
                "probability": float(proba[i].max()),
                "probabilities": {str(c): float(p) for c, p in zip(classes, proba[i], strict=True)},
                "experts": experts[i],
                "gates": {n: round(float(g), 6) for n, g in zip(names, gates[i], strict=True)},
            }
            for i in range(len(proba))
        ]
