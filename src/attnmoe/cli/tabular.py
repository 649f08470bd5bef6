"""``attnmoe fit``, ``predict`` and ``impute``: the tabular estimators on CSV files.

The commands are thin: they read a CSV with pandas, call
:class:`~attnmoe.tabular.AttentionMoEClassifier` /
:class:`~attnmoe.tabular.AttentionMoEImputer`, and write a model folder
(``save_pretrained``: JSON + safetensors) or a CSV. The CSV files are read and
written by :mod:`attnmoe.cli.csv_files`: cells as written, outputs renamed into
place.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import warnings
from typing import Any

import numpy as np
import pandas as pd

from ..tabular.params import parse_estimator_params
from ..training.distributed.launch import _launched_by_torchrun
from .csv_files import add_sep, empty_columns, labels_as_written, read_table, spell_filled
from .options import add_checkpoint_options, add_device, add_out, add_random_state
from .outputs import check_output, say_replaced, write_csv
from .table_chunks import CHUNK_ROWS, TableChunks, read_in_chunks


def _columns(frame: pd.DataFrame, names: list[str], what: str) -> None:
    missing = [n for n in names if n not in frame.columns]
    if missing:
        raise ValueError(f"{what}: DATA has no column(s) {missing}; it has {list(frame.columns)}")


def _without_empty(features: pd.DataFrame) -> pd.DataFrame:
    """The feature columns less those without a single value (said in one warning each).

    An empty column teaches the model nothing and would only be masked at predict
    time; the saved model does not ask for it.
    """
    empty = empty_columns(features, list(features.columns))
    for name in empty:
        warnings.warn(
            f"column {name!r} is empty (every cell missing): left out of the model", stacklevel=2
        )
    return features.drop(columns=empty)


#: estimator parameters that have a flag of their own (``--max-steps`` sets ``max_steps``)
_FLAGGED = ("max_steps", "device", "nproc", "checkpoint_dir", "checkpoint_every", "resume")


def _settings(args: argparse.Namespace, estimator: type) -> dict[str, Any]:
    """The estimator's parameters: ``--params``, the seed and the flags that set one."""
    params = parse_estimator_params(args.params, "--params", estimator)
    if "random_state" in params:
        raise ValueError("--params: give the seed with --random-state, not in --params")
    flags = {k: getattr(args, k) for k in _FLAGGED if getattr(args, k, None) is not None}
    both = sorted(set(flags) & set(params))
    if both:
        flag = "--" + both[0].replace("_", "-")
        raise ValueError(f"--params: give {both[0]} with {flag}, not in --params")
    return {"random_state": args.random_state, "verbose": 1, **params, **flags}


def _fit(estimator, *data):
    """``estimator.fit_transform`` or ``fit``, a wrong parameter type said in one line."""
    try:
        method = estimator.fit_transform if hasattr(estimator, "transform") else estimator.fit
        fitted = method(*data)
    except TypeError as err:  # e.g. --params '{"epochs": "x"}'
        raise ValueError(f"cannot fit with these --params: {err}") from None
    _end_progress_line(estimator)  # after a finished fit only: an error is one line
    return fitted


def _end_progress_line(estimator) -> None:
    """End the line a finished progress bar leaves open, so what follows starts a fresh one.

    tqdm clears a closed bar with a carriage return, no newline: on a terminal
    the next line overwrites it, but in a log or a pipe it would be glued to the
    bar's last frame.
    """
    if getattr(estimator, "verbose", 0) > 0 and not sys.stderr.isatty():
        sys.stderr.write("\n")
        sys.stderr.flush()


def _unlabeled_rows(path: str, sep: str | None, columns: list[str]) -> pd.DataFrame:
    """The feature ``columns`` of the CSV at ``path`` (its other columns, the target
    among them, are ignored): rows that train the columns only (fit's ``X_unlabeled``)."""
    rows, _ = read_table(path, sep)
    missing = [c for c in columns if c not in rows.columns]
    if missing:
        raise ValueError(
            f"--unlabeled: {path} has no column(s) {missing}; it has {list(rows.columns)}"
        )
    return rows[columns]


def _cmd_fit(args: argparse.Namespace) -> int:
    from ..model.io import check_replaceable
    from ..tabular import AttentionMoEClassifier

    inputs = [args.data] if args.unlabeled is None else [args.data, args.unlabeled]
    check_output(args.out, inputs=inputs, folder=True)
    check_replaceable(args.out, "classifier.json")  # before training, not after
    if read_in_chunks(args.data, args.chunk_rows):
        return _fit_chunked(args)
    data, text = read_table(args.data, args.sep)
    _columns(data, [args.target, *args.drop, *args.categorical], "--target/--drop/--categorical")
    for name in args.categorical:  # unordered: categories, not numbers with knots
        data[name] = data[name].astype("category")
    params = _settings(args, AttentionMoEClassifier)
    labelled = data[args.target].notna().to_numpy()
    if not labelled.any():
        raise ValueError(f"the target column {args.target!r} has no labels")
    features = _without_empty(data.drop(columns=[args.target, *args.drop]))
    unlabeled = None
    if not labelled.all():
        n_out = int((~labelled).sum())
        if args.use_unlabeled:
            unlabeled = features.loc[~labelled]
            print(f"{n_out} rows without a {args.target!r} label train their columns only")
        else:
            print(f"{n_out} rows without a {args.target!r} label are left out")
    X = features.loc[labelled]
    if args.unlabeled is not None:
        new_rows = _unlabeled_rows(args.unlabeled, args.sep, list(X.columns))
        unlabeled = new_rows if unlabeled is None else pd.concat([unlabeled, new_rows])
        print(f"{len(new_rows):,} rows of {args.unlabeled} train their columns only")
    y = labels_as_written(data.loc[labelled, args.target], text.loc[labelled, args.target])
    if X.shape[1] == 0:
        raise ValueError("no feature columns left after --target and --drop")
    if y.nunique() < 2:
        raise ValueError(f"the target {args.target!r} has one value only: nothing to predict")
    start = time.perf_counter()
    clf = _fit(AttentionMoEClassifier(**params), X, y, unlabeled)
    seconds = time.perf_counter() - start
    without = "" if unlabeled is None else f" (and {len(unlabeled):,} without a label)"
    _save_fitted(clf, args, f"{len(X):,} rows{without}", seconds)
    return 0


def _save_fitted(clf, args: argparse.Namespace, rows: str, seconds: float) -> None:
    """Save the fitted classifier to ``--out`` (rank 0 only under torchrun) and say so."""
    if _launched_by_torchrun() and os.environ["RANK"] != "0":  # rank 0 saves the model
        return
    replaced = say_replaced(args.out)
    clf.save_pretrained(args.out)
    replaced()
    columns = [str(c) for c in clf.feature_names_in_]
    print(
        f"fitted on {rows}, {len(columns)} columns ({', '.join(columns)}), "
        f"{len(clf.classes_)} classes of {args.target!r}, in {seconds:.1f} s; saved to {args.out}"
    )


def _fit_chunked(args: argparse.Namespace) -> int:
    """``attnmoe fit`` on a file read in chunks (``fit_chunks``): a Parquet file, a large
    file, or ``--chunk-rows``."""
    from ..tabular import AttentionMoEClassifier

    if args.use_unlabeled or args.unlabeled is not None:
        raise ValueError(
            "--use-unlabeled and --unlabeled need the table in memory: not with a file read "
            "in chunks (--chunk-rows, a Parquet file, or a CSV of 256 MiB or more)"
        )
    chunk_rows = CHUNK_ROWS if args.chunk_rows is None else args.chunk_rows
    chunks = TableChunks(args.data, args.target, args.drop, args.categorical, args.sep, chunk_rows)
    print(f"{args.data}: read in chunks of {chunk_rows:,} rows, twice (the encoder, the codes)")
    clf = AttentionMoEClassifier(**_settings(args, AttentionMoEClassifier))
    start = time.perf_counter()
    try:
        clf.fit_chunks(chunks)
    except TypeError as err:  # e.g. --params '{"epochs": "x"}'
        raise ValueError(f"cannot fit with these --params: {err}") from None
    finally:  # a chunk's error (a column's type) comes while a bar is drawn: a line of its own
        _end_progress_line(clf)
    seconds = time.perf_counter() - start
    if chunks.n_unlabelled:
        print(f"{chunks.n_unlabelled:,} rows without a {args.target!r} label are left out")
    for name in chunks.empty:  # known only once read: the model keeps the column
        warnings.warn(
            f"column {name!r} is empty (every cell missing): read in chunks, it stays in the "
            "model, always masked (--drop it)",
            stacklevel=2,
        )
    _save_fitted(clf, args, f"{chunks.n_labelled:,} rows", seconds)
    return 0


#: rows explained at a time by ``predict --explain``: bounds its memory
_EXPLAIN_CHUNK = 2048


def _top_columns(clf, X: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Per row, the feature column whose expert pushed hardest toward the prediction.

    The target location's own expert (a constant prior, not a column) is left out;
    the contribution is to the predicted class's logit (exact for the pure form,
    integrated gradients for bert), summed over heads, averaged over ensemble
    members. It is negative when every column pushed against the prediction.
    """
    from ..explain import explain, top_experts

    columns, contributions = [], []
    n_experts = X.shape[1] + 1
    for first in range(0, len(X), _EXPLAIN_CHUNK):
        chunk = X.iloc[first : first + _EXPLAIN_CHUNK]
        with warnings.catch_warnings():  # masked cells were already counted by predict_proba
            warnings.simplefilter("ignore", UserWarning)
            ranked = top_experts(explain(clf, chunk), n=n_experts)
        ranked = ranked[ranked["location"] < X.shape[1]]  # the columns, not the target slot
        best = ranked.loc[ranked.groupby("row")["share"].idxmax()].set_index("row")
        best = best.reindex(range(len(chunk)))
        columns.append(best["feature"].to_numpy())
        contributions.append(best["share"].to_numpy(dtype=float) / len(clf.models_))
    return np.concatenate(columns), np.concatenate(contributions)


def _cmd_predict(args: argparse.Namespace) -> int:
    from ..tabular import AttentionMoEClassifier

    check_output(args.out, inputs=[args.data], model_dirs=[args.model])
    if args.group and args.log is None:
        raise ValueError("--group names the columns --log records: give --log too")
    clf = AttentionMoEClassifier.from_pretrained(args.model)
    features = getattr(clf, "feature_names_in_", None)
    if features is None:
        raise ValueError("the model was fitted without column names; predict needs them")
    data, text = read_table(args.data, args.sep)
    _columns(data, [str(c) for c in features], "the model's columns")
    _columns(data, args.group, "--group")
    log = None if args.log is None else _open_log(args.log)  # a bad log fails before predicting
    for name in empty_columns(data, [str(c) for c in features]):
        warnings.warn(
            f"column {name!r} is empty in DATA: every row is predicted without it", stacklevel=2
        )
    if not args.column.strip():  # a blank header cell reads back as "Unnamed: N"
        raise ValueError("--column must be a name, not blank")
    names = [args.column, f"{args.column}_probability"]
    names += [f"p_{label}" for label in clf.classes_] if args.proba else []
    names += ["top_expert", "top_expert_contribution"] if args.explain else []
    repeated = sorted({n for n in names if names.count(n) > 1})
    clash = [n for n in names if n in data.columns]
    if repeated or clash:  # never overwrite the caller's data, nor one new column another
        raise ValueError(
            f"the output would repeat column(s) {repeated or clash} (from --column, --proba "
            "or --explain, or already in DATA); choose another --column"
        )

    X = data[[str(c) for c in features]]
    proba = clf.predict_proba(X)  # (n, n_classes)
    added = [clf.classes_[proba.argmax(1)], proba.max(1)]
    added += list(proba.T) if args.proba else []
    added += list(_top_columns(clf, X)) if args.explain else []
    new = pd.DataFrame(dict(zip(names, added, strict=True)), index=text.index)
    out = pd.concat([text, new], axis=1)
    write_csv(out, args.out)
    counts = new[args.column].value_counts()
    shown = ", ".join(f"{label}: {n:,}" for label, n in counts.items())
    print(f"predicted {len(out):,} rows ({shown}); written to {args.out}")
    if log is not None:
        _log_predictions(log, args, clf, data, X, proba)
    return 0


def _open_log(target: str):
    from .serve import serve_package

    return serve_package().PredictionLog(target)


def _log_predictions(log, args: argparse.Namespace, clf, data: pd.DataFrame, X, proba) -> None:
    """``predict --log``: one record per row, under one request id (said, for labels)."""
    import uuid

    from ..serve import Predictor

    groups = data[args.group].astype(object).where(data[args.group].notna(), None)
    try:
        request_id = uuid.uuid4().hex
        predictor = Predictor(args.model, clf)
        predictor.register(log)  # the model and its training baseline, for the monitor
        n = log.append(
            predictor.predict(X, proba),
            model_id=predictor.model_id,
            model_checksum=predictor.checksum,
            request_id=request_id,
            groups=groups.to_dict("records"),
        )
    finally:
        log.close()
    print(f"logged {n:,} predictions to {log.name} as request {request_id}")


def _cmd_impute(args: argparse.Namespace) -> int:
    from ..tabular import AttentionMoEImputer

    check_output(args.out, inputs=[args.data])
    data, text = read_table(args.data, args.sep)
    _columns(data, args.keep, "--keep")
    columns = [c for c in data.columns if c not in args.keep]
    if not columns:
        raise ValueError("every column is in --keep: nothing to fill")
    holes = data[columns].isna()
    empty = [str(c) for c in columns if holes[c].all()]
    if empty:
        raise ValueError(
            f"columns {empty} are empty: nothing to learn them from; add them to --keep"
        )
    params = _settings(args, AttentionMoEImputer)
    out = text.copy()  # every cell as written; only the missing ones change
    if holes.to_numpy().any():
        filled = _fit(AttentionMoEImputer(**params), data[columns])
        for column in columns:
            rows = holes[column].to_numpy()
            if rows.any():
                cells = filled[column].to_numpy()[rows]
                out.loc[rows, column] = spell_filled(
                    data[column][~rows], text[column][~rows], cells
                )
    write_csv(out, args.out)
    counts = holes.sum()
    shown = ", ".join(f"{c}: {n:,}" for c, n in counts.items() if n) or "none"
    print(f"filled {int(counts.sum()):,} cells ({shown}); written to {args.out}")
    return 0


def _model_options(p: argparse.ArgumentParser, estimator: str) -> None:
    add_random_state(p, "random_state of the model (default 0)")
    p.add_argument(
        "--params",
        default=None,
        help=f"JSON of {estimator} parameters, e.g. '{{\"n_ensembles\": 3}}'",
    )
    p.add_argument(
        "--max-steps",
        type=int,
        default=None,
        metavar="N",
        help="cap on the optimizer steps of the training (max_steps; default the "
        "estimator's, 75,000; --params '{\"max_steps\": null}' for none)",
    )


def _distributed_options(p: argparse.ArgumentParser) -> None:
    """``--nproc`` and the checkpoint flags: the estimator's data-parallel training."""
    p.add_argument(
        "--nproc",
        type=int,
        default=None,
        help="processes that train together (data-parallel, gloo on CPU); under torchrun "
        "every rank runs this command and rank 0 saves the model",
    )
    add_checkpoint_options(
        p,
        dir_help="write checkpoints here (trains on the data-parallel trainer, even on "
        "one process)",
        every_help="steps between checkpoints (0: at the end only)",
        resume_help="continue from the newest checkpoint in --checkpoint-dir",
    )
    for action in p._actions:  # unset flags leave the estimator's defaults
        if action.dest in ("checkpoint_every", "resume"):
            action.default = None


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``fit``, ``predict`` and ``impute``."""
    p = sub.add_parser(
        "fit",
        help="fit an AttentionMoEClassifier on a CSV and save it",
        description="Train the paper's tabular model (every column and the target as one "
        "sentence, masked-word training) on DATA and save it to --out (JSON + safetensors). "
        "Rows without a target label are left out, or with --use-unlabeled train their "
        "columns only.",
    )
    p.add_argument(
        "data", help="CSV or Parquet (.parquet, .pq): feature columns and the target column"
    )
    add_sep(p)
    p.add_argument("--target", required=True, help="column to predict")
    p.add_argument(
        "--chunk-rows",
        type=int,
        default=None,
        metavar="N",
        help="read DATA in chunks of N rows (fit_chunks: the table never whole in memory); "
        f"Parquet files and files of 256 MiB or more are read in chunks of {CHUNK_ROWS:,} "
        "without it",
    )
    add_out(
        p,
        "model folder to write; an existing one is replaced only if it holds a saved model",
        required=True,
    )
    p.add_argument(
        "--drop", nargs="+", default=[], help="columns that are not features (ids); after DATA"
    )
    p.add_argument(
        "--use-unlabeled",
        action="store_true",
        help="rows without a target label join the training on their columns (fit's "
        "X_unlabeled; e.g. the rows you will predict) instead of being left out",
    )
    p.add_argument(
        "--unlabeled",
        metavar="NEW.csv",
        default=None,
        help="CSV of rows without labels (e.g. the rows you will predict): their feature "
        "columns join the training as fit's X_unlabeled; a target column there is ignored",
    )
    p.add_argument(
        "--categorical",
        nargs="+",
        metavar="COL",
        default=[],
        help="number columns whose values are unordered labels (codes, ids, zip codes): "
        "categories; other number columns keep their order (knots)",
    )
    _model_options(p, "AttentionMoEClassifier")
    add_device(
        p, help="where training runs: cpu (default) or cuda, cuda:1 (the torch engine on a GPU)"
    )
    _distributed_options(p)
    p.set_defaults(func=_cmd_fit)

    p = sub.add_parser(
        "predict",
        help="predict with a saved classifier: a CSV with the prediction per row",
        description="Predict DATA's rows with a model written by `attnmoe fit` (or "
        "save_pretrained). Missing or unseen values are masked, with a warning.",
    )
    p.add_argument("model", help="directory written by `attnmoe fit` or save_pretrained")
    p.add_argument("data", help="CSV with the model's columns (others are kept as written)")
    add_sep(p)
    add_out(p, "CSV to write: DATA as written plus the new columns", required=True)
    p.add_argument("--column", default="prediction", help="name of the prediction column")
    p.add_argument("--proba", action="store_true", help="also one p_<class> column per class")
    p.add_argument(
        "--explain",
        action="store_true",
        help="also top_expert, the column whose expert pushed hardest toward each "
        "prediction, and top_expert_contribution, its part of the predicted class's logit",
    )
    p.add_argument(
        "--log",
        metavar="DB_URL",
        default=None,
        help="also append every prediction (with its top experts) to this log: a path "
        "(SQLite) or an SQLAlchemy URL; needs the serve extra",
    )
    p.add_argument(
        "--group",
        nargs="+",
        default=[],
        metavar="COL",
        help="with --log: DATA columns logged with each prediction (audits per group)",
    )
    p.set_defaults(func=_cmd_predict)

    p = sub.add_parser(
        "impute",
        help="fill the missing cells of a CSV with the masked-word model of its rows",
        description="Fit an AttentionMoEImputer on DATA (all columns but --keep) and write "
        "DATA with every missing cell filled by its most probable value.",
    )
    p.add_argument("data", help="CSV with missing cells")
    add_sep(p)
    add_out(p, "CSV to write: DATA as written, gaps filled", required=True)
    p.add_argument(
        "--keep", nargs="+", default=[], help="columns left as written (ids); after DATA"
    )
    _model_options(p, "AttentionMoEImputer")
    p.set_defaults(func=_cmd_impute)


__all__ = ["register"]
