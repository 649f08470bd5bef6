"""``attnmoe serve``, ``predict --log`` and ``log-labels`` on the command line."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time

import pandas as pd
import pytest

from attnmoe.cli import main
from attnmoe.serve import PredictionLog


def test_serve_binds_loopback_and_never_prints_the_token(model_dir, tmp_path, monkeypatch, capsys):
    import uvicorn

    served = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: served.update(app=app, **kw))
    token = tmp_path / "token"
    token.write_text("tok-77d1e\n")
    db = tmp_path / "log.db"
    assert main(["serve", str(model_dir), "--log", str(db), "--token-file", str(token)]) == 0
    assert (served["host"], served["port"]) == ("127.0.0.1", 8000)
    out = capsys.readouterr().out
    assert "tok-77d1e" not in out and "bearer token is required" in out
    from fastapi.testclient import TestClient

    client = TestClient(served["app"])
    assert client.get("/health").status_code == 401
    assert client.get("/health", headers={"Authorization": "Bearer tok-77d1e"}).json()["log"]


def test_a_blank_token_file_is_refused(model_dir, tmp_path, capsys):
    (tmp_path / "token").write_text("  \n")
    assert main(["serve", str(model_dir), "--token-file", str(tmp_path / "token")]) == 2
    assert "--token-file" in capsys.readouterr().err


def test_predict_log_then_log_labels(model_dir, table, clf, tmp_path, capsys):
    frame, label = table
    data = frame.head(8).assign(region=["n", "s"] * 4)
    data.to_csv(tmp_path / "new.csv", index=False)
    db = str(tmp_path / "log.db")
    argv = ["predict", str(model_dir), str(tmp_path / "new.csv"), "--out", str(tmp_path / "p.csv")]
    assert main([*argv, "--log", db, "--group", "region"]) == 0
    request_id = re.search(r"as request (\w+)", capsys.readouterr().out).group(1)
    logged = PredictionLog(db).labelled()
    assert len(logged) == 8 and set(logged["request_id"]) == {request_id}
    written = pd.read_csv(tmp_path / "p.csv")
    assert list(logged["predicted"]) == list(written["prediction"])
    assert list(logged["probability"]) == list(clf.predict_proba(frame.head(8)).max(1))
    assert list(logged["groups"]) == ['{"region":"n"}', '{"region":"s"}'] * 4

    pd.DataFrame({"request_id": request_id, "row": range(8), "label": label[:8]}).to_csv(
        tmp_path / "labels.csv", index=False
    )
    assert main(["log-labels", db, str(tmp_path / "labels.csv")]) == 0
    assert "added 8 labels" in capsys.readouterr().out
    assert list(PredictionLog(db).labelled()["label"]) == list(label[:8])


@pytest.mark.parametrize(
    ("extra", "message"),
    [(["--group", "region"], "give --log too"), (["--log", "L", "--group", "nope"], "--group")],
)
def test_predict_log_options_are_checked_first(model_dir, table, tmp_path, capsys, extra, message):
    table[0].head(3).to_csv(tmp_path / "new.csv", index=False)
    out = tmp_path / "p.csv"
    assert (
        main(["predict", str(model_dir), str(tmp_path / "new.csv"), "--out", str(out), *extra]) == 2
    )
    assert message in capsys.readouterr().err and not out.exists()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_real_server_on_loopback_answers_and_logs(model_dir, rows, tmp_path):
    import httpx

    token, db, port = "tok-real-9c2b", tmp_path / "log.db", _free_port()
    (tmp_path / "token").write_text(token)
    command = [sys.executable, "-m", "attnmoe.cli", "serve", str(model_dir), "--port", str(port)]
    command += ["--log", str(db), "--token-file", str(tmp_path / "token")]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    server = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
    url, auth = f"http://127.0.0.1:{port}", {"Authorization": f"Bearer {token}"}
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                assert httpx.get(f"{url}/health", headers=auth).status_code == 200
                break
            except httpx.TransportError:
                assert server.poll() is None and time.monotonic() < deadline
                time.sleep(0.2)
        answer = httpx.post(f"{url}/predict", json={"rows": rows}, headers=auth)
        assert answer.status_code == 200 and len(answer.json()["predictions"]) == len(rows)
        assert httpx.post(f"{url}/predict", json={"rows": rows}).status_code == 401
    finally:
        server.terminate()
        output = server.communicate(timeout=30)[0].decode()
    assert f"http://127.0.0.1:{port}" in output and token not in output
    assert PredictionLog(str(db)).count() == len(rows)


def test_without_the_serve_extra_one_line_says_what_to_install(model_dir, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "attnmoe.serve", None)  # as if sqlalchemy were missing
    assert main(["log-labels", "log.db", "labels.csv"]) == 2
    assert "pip install 'attnmoe[serve]'" in capsys.readouterr().err


def _serve(model_dir, db, port: int) -> subprocess.Popen:
    """``attnmoe serve`` in a process of its own, once it answers /health."""
    import httpx

    command = [sys.executable, "-m", "attnmoe.cli", "serve", str(model_dir), "--port", str(port)]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    server = subprocess.Popen(
        [*command, "--log", str(db)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env
    )
    deadline = time.monotonic() + 60
    while True:
        try:
            httpx.get(f"http://127.0.0.1:{port}/health").raise_for_status()
            return server
        except httpx.TransportError:
            assert server.poll() is None and time.monotonic() < deadline
            time.sleep(0.2)


def test_a_killed_server_loses_no_answered_request_and_restarts(model_dir, rows, tmp_path):
    import httpx

    db, port = tmp_path / "log.db", _free_port()
    server = _serve(model_dir, db, port)
    answered: list[str] = []

    def send() -> None:
        with httpx.Client(timeout=10) as client:
            while True:
                try:
                    answer = client.post(f"http://127.0.0.1:{port}/predict", json={"rows": rows})
                except httpx.TransportError:
                    return  # killed
                assert answer.status_code == 200
                answered.append(answer.json()["request_id"])

    threads = [threading.Thread(target=send) for _ in range(6)]
    for thread in threads:
        thread.start()
    time.sleep(2.0)
    server.send_signal(signal.SIGKILL)
    server.wait(timeout=30)
    for thread in threads:
        thread.join(timeout=30)
    assert answered  # the load ran
    logged = PredictionLog(str(db)).labelled()
    assert set(answered) <= set(logged["request_id"])  # answered implies committed
    assert (logged.groupby("request_id").size() == len(rows)).all()  # whole requests only

    port = _free_port()
    server = _serve(model_dir, db, port)  # a clean restart on the same log
    try:
        assert (
            httpx.post(f"http://127.0.0.1:{port}/predict", json={"rows": rows}).status_code == 200
        )
    finally:
        server.terminate()
        server.wait(timeout=30)
    assert PredictionLog(str(db)).count() == len(logged) + len(rows)


def test_predict_log_notes_the_model_and_its_training_baseline(model_dir, table, clf, tmp_path):
    table[0].head(3).to_csv(tmp_path / "new.csv", index=False)
    db = str(tmp_path / "log.db")
    argv = ["predict", str(model_dir), str(tmp_path / "new.csv"), "--out", str(tmp_path / "p.csv")]
    assert main([*argv, "--log", db]) == 0
    assert main([*argv, "--log", db]) == 0  # noted once
    models = PredictionLog(db).models()
    assert list(models["model_id"]) == ["colours"]
    assert models["baseline"][0] == clf.gate_baseline_
    gates = [json.loads(g) for g in PredictionLog(db).labelled()["gates"]]
    assert list(gates[0]) == clf.gate_baseline_["experts"]
    assert sum(gates[0].values()) == pytest.approx(1.0, abs=1e-5)
