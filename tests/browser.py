"""Headless Chromium for the page tests: one way to run it and to read its console."""

from __future__ import annotations

import subprocess
from pathlib import Path


def run_chromium(binary: str, profile: Path, *args: str) -> subprocess.CompletedProcess:
    """Run Debian's chromium headless on a fresh ``profile`` with ``args``; no network use."""
    command = [
        binary,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={profile}",
        "--enable-logging=stderr",
        "--v=0",
        "--virtual-time-budget=5000",  # let the load handlers run before dumping
        *args,
    ]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)


def console_errors(stderr: str) -> list[str]:
    """The page's uncaught exceptions and console errors in chromium's log."""
    return [
        line
        for line in stderr.splitlines()
        if "Uncaught" in line or ("CONSOLE" in line and "error" in line.lower())
    ]
