"""``attnmoe fit``, ``predict`` and ``impute``: the tabular estimators on CSV files.

The commands are thin: they read a CSV with pandas, call
:class:`~attnmoe.tabular.AttentionMoEClassifier` /
:class:`~attnmoe.tabular.AttentionMoEImputer`, and write a model folder
(``save_pretrained``: JSON + safetensors) or a CSV. Every output is written to a
temporary file beside its destination and renamed into place, so an interrupted
command never leaves half a file.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import pandas as pd


def parse_estimator_params(text: str | None, option: str, estimator: type) -> dict[str, Any]:
    """A command-line JSON object of ``estimator``'s parameters, checked against its own."""
    if not text:
        return {}
    try:
        params = json.loads(text)
    except json.JSONDecodeError as err:
        raise ValueError(f"{option} is not valid JSON: {err}") from err
    if not isinstance(params, dict):
        raise ValueError(f"{option} must be a JSON object, e.g. '{{\"epochs\": 100}}'")
    unknown = sorted(set(params) - set(estimator().get_params()))
    if unknown:
        raise ValueError(
            f"{option}: {unknown} are not parameters of {estimator.__name__} "
            f"(see help(attnmoe.tabular.{estimator.__name__}))"
        )
    return params


def _read(path: str) -> pd.DataFrame:
    frame = pd.read_csv(path)
    if frame.empty:
        raise ValueError(f"{path} has no rows")
    return frame


def _write_csv(frame: pd.DataFrame, path: str) -> None:
    """Write ``frame`` to ``path`` through a temporary file renamed into place."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, staging = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", newline="") as fh:
            frame.to_csv(fh, index=False)
        os.replace(staging, target)
    except BaseException:
        Path(staging).unlink(missing_ok=True)
        raise


def _columns(frame: pd.DataFrame, names: list[str], what: str) -> None:
    missing = [n for n in names if n not in frame.columns]
    if missing:
        raise ValueError(f"{what}: DATA has no column(s) {missing}; it has {list(frame.columns)}")


def _cmd_fit(args: argparse.Namespace) -> int:
    from . import AttentionMoEClassifier

    data = _read(args.data)
    _columns(data, [args.target, *args.drop], "--target/--drop")
    params = parse_estimator_params(args.params, "--params", AttentionMoEClassifier)
    params = {"random_state": args.seed, "verbose": 1, **params}
    labelled = data[args.target].notna().to_numpy()
    if not labelled.all():
        print(f"{int((~labelled).sum())} rows without a {args.target!r} label are left out")
    X = data.loc[labelled].drop(columns=[args.target, *args.drop])
    y = data.loc[labelled, args.target]
    if X.shape[1] == 0:
        raise ValueError("no feature columns left after --target and --drop")
    start = time.perf_counter()
    clf = AttentionMoEClassifier(**params).fit(X, y)
    seconds = time.perf_counter() - start
    clf.save_pretrained(args.out)
    print(
        f"fitted on {len(X):,} rows, {X.shape[1]} columns ({', '.join(map(str, X.columns))}), "
        f"{len(clf.classes_)} classes of {args.target!r}, in {seconds:.1f} s; saved to {args.out}"
    )
    return 0


def _cmd_predict(args: argparse.Namespace) -> int:
    from . import AttentionMoEClassifier

    clf = AttentionMoEClassifier.from_pretrained(args.model)
    features = getattr(clf, "feature_names_in_", None)
    if features is None:
        raise ValueError("the model was fitted without column names; predict needs them")
    data = _read(args.data)
    _columns(data, [str(c) for c in features], "the model's columns")
    names = [args.column, f"{args.column}_probability"]
    names += [f"p_{label}" for label in clf.classes_] if args.proba else []
    names += ["top_expert", "top_expert_share"] if args.explain else []
    clash = [c for c in names if c in data.columns]
    if clash:  # never overwrite the caller's data (e.g. the true labels)
        raise ValueError(f"DATA already has column(s) {clash}; choose another --column")

    X = data[[str(c) for c in features]]
    proba = clf.predict_proba(X)  # (n, n_classes)
    added = [clf.classes_[proba.argmax(1)], proba.max(1)]
    added += list(proba.T) if args.proba else []
    if args.explain:
        from ..explain import explain, top_experts

        top = top_experts(explain(clf, X), n=1).set_index("row").reindex(range(len(X)))
        added += [top["feature"].to_numpy(), top["share"].to_numpy()]
    out = pd.concat(
        [data, pd.DataFrame(dict(zip(names, added, strict=True)), index=data.index)], axis=1
    )
    _write_csv(out, args.out)
    counts = out[args.column].value_counts()
    shown = ", ".join(f"{label}: {n:,}" for label, n in counts.items())
    print(f"predicted {len(out):,} rows ({shown}); written to {args.out}")
    return 0


def _cmd_impute(args: argparse.Namespace) -> int:
    from . import AttentionMoEImputer

    data = _read(args.data)
    _columns(data, args.keep, "--keep")
    columns = [c for c in data.columns if c not in args.keep]
    missing = data[columns].isna().sum()
    params = parse_estimator_params(args.params, "--params", AttentionMoEImputer)
    params = {"random_state": args.seed, "verbose": 1, **params}
    out = data.copy()
    if missing.any():
        out[columns] = AttentionMoEImputer(**params).fit_transform(data[columns])
    _write_csv(out, args.out)
    filled = ", ".join(f"{c}: {n:,}" for c, n in missing.items() if n) or "none"
    print(f"filled {int(missing.sum()):,} cells ({filled}); written to {args.out}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``fit``, ``predict`` and ``impute``."""
    p = sub.add_parser(
        "fit",
        help="fit an AttentionMoEClassifier on a CSV and save it",
        description="Train the paper's tabular model (every column and the target as one "
        "sentence, masked-word training) on DATA and save it to --out (JSON + safetensors). "
        "Rows without a target label are left out.",
    )
    p.add_argument("data", help="CSV: feature columns and the target column")
    p.add_argument("--target", required=True, help="column to predict")
    p.add_argument("--out", required=True, help="model folder to write (replaced if present)")
    p.add_argument("--drop", nargs="*", default=[], help="columns that are not features (ids)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--params",
        default=None,
        help="JSON of AttentionMoEClassifier parameters, e.g. '{\"n_ensembles\": 3}'",
    )
    p.set_defaults(func=_cmd_fit)

    p = sub.add_parser(
        "predict",
        help="predict with a saved classifier: a CSV with the prediction per row",
        description="Predict DATA's rows with a model written by `attnmoe fit` (or "
        "save_pretrained). Missing or unseen values are masked, with a warning.",
    )
    p.add_argument("model", help="directory written by `attnmoe fit` or save_pretrained")
    p.add_argument("data", help="CSV with the model's columns (others are kept as they are)")
    p.add_argument("--out", required=True, help="CSV to write: DATA plus the prediction")
    p.add_argument("--column", default="prediction", help="name of the prediction column")
    p.add_argument("--proba", action="store_true", help="also one p_<class> column per class")
    p.add_argument(
        "--explain",
        action="store_true",
        help="also the column (expert) with the largest share of each prediction",
    )
    p.set_defaults(func=_cmd_predict)

    p = sub.add_parser(
        "impute",
        help="fill the missing cells of a CSV with the masked-word model of its rows",
        description="Fit an AttentionMoEImputer on DATA (all columns but --keep) and write "
        "DATA with every missing cell filled by its most probable value.",
    )
    p.add_argument("data", help="CSV with missing cells")
    p.add_argument("--out", required=True, help="CSV to write")
    p.add_argument("--keep", nargs="*", default=[], help="columns left as they are (ids)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--params", default=None, help="JSON of AttentionMoEImputer parameters")
    p.set_defaults(func=_cmd_impute)


__all__ = ["parse_estimator_params", "register"]
