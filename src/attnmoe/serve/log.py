"""The prediction log: one record per predicted row, in SQLite or any SQLAlchemy database.

Tables (SQLAlchemy Core):

- ``predictions``: time (UTC, ISO 8601), model id and checksum, request id, row
  index, predicted class, its probability, the top experts per head (JSON), the
  group columns named at start (JSON object) and every expert's gate averaged
  over the heads (JSON object; empty in records of schema version 1);
- ``models``: each model that logged, with its training baseline of the gates
  (``gate_baseline_`` of the classifier; null for models saved without one);
- ``labels``: labels that arrive later, joined to ``predictions`` by request id
  and row (:meth:`PredictionLog.add_labels`, ``attnmoe log-labels``);
- ``schema_version``: one row, the layout's version; a newer one is refused.

A plain path (or ``sqlite:///path``) is SQLite in WAL mode: readers never block
the writers, and several writer processes queue on the database lock (each
append is one transaction, all rows of a request or none). A database locked
past ``timeout`` raises :class:`LogUnavailableError`, which the server answers
with 503. The server commits the records of the requests that arrive together
in one transaction (:class:`GroupCommit`) and answers each request only once
its records are committed.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Iterable, Mapping
from concurrent.futures import Future
from typing import Any

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError

from .batching import Batches

#: version of the tables' layout; a log written by a newer attnmoe is refused, an older
#: one upgraded in place (1 -> 2: ``predictions.gates`` and the ``models`` table added)
SCHEMA_VERSION = 2

_META = sa.MetaData()
SCHEMA = sa.Table(
    "schema_version",
    _META,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("version", sa.Integer, nullable=False),
)
PREDICTIONS = sa.Table(
    "predictions",
    _META,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("time", sa.String(32), nullable=False),
    sa.Column("model_id", sa.String(200), nullable=False),
    sa.Column("model_checksum", sa.String(64)),
    sa.Column("request_id", sa.String(64), nullable=False),
    sa.Column("row", sa.Integer, nullable=False),
    sa.Column("predicted", sa.Text, nullable=False),
    sa.Column("probability", sa.Float, nullable=False),
    sa.Column("experts", sa.Text, nullable=False),
    sa.Column("groups", sa.Text, nullable=False),
    sa.Column("gates", sa.Text),
    sa.Index("ix_predictions_request", "request_id", "row"),
    sa.Index("ix_predictions_time", "time"),
)
MODELS = sa.Table(
    "models",
    _META,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("time", sa.String(32), nullable=False),
    sa.Column("model_id", sa.String(200), nullable=False),
    sa.Column("model_checksum", sa.String(64)),
    sa.Column("baseline", sa.Text),
)
LABELS = sa.Table(
    "labels",
    _META,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("time", sa.String(32), nullable=False),
    sa.Column("request_id", sa.String(64), nullable=False),
    sa.Column("row", sa.Integer, nullable=False),
    sa.Column("label", sa.Text, nullable=False),
    sa.Index("ix_labels_request", "request_id", "row"),
)


class LogUnavailableError(OSError):
    """The log database could not take the records (locked, full, unreachable)."""


def _json_value(value: Any) -> Any:
    """NumPy scalars as Python ones, anything else JSON cannot spell as text."""
    return value.item() if hasattr(value, "item") else str(value)


def database_url(target: str) -> str:
    """An SQLAlchemy URL for ``target``: a URL as given, a plain path as SQLite."""
    return target if "://" in target else f"sqlite:///{target}"


def utc_now() -> str:
    """The time now in UTC, ISO 8601 with microseconds."""
    return dt.datetime.now(dt.UTC).isoformat(timespec="microseconds")


#: SQLite's ``synchronous`` settings :class:`PredictionLog` offers (see its ``sync``)
SYNC_MODES = ("full", "normal")


def _sqlite_pragmas(timeout: float, sync: str):
    def connect(dbapi_connection, _record) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={int(timeout * 1000)}")
        cursor.execute(f"PRAGMA synchronous={sync.upper()}")
        cursor.close()

    return connect


class PredictionLog:
    """Append predictions and labels to the log at ``target`` (a path or an SQLAlchemy URL).

    Parameters
    ----------
    target
        A file path or ``sqlite:///...`` (SQLite, WAL mode), or any SQLAlchemy
        URL (``postgresql+psycopg://user@host/db``); the tables are created if absent.
    timeout
        Seconds a write waits for a locked database before
        :class:`LogUnavailableError`.
    sync : {"normal", "full"}
        SQLite only: ``"normal"`` (default) syncs at WAL checkpoints only, so a
        committed record survives a killed process (it is in the operating
        system's hands) but the last commits may be lost to a power cut or an
        operating-system crash, and each commit costs no disk sync; ``"full"``
        syncs every commit to disk, so a committed record survives a power cut.

    Raises
    ------
    ValueError
        If the log was written by a newer attnmoe (its schema version is higher),
        or ``sync`` is not one of the above.
    """

    def __init__(self, target: str, timeout: float = 10.0, sync: str = "normal") -> None:
        if sync not in SYNC_MODES:
            raise ValueError(f"sync must be one of {SYNC_MODES}, got {sync!r}")
        url = sa.engine.make_url(database_url(target))
        self.name = url.render_as_string(hide_password=True)
        self.engine = sa.create_engine(url)
        if url.get_backend_name() == "sqlite":
            sa.event.listen(self.engine, "connect", _sqlite_pragmas(timeout, sync))
        try:
            self._prepare()
        except OperationalError as err:
            raise LogUnavailableError(f"the log {self.name} is unavailable: {err.orig}") from None

    def _prepare(self) -> None:
        for attempt in range(5):  # processes opening a new log at once race to create it
            try:
                _META.create_all(self.engine, checkfirst=True)
                break
            except OperationalError:
                if attempt == 4:
                    raise
                time.sleep(0.05 * (attempt + 1))
        with self.engine.begin() as conn:
            found = conn.execute(sa.select(SCHEMA.c.version)).scalar()
        if found is None:
            try:  # several processes may open a new log at once: one insert wins
                with self.engine.begin() as conn:
                    conn.execute(SCHEMA.insert().values(id=1, version=SCHEMA_VERSION))
            except IntegrityError:
                pass
        elif found > SCHEMA_VERSION:
            raise ValueError(
                f"the log {self.name} has schema version {found}, newer than this attnmoe's "
                f"({SCHEMA_VERSION}); upgrade attnmoe"
            )
        elif found < SCHEMA_VERSION:
            self._upgrade(found)

    def _upgrade(self, found: int) -> None:
        """Bring a log of schema version ``found`` to :data:`SCHEMA_VERSION` in one transaction."""
        with self.engine.begin() as conn:
            if conn.execute(sa.select(SCHEMA.c.version)).scalar() != found:
                return  # another process upgraded it meanwhile
            columns = {c["name"] for c in sa.inspect(conn).get_columns("predictions")}
            if "gates" not in columns:  # 1 -> 2 (the models table: create_all made it)
                conn.execute(sa.text("ALTER TABLE predictions ADD COLUMN gates TEXT"))
            conn.execute(SCHEMA.update().values(version=SCHEMA_VERSION))

    def _write(self, table: sa.Table, records: list[dict[str, Any]]) -> None:
        if not records:
            return
        try:
            with self.engine.begin() as conn:  # one transaction: all records or none
                conn.execute(table.insert(), records)
        except DBAPIError as err:  # locked, disk full, unreachable: an error answer, no crash
            raise LogUnavailableError(f"the log {self.name} is unavailable: {err.orig}") from None

    @staticmethod
    def records(
        predictions: Iterable[Mapping[str, Any]],
        *,
        model_id: str,
        model_checksum: str | None,
        request_id: str,
        groups: Iterable[Mapping[str, Any]] | None = None,
        time: str | None = None,
    ) -> list[dict[str, Any]]:
        """The rows :meth:`append` writes for one request (see there)."""
        predictions = list(predictions)
        groups = [{} for _ in predictions] if groups is None else list(groups)
        now = utc_now() if time is None else time
        return [
            {
                "time": now,
                "model_id": model_id,
                "model_checksum": model_checksum,
                "request_id": request_id,
                "row": row,
                "predicted": str(p["class"]),
                "probability": float(p["probability"]),
                "experts": json.dumps(p["experts"], separators=(",", ":")),
                "groups": json.dumps(dict(g), default=_json_value, separators=(",", ":")),
                "gates": json.dumps(p.get("gates") or {}, separators=(",", ":")),
            }
            for row, (p, g) in enumerate(zip(predictions, groups, strict=True))
        ]

    def append(
        self,
        predictions: Iterable[Mapping[str, Any]],
        *,
        model_id: str,
        model_checksum: str | None,
        request_id: str,
        groups: Iterable[Mapping[str, Any]] | None = None,
        time: str | None = None,
    ) -> int:
        """Append one record per prediction (``class``, ``probability``, ``experts`` and
        ``gates`` as :meth:`Predictor.predict <attnmoe.serve.Predictor.predict>` gives
        them); rows are
        numbered from 0 in order. ``time``: ISO 8601 UTC (default now; for imports of
        older predictions). Returns how many were written."""
        records = self.records(
            predictions,
            model_id=model_id,
            model_checksum=model_checksum,
            request_id=request_id,
            groups=groups,
            time=time,
        )
        self._write(PREDICTIONS, records)
        return len(records)

    def append_records(self, records: list[dict[str, Any]]) -> int:
        """Write rows made by :meth:`records` (of any number of requests) in one
        transaction: all or none. Returns how many were written."""
        self._write(PREDICTIONS, records)
        return len(records)

    def add_labels(self, labels: pd.DataFrame) -> tuple[int, int]:
        """Append ``labels`` (columns ``request_id``, ``row``, ``label``).

        Returns
        -------
        (written, unmatched)
            How many were written, and how many of them match no logged prediction.
        """
        missing = [c for c in ("request_id", "row", "label") if c not in labels.columns]
        if missing:
            raise ValueError(f"the labels need column(s) {missing}; they have {list(labels)}")
        if labels[["request_id", "row", "label"]].isna().any().any():
            raise ValueError("the labels have empty request_id, row or label cells")
        rows = pd.to_numeric(labels["row"], errors="coerce")
        if rows.isna().any() or (rows != rows.round()).any() or (rows < 0).any():
            raise ValueError("the labels' column 'row' must hold whole numbers >= 0")
        now = utc_now()
        records = [
            {"time": now, "request_id": str(r), "row": int(n), "label": str(lab)}
            for r, n, lab in zip(labels["request_id"], rows, labels["label"], strict=True)
        ]
        self._write(LABELS, records)
        keys = {(r["request_id"], r["row"]) for r in records}
        with self.engine.connect() as conn:
            known = {
                (r, n)
                for r, n in conn.execute(
                    sa.select(PREDICTIONS.c.request_id, PREDICTIONS.c.row).where(
                        PREDICTIONS.c.request_id.in_({k[0] for k in keys})
                    )
                )
            }
        return len(records), sum(1 for r in records if (r["request_id"], r["row"]) not in known)

    def register_model(
        self, model_id: str, model_checksum: str | None, baseline: dict[str, Any] | None
    ) -> None:
        """Note the model that logs here, with its training baseline of the gates
        (``gate_baseline_``; None for a model saved without one), once per checksum."""
        try:
            with self.engine.begin() as conn:
                known = conn.execute(
                    sa.select(sa.func.count())
                    .select_from(MODELS)
                    .where(MODELS.c.model_id == model_id)
                    .where(MODELS.c.model_checksum == model_checksum)
                ).scalar()
                if not known:
                    text = None if baseline is None else json.dumps(baseline, separators=(",", ":"))
                    conn.execute(
                        MODELS.insert().values(
                            time=utc_now(),
                            model_id=model_id,
                            model_checksum=model_checksum,
                            baseline=text,
                        )
                    )
        except DBAPIError as err:  # a log locked or full at start: one line, no traceback
            raise LogUnavailableError(f"the log {self.name} is unavailable: {err.orig}") from None

    def models(self) -> pd.DataFrame:
        """The models that logged here, in the order they first did (``baseline`` parsed)."""
        with self.engine.connect() as conn:
            frame = pd.DataFrame(
                conn.execute(sa.select(MODELS).order_by(MODELS.c.id)).mappings().all()
            )
        if frame.empty:
            return pd.DataFrame(columns=["id", "time", "model_id", "model_checksum", "baseline"])
        frame["baseline"] = [None if b is None else json.loads(b) for b in frame["baseline"]]
        return frame

    def count(self) -> int:
        """How many predictions the log holds."""
        with self.engine.connect() as conn:
            return int(conn.execute(sa.select(sa.func.count()).select_from(PREDICTIONS)).scalar())

    def labelled(self) -> pd.DataFrame:
        """Every prediction (one row each, in the order logged) with its latest label
        (missing where none arrived)."""
        label = (
            sa.select(LABELS.c.label)
            .where(LABELS.c.request_id == PREDICTIONS.c.request_id)
            .where(LABELS.c.row == PREDICTIONS.c.row)
            .order_by(LABELS.c.id.desc())
            .limit(1)
            .correlate(PREDICTIONS)
            .scalar_subquery()
        )
        query = sa.select(*PREDICTIONS.c, label.label("label")).order_by(PREDICTIONS.c.id)
        with self.engine.connect() as conn:
            return pd.DataFrame(conn.execute(query).mappings().all())

    def close(self) -> None:
        """Release the database connections."""
        self.engine.dispose()


class GroupCommit:
    """Commit the records of requests that arrive together in one transaction.

    :meth:`submit` queues one request's records; a writer thread takes everything
    queued since its last commit and writes it in one transaction, then resolves
    each request's future: with the count written, or with
    :class:`LogUnavailableError` for every request of a failed transaction (none
    of their records is written). A future resolved without error means its
    records are committed.
    """

    def __init__(self, log: PredictionLog, max_requests: int = 256) -> None:
        self.log = log
        self._batches = Batches(self._commit, "attnmoe-log-writer", max_requests)

    def _commit(self, batch: list[tuple[list[dict[str, Any]], Future]]) -> None:
        try:
            self.log.append_records([r for records, _ in batch for r in records])
        except LogUnavailableError as err:
            for _, future in batch:
                future.set_exception(LogUnavailableError(str(err)))
            return
        for records, future in batch:
            future.set_result(len(records))

    def submit(self, records: list[dict[str, Any]]) -> Future:
        """Queue one request's records (:meth:`PredictionLog.records`)."""
        return self._batches.submit(records)

    def close(self) -> None:
        """Commit what is queued and stop the writer thread."""
        self._batches.close()
