"""Files written whole or not at all; a killed write's temporary file is removed by the next."""

import os
import subprocess
import sys

import pandas as pd
import pytest

from attnmoe import files
from attnmoe.cli.outputs import write_text
from attnmoe.explain import report, sentence


@pytest.fixture(scope="module")
def dead_pid():
    """The id of a process that has finished."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    assert not files.pid_alive(child.pid)
    return child.pid


def _leave_temps(folder, name, dead_pid):
    """What a SIGKILLed write leaves (a dead PID), and a write in progress (live PIDs)."""
    dead = folder / f".{name}.{dead_pid}.x.tmp"
    live = [folder / f".{name}.{os.getpid()}.y.tmp", folder / f".{name}.{os.getppid()}.z.tmp"]
    other = folder / f".other.html.{dead_pid}.x.tmp"  # another output's: not this write's
    for path in [dead, *live, other]:
        path.write_text("half")
    return dead, [*live, other]


def test_the_temporary_file_is_tagged_with_the_pid(tmp_path):
    out = tmp_path / "page.html"
    with files.staged_path(out) as staging:
        assert staging.parent == tmp_path
        assert staging.name.startswith(f".page.html.{os.getpid()}.")
        assert staging.name.endswith(".tmp")
        staging.write_text("new")
    assert out.read_text() == "new" and list(tmp_path.iterdir()) == [out]


def test_a_write_removes_the_temporary_files_of_dead_processes_only(tmp_path, dead_pid):
    dead, kept = _leave_temps(tmp_path, "pred.csv", dead_pid)
    write_text(tmp_path / "pred.csv", "a\n1\n")
    assert not dead.exists()
    assert all(path.exists() for path in kept)
    assert (tmp_path / "pred.csv").read_text() == "a\n1\n"


def test_remove_stale_temps_names_what_it_removed(tmp_path, dead_pid):
    dead, _ = _leave_temps(tmp_path, "a.html", dead_pid)
    (tmp_path / f".a.html.123.{dead_pid}.x.tmp").write_text("")  # output "a.html.123"'s
    assert files.remove_stale_temps(tmp_path / "a.html") == [dead]
    assert files.remove_stale_temps(tmp_path / "missing" / "a.html") == []


@pytest.mark.parametrize(
    "module, write",
    [
        (report, lambda out: report.write_report(None, pd.DataFrame(), out)),
        (sentence, lambda out: sentence.write_sentence_report("m", "a b", out)),
    ],
)
def test_the_library_reports_are_staged_and_renamed(tmp_path, monkeypatch, dead_pid, module, write):
    build = "build_report" if module is report else "build_sentence_report"
    monkeypatch.setattr(module, build, lambda *a, **k: ("<html>new</html>", {"n": 1}))
    if module is sentence:
        monkeypatch.setattr(module, "sentence_view", lambda *a, **k: {})
    out = tmp_path / "deep" / "report.html"
    out.parent.mkdir()
    out.write_text("old")
    _, kept = _leave_temps(out.parent, "report.html", dead_pid)

    def fail(*args):
        raise OSError("rename failed")

    monkeypatch.setattr(files.os, "replace", fail)
    with pytest.raises(OSError, match="rename failed"):
        write(out)
    assert out.read_text() == "old"  # a failed write leaves the old page whole
    assert sorted(out.parent.iterdir()) == sorted([out, *kept])
    monkeypatch.undo()
    monkeypatch.setattr(module, build, lambda *a, **k: ("<html>new</html>", {"n": 1}))
    if module is sentence:
        monkeypatch.setattr(module, "sentence_view", lambda *a, **k: {})
    assert write(out) == {"n": 1}
    assert out.read_text() == "<html>new</html>"
