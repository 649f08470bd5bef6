"""``attnmoe.serve.PredictionLog``: concurrent writers, labels, the schema version."""

from __future__ import annotations

import multiprocessing
import sqlite3

import pandas as pd
import pytest

from attnmoe.serve import SCHEMA_VERSION, LogUnavailableError, PredictionLog

ANSWER = {"class": "yes", "probability": 0.75, "experts": {"0": []}}


def _append_many(target: str, writer: int, n: int) -> None:
    log = PredictionLog(target, timeout=30)
    for k in range(n):  # one request (one transaction) per append, as a server does
        log.append([ANSWER], model_id="m", model_checksum=None, request_id=f"w{writer}-{k}")
    log.close()


def test_four_writer_processes_lose_nothing(tmp_path):
    target = str(tmp_path / "log.db")  # a new log: the writers also race to create it
    context = multiprocessing.get_context("fork")  # the children need no fresh imports
    workers = [context.Process(target=_append_many, args=(target, w, 200)) for w in range(4)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=120)
    assert [w.exitcode for w in workers] == [0] * 4
    with sqlite3.connect(target) as db:
        assert db.execute("SELECT count(*) FROM predictions").fetchone() == (800,)
        assert db.execute("SELECT count(DISTINCT request_id) FROM predictions").fetchone() == (800,)


def test_sqlite_is_in_wal_mode_and_a_path_or_url_open_the_same_log(tmp_path):
    path = tmp_path / "log.db"
    PredictionLog(str(path)).append([ANSWER], model_id="m", model_checksum="c", request_id="r")
    assert PredictionLog(f"sqlite:///{path}").count() == 1
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        assert db.execute("SELECT version FROM schema_version").fetchall() == [(SCHEMA_VERSION,)]


def test_a_newer_schema_is_refused_in_one_line(tmp_path):
    path = tmp_path / "log.db"
    PredictionLog(str(path)).close()
    with sqlite3.connect(path) as db:
        db.execute("UPDATE schema_version SET version = ?", (SCHEMA_VERSION + 1,))
    with pytest.raises(ValueError, match="newer than this attnmoe") as err:
        PredictionLog(str(path))
    assert "\n" not in str(err.value)


def test_labels_join_by_request_and_row_the_latest_winning(tmp_path):
    log = PredictionLog(str(tmp_path / "log.db"))
    log.append([ANSWER, ANSWER], model_id="m", model_checksum=None, request_id="a")
    log.append([ANSWER], model_id="m", model_checksum=None, request_id="b")
    labels = pd.DataFrame({"request_id": ["a", "b", "b", "zz"], "row": [1, 0, 0, 0]})
    labels["label"] = ["no", "no", "yes", "yes"]
    assert log.add_labels(labels) == (4, 1)
    joined = log.labelled()
    labelled = [None if pd.isna(v) else v for v in joined["label"]]
    assert list(zip(joined["request_id"], joined["row"], labelled, strict=True)) == [
        ("a", 0, None), ("a", 1, "no"), ("b", 0, "yes"),
    ]  # fmt: skip
    with pytest.raises(ValueError, match="'label'"):
        log.add_labels(labels.drop(columns="label"))
    with pytest.raises(ValueError, match="'row'"):
        log.add_labels(labels.assign(row=[0.5, 1, 2, 3]))


def test_a_locked_database_raises_log_unavailable(tmp_path):
    path = tmp_path / "log.db"
    log = PredictionLog(str(path), timeout=0.05)
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        with pytest.raises(LogUnavailableError, match="locked"):
            log.append([ANSWER], model_id="m", model_checksum=None, request_id="r")
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    log.append([ANSWER], model_id="m", model_checksum=None, request_id="r")
    assert log.count() == 1


def test_a_version_1_log_is_upgraded_in_place(tmp_path):
    path = tmp_path / "log.db"
    with sqlite3.connect(path) as db:  # the layout of schema version 1, one record
        db.executescript(
            """
            CREATE TABLE schema_version (id INTEGER PRIMARY KEY, version INTEGER NOT NULL);
            INSERT INTO schema_version VALUES (1, 1);
            CREATE TABLE predictions (id INTEGER PRIMARY KEY, time VARCHAR(32) NOT NULL,
                model_id VARCHAR(200) NOT NULL, model_checksum VARCHAR(64),
                request_id VARCHAR(64) NOT NULL, "row" INTEGER NOT NULL, predicted TEXT NOT NULL,
                probability FLOAT NOT NULL, experts TEXT NOT NULL, groups TEXT NOT NULL);
            INSERT INTO predictions VALUES (1, '2026-01-01T00:00:00+00:00', 'm', NULL, 'old', 0,
                'yes', 0.5, '{}', '{}');
            """
        )
    log = PredictionLog(str(path))
    log.append([{**ANSWER, "gates": {"a": 0.25}}], model_id="m", model_checksum=None,
               request_id="new")  # fmt: skip
    frame = log.labelled()
    assert list(frame["request_id"]) == ["old", "new"]
    assert [None if pd.isna(g) else g for g in frame["gates"]] == [None, '{"a":0.25}']
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT version FROM schema_version").fetchall() == [(SCHEMA_VERSION,)]
    log.register_model("m", None, {"overall": [1.0]})
    log.register_model("m", None, {"overall": [1.0]})  # once per model and checksum
    assert list(log.models()["baseline"]) == [{"overall": [1.0]}]


def test_a_log_locked_at_start_says_so_in_one_line(tmp_path):
    path = tmp_path / "log.db"
    log = PredictionLog(str(path), timeout=0.05)
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        with pytest.raises(LogUnavailableError, match="locked"):
            log.register_model("m", None, None)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    log.register_model("m", None, None)
    assert len(log.models()) == 1
