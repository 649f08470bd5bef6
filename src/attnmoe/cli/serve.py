"""``attnmoe serve``, ``log-labels`` and ``monitor``: the HTTP service and its log.

``serve`` loads a saved classifier once and answers ``POST /predict`` on
uvicorn; ``log-labels`` appends labels that arrived later to a prediction log;
``monitor`` writes the log as one HTML page (see :mod:`attnmoe.serve`). The
library is imported when a command runs: the ``serve`` extra is optional.
"""

from __future__ import annotations

import argparse
import importlib
from pathlib import Path

import pandas as pd


def serve_package():
    """:mod:`attnmoe.serve`, or one line saying to install the ``serve`` extra."""
    try:
        serve = importlib.import_module("attnmoe.serve")
    except ImportError as err:  # fastapi, uvicorn or sqlalchemy missing
        raise ValueError(
            f"this command needs the serve extra ({err.name} is missing): "
            "pip install 'attnmoe[serve]'"
        ) from None
    return serve


def _read_token(path: str) -> str:
    """The bearer token in ``path`` (surrounding whitespace dropped); never printed."""
    token = Path(path).read_text(encoding="utf-8").strip()
    if not token or any(c.isspace() for c in token):
        raise ValueError(f"--token-file: {path} must hold one token without spaces")
    return token


def _cmd_serve(args: argparse.Namespace) -> int:
    create_app = serve_package().create_app
    import uvicorn

    token = None if args.token_file is None else _read_token(args.token_file)
    limits = {"max_rows": args.max_rows, "max_bytes": args.max_bytes}
    log = None if args.log is None else serve_package().PredictionLog(args.log, sync=args.log_sync)
    app = create_app(args.model, log=log, token=token, groups=args.group, **limits)
    state = app.state.predictor
    logged = "not logged" if args.log is None else f"logged to {app.state.log.name}"
    print(
        f"serving {state.model_id} ({len(state.columns)} columns, {len(state.classes)} classes) "
        f"on http://{args.host}:{args.port}; predictions {logged}"
        + ("; a bearer token is required" if token else "")
    )
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return 0


def _cmd_log_labels(args: argparse.Namespace) -> int:
    serve = serve_package()
    labels = pd.read_csv(args.labels, dtype={"request_id": str, "label": str})
    log = serve.PredictionLog(args.db)
    try:
        written, unmatched = log.add_labels(labels)
    finally:
        log.close()
    note = f" ({unmatched:,} match no logged prediction yet)" if unmatched else ""
    print(f"added {written:,} labels to {log.name}{note}")
    return 0


def _cmd_monitor(args: argparse.Namespace) -> int:
    from .outputs import check_output

    serve = serve_package()

    check_output(args.out, inputs=[None if "://" in args.db else args.db])
    log = serve.PredictionLog(args.db)
    try:
        data = serve.monitor_data(log, args.threshold)
        serve.write_monitor(log, args.out, args.threshold, data)
    finally:
        log.close()
    baseline = "" if data["baseline"] else " (no training baseline: drift not measured)"
    print(
        f"{data['n']:,} predictions over {len(data['days'])} days, "
        f"{len(data['alerts'])} drift alerts{baseline}, {len(data['bias_alerts'])} bias alerts; "
        f"written to {args.out}"
    )
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``serve``, ``log-labels`` and ``monitor``."""
    p = sub.add_parser(
        "serve",
        help="serve a saved classifier over HTTP (JSON), logging every prediction",
        description='Answer POST /predict ({"rows": [{column: value, ...}]}: class, '
        "probabilities and the top experts per head), GET /model and GET /health for the "
        "model in MODEL (written by `attnmoe fit`), loaded once and checked against its "
        "manifest. Needs the serve extra (pip install attnmoe[serve]).",
    )
    p.add_argument("model", help="directory written by `attnmoe fit` or save_pretrained")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    p.add_argument(
        "--log",
        metavar="DB_URL",
        default=None,
        help="append every prediction to this database: a path (SQLite) or an SQLAlchemy "
        "URL such as postgresql+psycopg://user@host/db",
    )
    p.add_argument(
        "--log-sync",
        choices=["normal", "full"],
        default="normal",
        help="SQLite log: 'normal' (default) syncs at checkpoints (a logged prediction "
        "survives a killed server, not a power cut); 'full' syncs every commit to disk "
        "(it survives a power cut; each commit waits for the disk)",
    )
    p.add_argument(
        "--token-file",
        default=None,
        help="file holding a bearer token that every request must send "
        "(Authorization: Bearer TOKEN)",
    )
    p.add_argument(
        "--group",
        nargs="+",
        default=[],
        metavar="COL",
        help="columns logged with each prediction for audits per group: model columns, or "
        'keys of the request\'s per-row "groups"',
    )
    p.add_argument("--max-rows", type=int, default=1000, help="rows per request (default 1000)")
    p.add_argument(
        "--max-bytes", type=int, default=1 << 20, help="request body size (default 1 MiB)"
    )
    p.set_defaults(func=_cmd_serve)

    p = sub.add_parser(
        "log-labels",
        help="add labels that arrived later to a prediction log",
        description="Append LABELS (CSV: request_id, row, label) to the prediction log DB, "
        "where they join the logged predictions by request id and row.",
    )
    p.add_argument("db", metavar="DB_URL", help="the log: a path (SQLite) or an SQLAlchemy URL")
    p.add_argument("labels", help="CSV with columns request_id, row, label")
    p.set_defaults(func=_cmd_log_labels)

    p = sub.add_parser(
        "monitor",
        help="the prediction log as one HTML page: usage, drift and accuracy per day",
        description="Write a self-contained HTML page from the prediction log DB: predictions "
        "and each column's share of the gates per day (UTC), the columns whose mean gate moved "
        "past --threshold from the model's training baseline, and, once labels arrived, the "
        "accuracy per day and per group column and week (the bias audit's accuracy gap).",
    )
    p.add_argument("db", metavar="DB_URL", help="the log: a path (SQLite) or an SQLAlchemy URL")
    p.add_argument("--out", required=True, help="HTML file to write")
    p.add_argument(
        "--threshold",
        type=float,
        default=0.05,
        help="flag a column whose mean gate moves by more than this from training (default 0.05)",
    )
    p.set_defaults(func=_cmd_monitor)


__all__ = ["register"]
