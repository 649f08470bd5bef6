"""``attnmoe.serve.create_app``: answers, bad requests, the bearer token, the log."""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from attnmoe import __version__
from attnmoe.explain import explain, top_experts
from attnmoe.serve import PredictionLog, create_app
from attnmoe.serve.log import GroupCommit

TOKEN = "s3cret-token-4f9a"


@pytest.fixture
def client(model_dir):
    return TestClient(create_app(model_dir))


def test_predictions_equal_predict_proba(client, clf, rows):
    answer = client.post("/predict", json={"rows": rows})
    assert answer.status_code == 200
    body = answer.json()
    assert answer.headers["x-request-id"] == body["request_id"]
    proba = clf.predict_proba(pd.DataFrame(rows))
    for i, got in enumerate(body["predictions"]):
        assert got["row"] == i
        # the served tables run in float64 beside the model's own arithmetic: to rounding
        got_proba = [got["probabilities"][str(c)] for c in clf.classes_]
        assert got_proba == pytest.approx(list(proba[i]), abs=1e-12, rel=0)
        assert got["class"] == clf.classes_[proba[i].argmax()]
        assert got["probability"] == pytest.approx(proba[i].max(), abs=1e-12, rel=0)


def test_experts_per_head_are_explains_top_experts(client, clf, rows):
    got = client.post("/predict", json={"rows": rows[:2]}).json()["predictions"]
    frame = explain(clf, pd.DataFrame(rows[:2]))
    frame = frame[frame["kind"] == "expert"]
    assert set(got[0]["experts"]) == {str(h) for h in frame["head"].unique()}
    for head in frame["head"].unique():
        ranked = top_experts(frame[frame["head"] == head], n=3)
        for row in (0, 1):
            expected = ranked[ranked["row"] == row]
            experts = got[row]["experts"][str(head)]
            assert [e["feature"] for e in experts] == list(expected["feature"])
            assert [e["share"] for e in experts] == pytest.approx(list(expected["share"]))
            assert [e["gate"] for e in experts] == pytest.approx(list(expected["gate"]))


def test_a_missing_cell_is_masked_not_refused(client, clf, rows):
    rows[0]["noise"] = None
    got = client.post("/predict", json={"rows": rows[:1]}).json()["predictions"][0]
    with pytest.warns(UserWarning):
        expected = clf.predict_proba(pd.DataFrame(rows[:1]))[0]
    got_proba = [got["probabilities"][str(c)] for c in clf.classes_]
    assert got_proba == pytest.approx(list(expected), abs=1e-12, rel=0)


def test_health_and_model(client, clf, model_dir):
    assert client.get("/health").json() == {"status": "ok", "model_id": "colours", "log": None}
    info = client.get("/model").json()
    manifest = json.loads((model_dir / "manifest.json").read_text())
    assert info["columns"] == ["colour", "size", "noise"]
    assert info["classes"] == list(clf.classes_)
    assert info["attnmoe_version"] == __version__
    assert info["files"] == {name: e["sha256"] for name, e in manifest["files"].items()}
    assert len(info["checksum"]) == 64


@pytest.mark.parametrize(
    ("change", "status", "field"),
    [
        (lambda r: r[1].update(shape="round"), 422, "rows[1].shape"),
        (lambda r: r[2].pop("size"), 422, "rows[2].size"),
        (lambda r: r[0].update(noise="loud"), 422, "rows[0].noise"),
        (lambda r: r[3].update(colour=["red"]), 422, "rows[3].colour"),
        (lambda r: r.__setitem__(0, 7), 422, "rows[0]"),
    ],
    ids=["unknown column", "missing column", "text for a number", "a list", "not an object"],
)
def test_a_bad_row_is_a_4xx_naming_the_field(client, rows, change, status, field):
    change(rows)
    answer = client.post("/predict", json={"rows": rows})
    assert answer.status_code == status
    assert answer.json()["detail"].startswith(f"{field}: ")


def test_a_bad_body_is_a_4xx_naming_the_field(client, rows):
    answer = client.post("/predict", content=b"{not json", headers={"content-type": "text/json"})
    assert answer.status_code == 400 and answer.json()["detail"].startswith("body: ")
    for body, field in (({"rows": {}}, "rows"), ({"rows": []}, "rows"), ({"row": rows}, "rows")):
        answer = client.post("/predict", json=body)
        assert answer.status_code == 422 and answer.json()["detail"].startswith(field)


def test_oversized_requests_get_413(model_dir, rows):
    client = TestClient(create_app(model_dir, max_rows=4, max_bytes=4096))
    answer = client.post("/predict", json={"rows": rows})
    assert answer.status_code == 413 and answer.json()["detail"].startswith("rows: 5 rows")
    answer = client.post("/predict", json={"rows": rows * 60})
    assert answer.status_code == 413 and answer.json()["detail"].startswith("body: ")
    assert client.post("/predict", json={"rows": rows[:4]}).status_code == 200


def test_the_bearer_token_is_required_and_never_written(model_dir, rows, tmp_path, capfd):
    db = tmp_path / "log.db"
    client = TestClient(create_app(model_dir, log=str(db), token=TOKEN))
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}):
        answer = client.post("/predict", json={"rows": rows}, headers=headers)
        assert answer.status_code == 401
        assert TOKEN not in answer.text
    assert client.get("/model").status_code == 401
    good = client.post(
        "/predict", json={"rows": rows}, headers={"Authorization": f"Bearer {TOKEN}"}
    )
    assert good.status_code == 200 and TOKEN not in good.text
    assert PredictionLog(str(db)).count() == len(rows)
    written = b"".join(p.read_bytes() for p in tmp_path.iterdir())
    assert TOKEN.encode() not in written
    out, err = capfd.readouterr()
    assert TOKEN not in out + err


def test_every_row_is_logged_with_its_request_and_groups(model_dir, rows, tmp_path):
    db = f"sqlite:///{tmp_path / 'log.db'}"
    client = TestClient(create_app(model_dir, log=db, groups=("colour", "region")))
    extra = [{"region": "north"} for _ in rows]
    body = client.post("/predict", json={"rows": rows, "groups": extra}).json()
    logged = PredictionLog(db).labelled()
    assert list(logged["request_id"]) == [body["request_id"]] * len(rows)
    assert list(logged["row"]) == list(range(len(rows)))
    assert list(logged["predicted"]) == [p["class"] for p in body["predictions"]]
    assert list(logged["probability"]) == [p["probability"] for p in body["predictions"]]
    assert [json.loads(e) for e in logged["experts"]] == [p["experts"] for p in body["predictions"]]
    assert [json.loads(g) for g in logged["groups"]] == [
        {"colour": r["colour"], "region": "north"} for r in rows
    ]
    assert logged["model_id"].eq("colours").all() and logged["label"].isna().all()
    answer = client.post("/predict", json={"rows": rows, "groups": extra[:1]})
    assert answer.status_code == 422 and answer.json()["detail"].startswith("groups: ")


def test_a_locked_log_answers_503_and_the_server_recovers(model_dir, rows, tmp_path):
    db = tmp_path / "log.db"
    log = PredictionLog(str(db), timeout=0.05)
    client = TestClient(create_app(model_dir, log=log))
    holder = sqlite3.connect(db, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        for _ in range(2):  # and again: an error answer each time, no crash
            answer = client.post("/predict", json={"rows": rows})
            assert answer.status_code == 503
            assert "locked" in answer.json()["detail"]
        assert client.get("/health").status_code == 200
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert client.post("/predict", json={"rows": rows}).status_code == 200
    assert log.count() == len(rows)  # the refused requests left nothing behind


def test_a_served_class_is_json_for_numeric_labels(table, tmp_path):
    from attnmoe.tabular import AttentionMoEClassifier

    frame, label = table
    y = np.where(label == "yes", 1, 0)
    AttentionMoEClassifier(epochs=1, random_state=0).fit(frame, y).save_pretrained(tmp_path / "m")
    client = TestClient(create_app(tmp_path / "m"))
    got = client.post("/predict", json={"rows": [{"colour": "red", "size": 1, "noise": 0.0}]})
    assert got.status_code == 200 and got.json()["predictions"][0]["class"] in (0, 1)
    assert client.get("/model").json()["classes"] == [0, 1]


def test_concurrent_requests_are_each_logged_once(model_dir, rows, tmp_path):
    db = tmp_path / "log.db"
    with TestClient(create_app(model_dir, log=str(db))) as client:

        def send(k: int):
            return client.post("/predict", json={"rows": rows[: 1 + k % len(rows)]})

        with ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(send, range(64)))
    assert [a.status_code for a in answers] == [200] * 64
    logged = PredictionLog(str(db)).labelled()
    sent = {a.json()["request_id"]: len(a.json()["predictions"]) for a in answers}
    assert logged.groupby("request_id").size().to_dict() == sent
    for answer in answers[:8]:  # and each answer's records are its own
        body = answer.json()
        mine = logged[logged["request_id"] == body["request_id"]]
        assert list(mine["probability"]) == [p["probability"] for p in body["predictions"]]


def _blocked_writes(log: PredictionLog, monkeypatch) -> tuple[threading.Event, list[int]]:
    """Hold the log's first write until the event is set; record each write's size (as
    it starts)."""
    release, sizes = threading.Event(), []
    write = log.append_records

    def held(records):
        sizes.append(len(records))
        if len(sizes) == 1:
            release.wait(30)
        return write(records)

    monkeypatch.setattr(log, "append_records", held)
    return release, sizes


def test_requests_waiting_for_a_commit_are_committed_together(tmp_path, monkeypatch):
    log = PredictionLog(str(tmp_path / "log.db"))
    release, sizes = _blocked_writes(log, monkeypatch)
    writer = GroupCommit(log)
    answer = {"class": "yes", "probability": 0.5, "experts": {}}
    records = [
        PredictionLog.records([answer] * 2, model_id="m", model_checksum=None, request_id=str(k))
        for k in range(20)
    ]
    futures = [writer.submit(records[0])]
    while not sizes:  # until the writer holds the first request's write
        time.sleep(0.01)
    futures += [writer.submit(r) for r in records[1:]]
    time.sleep(0.1)
    assert not any(f.done() for f in futures)  # nothing answered before its commit
    release.set()
    assert [f.result(timeout=30) for f in futures] == [2] * 20
    assert sizes == [2, 38]  # the 19 that queued meanwhile: one transaction
    writer.close()
    assert log.count() == 40


def test_an_answer_waits_for_its_commit(model_dir, rows, tmp_path, monkeypatch):
    log = PredictionLog(str(tmp_path / "log.db"))
    release, _sizes = _blocked_writes(log, monkeypatch)
    with TestClient(create_app(model_dir, log=log)) as client, ThreadPoolExecutor(1) as pool:
        pending = pool.submit(client.post, "/predict", json={"rows": rows})
        time.sleep(1.0)
        assert _sizes == [len(rows)]  # the write started, and is held
        assert not pending.done() and log.count() == 0
        release.set()
        assert pending.result(timeout=30).status_code == 200
    assert log.count() == len(rows)


def test_a_full_disk_answers_503_and_the_server_recovers(model_dir, rows, tmp_path):
    db = tmp_path / "log.db"
    log = PredictionLog(str(db))
    client = TestClient(create_app(model_dir, log=log))
    assert client.post("/predict", json={"rows": rows}).status_code == 200
    with sqlite3.connect(db) as conn:
        pages = conn.execute("PRAGMA page_count").fetchone()[0]

    def full(dbapi_connection, _record) -> None:  # the database may not grow: a full disk
        dbapi_connection.execute(f"PRAGMA max_page_count={pages}")

    sa.event.listen(log.engine, "connect", full)
    log.engine.dispose()
    for _ in range(3):  # an error answer each time, and the server stays up
        answer = client.post("/predict", json={"rows": rows * 40})
        assert answer.status_code == 503
        assert "full" in answer.json()["detail"] and "nothing was logged" in answer.json()["detail"]
        assert client.get("/health").status_code == 200
    sa.event.remove(log.engine, "connect", full)
    log.engine.dispose()
    assert client.post("/predict", json={"rows": rows}).status_code == 200
    assert log.count() == 2 * len(rows)


def test_a_whole_number_too_large_for_a_float_is_a_422(client, rows):
    rows[0]["noise"] = 10**400  # JSON allows it; a numeric column reads it as a float
    answer = client.post("/predict", json={"rows": rows})
    assert answer.status_code == 422 and answer.json()["detail"].startswith("rows[0].noise: ")
    rows[0]["noise"], rows[1]["size"] = 0.5, 10**400  # whole numbers are numeric too
    answer = client.post("/predict", json={"rows": rows})
    assert answer.status_code == 422 and answer.json()["detail"].startswith("rows[1].size: ")
    rows[1]["size"], rows[2]["colour"] = 1, 10**400  # a category column: just unseen
    assert client.post("/predict", json={"rows": rows}).status_code == 200
