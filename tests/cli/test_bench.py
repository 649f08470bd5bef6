"""``attnmoe demo``: three pilots on shipped data, then their comparison (``bench tabular``
and ``bench cost`` run in tests/bench; the pilot itself in tests/pilot)."""

import json

import pytest

from attnmoe.cli import main


def _demo(tmp_path, monkeypatch, capsys, pilot):
    import attnmoe.pilot
    from attnmoe.pilot.examples import EXAMPLES

    calls = []

    def recorded(data, target, out, **options):
        calls.append((target, options["budget"], options["jobs"]))
        return pilot(data, target, out, **options)

    monkeypatch.setattr(attnmoe.pilot, "pilot", recorded)
    assert main(["demo", "--out", str(tmp_path), "--jobs", "1"]) == 0
    assert calls == [("mpg_class", "quick", 1), ("species", "quick", 1), ("union", "quick", 1)]
    out = capsys.readouterr().out
    for name in EXAMPLES:
        assert (tmp_path / "data" / f"{name}.csv").is_file()
        content = json.loads((tmp_path / name / "pilot.json").read_text())
        assert f"{name}: {content['summary']['verdict'][0]}" in out
        assert f"page: {tmp_path / name / 'pilot.html'}" in out
    assert out.rstrip().endswith(f"the three side by side: {tmp_path / 'compare.html'}")
    assert list(json.loads((tmp_path / "compare.json").read_text())["pilots"]) == list(EXAMPLES)


def test_demo_runs_the_three_pilots_and_compares_them(tmp_path, monkeypatch, capsys):
    """The demo's plumbing; each pilot's numbers stand in (the pilot runs in tests/pilot)."""
    from attnmoe.pilot.study import json_safe

    def stand_in(data, target, out, **options):
        from pathlib import Path

        out = Path(out)
        gap = {"model": "attnmoe", "versus": "catboost", "gap": 0.01, "se": 0.02, "seeds": 3,
               "fit_time_ratio": 4.0}  # fmt: skip
        accuracy = {"accuracy": {"mean": 0.8, "sd": 0.01}}
        content = {
            "title": target, "shift": "train: ...", "n_new": 10,
            "summary": {"models": {"attnmoe": accuracy, "catboost": accuracy},
                        "best_alternative": "catboost", "gaps": [gap],
                        "verdict": [f"On this table attnmoe is ... ({target})."]},
        }  # fmt: skip
        out.mkdir(parents=True)
        (out / "pilot.json").write_text(json.dumps(json_safe(content)))
        return content

    _demo(tmp_path, monkeypatch, capsys, stand_in)


@pytest.mark.slow
def test_demo_runs_real_small_pilots(tmp_path, monkeypatch, capsys):
    import attnmoe.pilot

    real = attnmoe.pilot.pilot

    def small(data, target, out, **options):
        options.update(seeds=1, models=["attnmoe", "logistic_regression"], n_bootstrap=10)
        return real(data, target, out, **{**options, "params": {"epochs": 2}})

    _demo(tmp_path, monkeypatch, capsys, small)
