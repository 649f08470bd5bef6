"""``attnmoe serve`` under load on loopback: throughput and latency, and a kill mid-load.

Usage: .venv/bin/python benchmarks/bench_serve.py [--requests 400] [--clients 1 8 32]
       [--batches 1 100] [--no-log] [--out FILE.md]

Fits a small classifier on auto-mpg, starts ``attnmoe serve`` on 127.0.0.1 (a
free port) with an SQLite log, and for each number of concurrent clients and
rows per request sends ``--requests`` requests (a bounded loop: no run is open
ended), measuring predictions per second and the p50 / p99 request latency.
Then the fault check: the server is killed (SIGKILL) while clients send; every
request that was answered 200 must be in the log, and the server must start
again on the same log. Nothing is bound beyond 127.0.0.1.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import torch

from attnmoe.bench.datasets import load_auto_mpg
from attnmoe.bench.machine import machine_description
from attnmoe.serve import PredictionLog
from attnmoe.tabular import AttentionMoEClassifier


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start(model: Path, db: Path, port: int) -> subprocess.Popen:
    command = [sys.executable, "-m", "attnmoe.cli", "serve", str(model), "--port", str(port)]
    command += [] if db is None else ["--log", str(db)]
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health").status_code == 200:
                return server
        except httpx.TransportError:
            if server.poll() is not None:
                raise RuntimeError(server.stderr.read().decode()) from None
            time.sleep(0.2)
    server.kill()
    raise TimeoutError("the server did not answer /health within 120 s")


def _load(url: str, rows: list[dict], clients: int, n_requests: int) -> tuple[float, np.ndarray]:
    """``n_requests`` POSTs of ``rows`` from ``clients`` threads: (seconds, latencies)."""
    latencies = np.empty(n_requests)
    local = threading.local()

    def one(k: int) -> None:
        client = getattr(local, "client", None) or httpx.Client(timeout=60)
        local.client = client
        start = time.perf_counter()
        answer = client.post(f"{url}/predict", json={"rows": rows})
        latencies[k] = time.perf_counter() - start
        answer.raise_for_status()

    start = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(one, range(n_requests)))
    return time.perf_counter() - start, latencies


def _kill_mid_load(model: Path, db: Path, rows: list[dict], clients: int) -> str:
    """SIGKILL the server while ``clients`` send; every 200 answer must be in the log."""
    port = _free_port()
    server = _start(model, db, port)
    answered: list[str] = []
    stop = threading.Event()

    def send() -> None:
        with httpx.Client(timeout=10) as client:
            while not stop.is_set():
                try:
                    answer = client.post(f"http://127.0.0.1:{port}/predict", json={"rows": rows})
                except httpx.TransportError:
                    return
                if answer.status_code == 200:
                    answered.append(answer.json()["request_id"])

    threads = [threading.Thread(target=send) for _ in range(clients)]
    for thread in threads:
        thread.start()
    time.sleep(2.0)
    os.kill(server.pid, signal.SIGKILL)
    server.wait()
    stop.set()
    for thread in threads:
        thread.join(timeout=30)
    logged = set(PredictionLog(str(db)).labelled()["request_id"])
    lost = [r for r in answered if r not in logged]
    restarted = _start(model, db, _free_port())
    restarted.terminate()
    restarted.wait(timeout=30)
    return (
        f"killed after {len(answered)} answered requests: {len(lost)} of them missing from "
        f"the log; restarted cleanly on the same log"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=400, help="requests per setting")
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 100])
    parser.add_argument("--no-log", action="store_true", help="serve without the log")
    parser.add_argument("--out", default=None, help="also write the table to this file")
    args = parser.parse_args()
    torch.set_num_threads(1)
    data = load_auto_mpg()
    work = Path(tempfile.mkdtemp(prefix="bench_serve_"))
    clf = AttentionMoEClassifier(random_state=0).fit(data.X_train, data.y_train)
    clf.save_pretrained(work / "model")
    frame = data.X_test.reset_index(drop=True)
    records = [{k: v.item() if hasattr(v, "item") else v for k, v in r.items()}
               for r in frame.to_dict("records")]  # fmt: skip
    db = None if args.no_log else work / "log.db"
    port = _free_port()
    server = _start(work / "model", db, port)
    lines = [
        f"# attnmoe serve on loopback ({'no log' if db is None else 'SQLite log'})",
        "",
        machine_description(),
        "",
        "| clients | rows/request | requests | predictions/s | p50 ms | p99 ms |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    try:
        for batch in args.batches:
            rows = (records * (batch // len(records) + 1))[:batch]
            for clients in args.clients:
                seconds, latencies = _load(f"http://127.0.0.1:{port}", rows, clients, args.requests)
                p50, p99 = np.percentile(latencies, [50, 99]) * 1000
                rate = args.requests * batch / seconds
                cells = [clients, batch, args.requests, f"{rate:,.0f}", f"{p50:.1f}", f"{p99:.1f}"]
                lines.append("| " + " | ".join(map(str, cells)) + " |")
                print(lines[-1], flush=True)
    finally:
        server.terminate()
        server.wait(timeout=30)
    if db is not None:
        lines += ["", _kill_mid_load(work / "model", work / "kill.db", records[:1], 8)]
        print(lines[-1])
    if args.out:
        Path(args.out).write_text("\n".join(lines) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
