"""Which experts the predictions used: gates at the target, and a streaming usage log.

A prediction's gate ``pi_i.`` is a distribution over the experts (word
locations, table columns) per head. :class:`ExpertUsageLog` keeps running sums
of these distributions overall, per predicted class and per group, so that a
service can log expert usage for millions of predictions in a few kilobytes:
its state depends on the number of experts, heads, classes and groups, never
on the number of rows.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Hashable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from ..model.tables import MemberTables, covered

_CHUNK = 4096


@torch.no_grad()
def target_gates(clf, X) -> np.ndarray:
    """Final-layer gates behind each prediction of a fitted classifier.

    Parameters
    ----------
    clf
        A fitted :class:`~attnmoe.tabular.AttentionMoEClassifier`.
    X
        Table rows.

    Returns
    -------
    numpy.ndarray
        ``(n, M * H, L)``: for ensemble member ``m`` and head ``h`` (index
        ``m * H + h``) the weight of each column (the target's own slot last)
        when the target is masked. Each ``(row, head)`` sums to one.
    """
    tokens = clf.tokens(X)  # target already holds the mask token
    target = tokens.shape[1] - 1
    out = []
    for model in clf.models_:
        was_training = model.training
        model.eval()
        parts = []
        for first in range(0, len(tokens), _CHUNK):
            weights = model.attention_weights(tokens[first : first + _CHUNK])[-1]
            parts.append(weights[:, :, target].double().numpy())
        model.train(was_training)
        out.append(np.concatenate(parts) if parts else np.zeros((0, model.config.n_heads, 0)))
    return np.concatenate(out, axis=1)


@torch.no_grad()
def gate_baseline(clf, tokens: torch.Tensor) -> dict[str, Any]:
    """Each expert's mean gate over token rows: the usage a monitor compares live traffic to.

    Parameters
    ----------
    clf
        A fitted :class:`~attnmoe.tabular.AttentionMoEClassifier` (its models and
        column names are read; ``fit`` calls this on its training rows).
    tokens
        ``(n, n_features + 1)`` token rows with the target (last) masked, as
        :meth:`~attnmoe.tabular.AttentionMoEClassifier.tokens` gives them.

    Returns
    -------
    dict
        ``experts`` (the columns, then ``"(target)"``); ``overall`` (per expert,
        its final-layer gate at the target averaged over the rows, the heads and
        the ensemble members: the shares sum to one); ``heads`` (per head, the
        same averaged over the rows and the members); ``n_rows``.
    """
    heads = 0.0
    for model in clf.models_:
        was_training = model.training
        model.eval()
        total = _target_gate_sums(model, tokens)
        model.train(was_training)
        heads = heads + total / max(len(tokens), 1)
    heads = np.asarray(heads) / len(clf.models_)
    return {
        "experts": expert_names(clf),
        "overall": heads.mean(0).tolist(),
        "heads": heads.tolist(),
        "n_rows": len(tokens),
    }


def _target_gate_sums(model: torch.nn.Module, tokens: torch.Tensor) -> np.ndarray:
    """The final layer's gates at the target (last) location, summed over the rows
    ``(H, L)``. One-layer models read them from their experts-form score table: only the
    target's query is needed, not every location's (a million rows in minutes less)."""
    target = tokens.shape[1] - 1
    total = np.zeros((model.config.n_heads, tokens.shape[1]))
    if covered(model):
        scores = MemberTables.of(model, n_classes=1).scores  # (H, L, V+1)
        heads = np.arange(scores.shape[0])[None, :, None]
        locations = np.arange(tokens.shape[1])[None, None, :]
        for first in range(0, len(tokens), _CHUNK):
            x = tokens[first : first + _CHUNK].numpy().astype(np.float64)
            x[:, target] = model.config.mask_id
            low = np.floor(x).astype(np.int64)
            t = (x - low)[:, None, :]  # fractional codes mix two words' scores
            high = np.where(t[:, 0] > 0, low + 1, low)[:, None, :]
            low = low[:, None, :]
            gate = (1 - t) * scores[heads, locations, low] + t * scores[heads, locations, high]
            gate = np.exp(gate - gate.max(-1, keepdims=True))  # (B, H, L)
            total += (gate / gate.sum(-1, keepdims=True)).sum(0)
        return total
    for first in range(0, len(tokens), _CHUNK):
        weights = model.attention_weights(tokens[first : first + _CHUNK])[-1]
        total += weights[:, :, target].double().sum(0).numpy()  # (H, L)
    return total


def expert_names(clf) -> list[str]:
    """Names of a classifier's experts: its columns, then ``"(target)"``."""
    names = getattr(clf, "feature_names_in_", None)
    if names is None:
        names = [f"x{j}" for j in range(clf.n_features_in_)]
    return [*(str(n) for n in names), "(target)"]


def _is_nan(value: Any) -> bool:
    return isinstance(value, float) and np.isnan(value)


class ExpertUsageLog:
    """Running expert-usage statistics in memory that does not grow with the rows.

    For every scope (all predictions, each predicted class, each group) the log
    keeps the number of predictions, the sum of their gates per head and
    expert, and how often each expert was the strongest (head-averaged gate).
    Means are sums over counts, so logs of separate batches or machines
    :meth:`merge` exactly.

    Parameters
    ----------
    experts
        Expert names (table columns or ``"location j"``), one per gate entry.
    n_heads
        Heads (for an ensemble: members x heads) per gate.
    max_keys
        At most this many distinct classes and groups each are tracked; the
        rest are pooled under ``"(other)"`` (with a warning), which keeps memory
        bounded even for a free-text group column.

    Examples
    --------
    >>> import numpy as np
    >>> log = ExpertUsageLog(["a", "b"], n_heads=1)
    >>> log.update(np.array([[[0.9, 0.1]], [[0.3, 0.7]]]), predicted=["x", "y"])
    >>> log.to_frame().query("scope == 'overall' and head == -1").mean_gate.tolist()
    [0.6, 0.4]
    """

    OTHER = "(other)"

    def __init__(self, experts: Sequence[str], n_heads: int = 1, max_keys: int = 1000) -> None:
        self.experts = [str(e) for e in experts]
        self.n_heads = int(n_heads)
        self.max_keys = int(max_keys)
        # scope -> key -> [count, gate sums (H, L), top-expert counts (L,)]
        self._stats: dict[str, dict[str, list[Any]]] = {"overall": {}, "class": {}, "group": {}}
        self._warned = False

    @classmethod
    def for_classifier(cls, clf, max_keys: int = 1000) -> ExpertUsageLog:
        """An empty log shaped for a fitted classifier (all members' heads)."""
        heads = sum(m.config.n_heads for m in clf.models_)
        return cls(expert_names(clf), n_heads=heads, max_keys=max_keys)

    # -- accumulating ----------------------------------------------------------
    def _slot(self, scope: str, key: Hashable) -> list[Any]:
        table = self._stats[scope]
        key = str(key)
        if key not in table and scope != "overall" and len(table) >= self.max_keys:
            if not self._warned:
                warnings.warn(
                    f"more than {self.max_keys} distinct {scope} keys: the rest are pooled "
                    f"as {self.OTHER!r}",
                    UserWarning,
                    stacklevel=3,
                )
                self._warned = True
            key = self.OTHER
        if key not in table:
            length = len(self.experts)
            table[key] = [0, np.zeros((self.n_heads, length)), np.zeros(length, dtype=np.int64)]
        return table[key]

    def _add(self, scope: str, key: Hashable, gates: np.ndarray, top: np.ndarray) -> None:
        slot = self._slot(scope, key)
        slot[0] += len(gates)
        slot[1] += gates.sum(0)
        slot[2] += np.bincount(top, minlength=len(self.experts))

    def update(
        self,
        gates: np.ndarray,
        predicted: Sequence[Hashable] | None = None,
        group: Sequence[Hashable] | None = None,
    ) -> None:
        """Add a batch of predictions.

        Parameters
        ----------
        gates
            ``(n, heads, experts)`` gate weights (e.g. from :func:`target_gates`).
        predicted
            ``(n,)`` predicted classes (optional).
        group
            ``(n,)`` group labels (optional).
        """
        gates = np.asarray(gates, dtype=float)
        if gates.ndim != 3 or gates.shape[1:] != (self.n_heads, len(self.experts)):
            raise ValueError(
                f"gates must be (n, {self.n_heads}, {len(self.experts)}), got {gates.shape}"
            )
        top = gates.mean(1).argmax(1)
        self._add("overall", "all", gates, top)
        for scope, keys in (("class", predicted), ("group", group)):
            if keys is None:
                continue
            # a missing label is a group of its own, named as the audit names it
            keys = pd.Series(np.asarray(keys, dtype=object)).fillna("(missing)")
            keys = keys.astype(str).to_numpy()
            if len(keys) != len(gates):
                raise ValueError(f"{scope}: {len(keys)} labels for {len(gates)} rows")
            for key in pd.unique(keys):
                rows = keys == key
                self._add(scope, key, gates[rows], top[rows])

    def log(self, clf, X, group: Sequence[Hashable] | None = None) -> np.ndarray:
        """Predict ``X`` with ``clf``, log the gates, and return the predictions."""
        predicted = clf.predict(X)
        self.update(target_gates(clf, X), predicted=predicted, group=group)
        return predicted

    def merge(self, other: ExpertUsageLog) -> ExpertUsageLog:
        """Add another log's counts into this one (same experts and heads)."""
        if other.experts != self.experts or other.n_heads != self.n_heads:
            raise ValueError("cannot merge logs of different experts or heads")
        for scope, table in other._stats.items():
            for key, (count, sums, tops) in table.items():
                slot = self._slot(scope, key)
                slot[0] += count
                slot[1] += sums
                slot[2] += tops
        return self

    # -- reading -------------------------------------------------------------------
    @property
    def n_rows(self) -> int:
        """Predictions logged so far."""
        overall = self._stats["overall"].get("all")
        return 0 if overall is None else int(overall[0])

    def state_nbytes(self) -> int:
        """Bytes held by the accumulated statistics (independent of the rows logged)."""
        return sum(
            sums.nbytes + tops.nbytes + 8
            for table in self._stats.values()
            for _count, sums, tops in table.values()
        )

    def usage(self, scope: str = "overall") -> pd.DataFrame:
        """Head-averaged mean gate: one row per key of ``scope``, one column per expert."""
        table = self._stats[scope]
        data = {key: sums.mean(0) / max(count, 1) for key, (count, sums, _) in table.items()}
        frame = pd.DataFrame.from_dict(data, orient="index", columns=self.experts)
        frame.index.name = scope
        return frame

    def to_frame(self) -> pd.DataFrame:
        """Tidy statistics.

        Columns: ``scope`` (overall / class / group), ``key``, ``head`` (-1 =
        averaged over heads), ``expert`` (index), ``feature`` (name),
        ``mean_gate``, ``top_share`` (share of predictions where this expert had
        the largest head-averaged gate; head -1 rows only) and ``n_rows``.
        """
        records = []
        for scope, table in self._stats.items():
            for key, (count, sums, tops) in table.items():
                means = sums / max(count, 1)
                for head in [-1, *range(self.n_heads)]:
                    row = means.mean(0) if head == -1 else means[head]
                    for j, name in enumerate(self.experts):
                        records.append(
                            {
                                "scope": scope,
                                "key": key,
                                "head": head,
                                "expert": j,
                                "feature": name,
                                "mean_gate": float(row[j]),
                                "top_share": float(tops[j] / max(count, 1))
                                if head == -1
                                else np.nan,
                                "n_rows": int(count),
                            }
                        )
        columns = ["scope", "key", "head", "expert", "feature", "mean_gate", "top_share", "n_rows"]
        return pd.DataFrame.from_records(records, columns=columns)

    def write(self, path: str | Path, format: str | None = None) -> Path:
        """Write :meth:`to_frame` as Parquet, CSV or JSON lines (by suffix or ``format``)."""
        path = Path(path)
        kind = (format or path.suffix.lstrip(".")).lower()
        frame = self.to_frame()
        path.parent.mkdir(parents=True, exist_ok=True)
        if kind in ("parquet", "pq"):
            frame.to_parquet(path, index=False)
        elif kind == "csv":
            frame.to_csv(path, index=False)
        elif kind in ("jsonl", "ndjson"):
            with open(path, "w") as fh:
                for record in frame.to_dict(orient="records"):
                    clean = {
                        k: (None if isinstance(v, float) and np.isnan(v) else v)
                        for k, v in record.items()
                    }
                    fh.write(json.dumps(clean) + "\n")
        else:
            raise ValueError(f"unknown format {kind!r}: use parquet, csv or jsonl")
        return path
