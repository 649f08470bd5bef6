"""``attnmoe monitor``: the log of simulated traffic as a page, checked in headless Chromium."""

from __future__ import annotations

import re
import sqlite3
from html.parser import HTMLParser
from pathlib import Path

import pandas as pd
import pytest

from attnmoe.cli import main
from attnmoe.serve import PredictionLog, monitor_data
from tests.browser import console_errors, run_chromium

DAYS = ["2026-03-01", "2026-03-02", "2026-03-03"]


#: the model's training baseline: each expert's mean gate over the training rows
BASELINE = {
    "experts": ["colour", "size", "<b>noise</b>", "(target)"],
    "overall": [0.4, 0.2, 0.3, 0.1],
    "heads": [[0.4, 0.2, 0.3, 0.1]],
    "n_rows": 100,
}


def _answer(day: int, k: int) -> dict:
    """A prediction whose gates lean on 'size' more from the third day on (a drift)."""
    size = 0.2 if day < 2 else 0.6
    experts = {
        "0": [
            {"feature": "colour", "value": "red", "gate": 0.5 - size / 2, "share": 0.3},
            {"feature": "size", "value": "1", "gate": size, "share": 0.2},
            {"feature": "<b>noise</b>", "value": "x", "gate": 0.5 - size / 2, "share": 0.1},
        ]
    }
    shares = [0.4, 0.2, 0.3, 0.1] if day < 2 else [0.2, 0.6, 0.1, 0.1]
    gates = dict(zip(BASELINE["experts"], shares, strict=True))
    return {"class": "yes" if k % 3 else "no", "probability": 0.6 + 0.01 * k,
            "experts": experts, "gates": gates}  # fmt: skip


@pytest.fixture
def traffic(tmp_path) -> str:
    """Three days of requests (more each day), labels for the first two days' rows."""
    db = str(tmp_path / "log.db")
    log = PredictionLog(db)
    log.register_model("m", "c0ffee", BASELINE)
    labels = []
    for day, date in enumerate(DAYS):
        for request in range(day + 2):
            rows = [_answer(day, k) for k in range(5)]
            rid = f"{date}-{request}"
            groups = [{"region": "<i>n</i>" if k % 2 else "s"} for k in range(5)]
            log.append(rows, model_id="m", model_checksum="c0ffee", request_id=rid,
                       groups=groups, time=f"{date}T{10 + request:02d}:00:00+00:00")  # fmt: skip
            if day < 2:
                labels += [(rid, k, "yes" if k % 2 else "no") for k in range(5)]
    log.add_labels(pd.DataFrame(labels, columns=["request_id", "row", "label"]))
    log.close()
    return db


def test_monitor_data_flags_the_drifted_day(traffic):
    data = monitor_data(PredictionLog(traffic), threshold=0.05)
    assert list(data["days"]) == DAYS
    assert {(a["day"], a["feature"]) for a in data["alerts"]} == {
        (DAYS[2], "size"), (DAYS[2], "colour"), (DAYS[2], "<b>noise</b>"),
    }  # fmt: skip
    assert data["days"][DAYS[0]]["shares"]["size"] == pytest.approx(0.2)
    assert data["days"][DAYS[2]]["accuracy"] is None
    # the drift is measured against training, from the first day on
    trained = dict(zip(BASELINE["experts"], BASELINE["overall"], strict=True))
    assert data["baseline"]["shares"] == trained
    assert data["usage"][DAYS[0]] == pytest.approx(data["baseline"]["shares"])
    assert data["usage"][DAYS[2]]["size"] == pytest.approx(0.6)


def test_without_a_training_baseline_the_monitor_says_so(traffic, tmp_path, capsys):
    import sqlalchemy as sa

    log = PredictionLog(traffic)
    with log.engine.begin() as conn:  # as a model saved before the baseline existed
        conn.execute(sa.text("UPDATE models SET baseline = NULL"))
    data = monitor_data(log)
    assert data["baseline"] is None and data["drift"] == [] and data["usage"] == {}
    assert main(["monitor", traffic, "--out", str(tmp_path / "m.html")]) == 0
    assert "no training baseline" in capsys.readouterr().out
    assert 'id="baseline-missing"' in (tmp_path / "m.html").read_text()


def test_accuracy_per_group_and_week_is_the_bias_audits_gap(traffic):
    data = monitor_data(PredictionLog(traffic), min_group_size=3)
    with sqlite3.connect(traffic) as db:
        rows = db.execute(
            "SELECT substr(p.time, 1, 10), json_extract(p.groups, '$.region'), "
            "p.predicted = l.label FROM predictions p "
            "JOIN labels l ON l.request_id = p.request_id AND l.row = p.row"
        ).fetchall()
    expected = pd.DataFrame(rows, columns=["day", "group", "hit"])
    expected["week"] = pd.to_datetime(expected["day"]).dt.to_period("W-SUN").dt.start_time
    expected["week"] = expected["week"].dt.strftime("%Y-%m-%d")
    stats = expected.groupby(["week", "group"])["hit"].agg(["size", "mean"])
    got = {(b["week"], b["group"]): (b["n"], b["accuracy"]) for b in data["bias"]}
    assert got == {k: (int(n), pytest.approx(m)) for k, (n, m) in stats.iterrows()}
    for b in data["bias"]:
        best = stats.loc[b["week"]]["mean"].max()
        assert b["gap"] == pytest.approx(best - b["accuracy"])
        assert b["flagged"] == (b["gap"] > 0.05)


class _Page(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.ids: dict[str, str] = {}
        self.days: dict[str, dict[str, str]] = {}
        self.root: dict[str, dict] = {}
        self.alerts = 0
        self.text = ""

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag in ("html", "body"):
            self.root[tag] = attrs
        if "id" in attrs and "data-value" in attrs:
            self.ids[attrs["id"]] = attrs["data-value"]
        if "data-day" in attrs:
            self.days[attrs["data-day"]] = attrs
        self.alerts += attrs.get("class") == "alert"

    def handle_data(self, data):
        self.text += data


def test_monitor_page_in_headless_chromium_equals_a_direct_query(traffic, tmp_path, chromium):
    out = tmp_path / "monitor.html"
    assert main(["monitor", traffic, "--out", str(out)]) == 0
    page = out.read_text()
    assert not re.search(r"""(src|href)=["']?(https?:|//)""", page)
    assert "<b>noise</b>" not in page and "&lt;b&gt;noise&lt;/b&gt;" in page  # escaped
    dump = run_chromium(chromium, tmp_path / "profile", "--dump-dom", Path(out).as_uri())
    assert dump.returncode == 0, dump.stderr[-2000:]
    console = console_errors(dump.stderr)
    assert not console, console
    parsed = _Page()
    parsed.feed(dump.stdout)
    assert "data-js-errors" not in parsed.root["html"]
    assert parsed.root["body"]["data-ready"] == "1"
    assert int(parsed.root["body"]["data-charts"]) == len(DAYS)  # one bar per day drawn

    with sqlite3.connect(traffic) as db:
        per_day = dict(
            db.execute("SELECT substr(time, 1, 10), count(*) FROM predictions GROUP BY 1")
        )
        total, right = db.execute(
            "SELECT count(*), sum(p.predicted = l.label) FROM predictions p "
            "JOIN labels l ON l.request_id = p.request_id AND l.row = p.row"
        ).fetchone()
    assert {day: int(attrs["data-n"]) for day, attrs in parsed.days.items()} == per_day
    assert int(parsed.ids["n"]) == sum(per_day.values())
    assert int(parsed.ids["n-labelled"]) == total
    assert float(parsed.ids["accuracy"]) == pytest.approx(right / total, abs=1e-12)
    assert int(parsed.ids["n-alerts"]) == parsed.alerts == 3
    assert "attention went to it" in parsed.text  # the plain words at the top
    assert "since training" in parsed.text
    assert int(parsed.root["body"]["data-share-bars"]) == 4 * len(DAYS)  # per expert and day
    assert "<i>n</i>" not in page and "&lt;i&gt;n&lt;/i&gt;" in page  # a group: escaped


def test_monitor_of_an_empty_log(tmp_path, capsys):
    db = str(tmp_path / "log.db")
    assert main(["monitor", db, "--out", str(tmp_path / "m.html")]) == 0
    assert "0 predictions over 0 days" in capsys.readouterr().out


def test_the_served_monitor_is_the_written_page_and_needs_the_token(model_dir, traffic, tmp_path):
    from fastapi.testclient import TestClient

    from attnmoe.serve import build_monitor, create_app

    client = TestClient(create_app(model_dir, log=traffic, token="tok-m0n"))
    assert client.get("/monitor").status_code == 401
    answer = client.get("/monitor", headers={"Authorization": "Bearer tok-m0n"})
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/html")
    assert answer.text == build_monitor(PredictionLog(traffic))
    assert TestClient(create_app(model_dir)).get("/monitor").status_code == 404  # no log


def test_the_live_monitor_page_in_headless_chromium(model_dir, traffic, rows, tmp_path, chromium):
    import httpx

    from tests.serve.test_cli import _free_port, _serve

    port = _free_port()
    server = _serve(model_dir, traffic, port)  # simulated traffic, then live requests
    try:
        for k in range(3):
            answer = httpx.post(f"http://127.0.0.1:{port}/predict", json={"rows": rows[: k + 1]})
            assert answer.status_code == 200
        url = f"http://127.0.0.1:{port}/monitor"
        dump = run_chromium(chromium, tmp_path / "profile", "--dump-dom", url)
    finally:
        server.terminate()
        server.wait(timeout=30)
    assert dump.returncode == 0, dump.stderr[-2000:]
    console = console_errors(dump.stderr)
    assert not console, console
    parsed = _Page()
    parsed.feed(dump.stdout)
    assert "data-js-errors" not in parsed.root["html"] and parsed.root["body"]["data-ready"] == "1"
    with sqlite3.connect(traffic) as db:
        per_day = dict(
            db.execute("SELECT substr(time, 1, 10), count(*) FROM predictions GROUP BY 1")
        )
        n_labelled = db.execute(
            "SELECT count(*) FROM predictions p "
            "JOIN labels l ON l.request_id = p.request_id AND l.row = p.row"
        ).fetchone()[0]
    assert len(per_day) == len(DAYS) + 1  # today's live requests
    assert int(parsed.root["body"]["data-charts"]) == len(per_day)
    assert {day: int(attrs["data-n"]) for day, attrs in parsed.days.items()} == per_day
    assert int(parsed.ids["n"]) == sum(per_day.values()) == 5 * 9 + 6
    assert int(parsed.ids["n-labelled"]) == n_labelled
    # the served model's own baseline (it logs here now): today's drift is measured
    assert int(parsed.root["body"]["data-share-bars"]) == 4
