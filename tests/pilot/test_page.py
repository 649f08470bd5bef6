"""The pilot's page and the comparison page in a real headless Chromium: no console
error, every chart drawn, and the numbers on the page equal to the JSON beside it."""

from __future__ import annotations

import json
import math
import re
from html.parser import HTMLParser

import pytest

from attnmoe.cli import main
from tests.browser import console_errors, run_chromium


class _Numbers(HTMLParser):
    """Every element's ``data-*`` attributes that carry a ``data-value``; the root attributes."""

    def __init__(self) -> None:
        super().__init__()
        self.values: list[dict[str, str]] = []
        self.root: dict[str, dict[str, str | None]] = {}

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag in ("html", "body"):
            self.root[tag] = attrs
        if "data-value" in attrs:
            self.values.append({**attrs, "tag": tag})


def _same(shown: str, expected) -> bool:
    if expected is None:  # JSON's null: NaN on the page
        return shown == "nan"
    if isinstance(expected, str):
        return shown == expected
    return math.isclose(float(shown), float(expected), rel_tol=1e-12, abs_tol=1e-15)


def _load(chromium, page, profile):
    dump = run_chromium(chromium, profile, "--dump-dom", page.as_uri())
    assert dump.returncode == 0, dump.stderr[-2000:]
    assert not console_errors(dump.stderr), console_errors(dump.stderr)
    parsed = _Numbers()
    parsed.feed(dump.stdout)
    assert "data-js-errors" not in parsed.root["html"]
    assert parsed.root["body"].get("data-ready") == "1"
    loaded, total = parsed.root["body"]["data-images-loaded"].split("/")
    return parsed, int(loaded), int(total)


def test_the_pilot_page_in_chromium_shows_pilot_json(pilot_dir, chromium, tmp_path):
    page = pilot_dir / "pilot.html"
    text = page.read_text()
    assert not re.search(r"""(src|href)=["']?(https?:|//)""", text)  # self-contained
    parsed, loaded, total = _load(chromium, page, tmp_path / "profile")
    # the effect-against-cost chart, columns moved, usage, reliability, groups: all drawn
    assert loaded == total >= 5
    content = json.loads((pilot_dir / "pilot.json").read_text())
    summary, explain = content["summary"], content["explain"]
    checked = 0
    for v in parsed.values:
        if "data-metric" in v and "data-group" not in v:
            expected = summary["models"][v["data-model"]][v["data-metric"]]["mean"]
        elif "data-group" in v:
            expected = summary["models"][v["data-model"]]["group_accuracy"][v["data-group"]]
        elif "data-gap" in v or "data-se" in v or "data-ratio" in v:
            model = v.get("data-gap") or v.get("data-se") or v.get("data-ratio")
            gap = next(g for g in summary["gaps"] if g["model"] == model)
            key = "gap" if "data-gap" in v else "se" if "data-se" in v else "fit_time_ratio"
            expected = gap[key]
        elif "data-moved" in v:
            expected = next(m["change"] for m in explain["moved"] if m["column"] == v["data-moved"])
        else:
            expected = {
                "n-train": content["n_train"], "n-new": content["n_new"],
                "seeds": content["seeds"], "best-alternative": summary["best_alternative"],
                "gap": summary["gaps"][0]["gap"], "gap-se": summary["gaps"][0]["se"],
                "fit-time-ratio": summary["gaps"][0]["fit_time_ratio"],
                "top-column": explain["top_column_new"],
                "usage-shift": explain["usage_shift_tv"],
                "audit-flagged": explain["audit_flagged"],
            }[v["id"]]  # fmt: skip
        assert _same(v["data-value"], expected), (v, expected)
        checked += 1
    n_models = len(summary["models"])
    assert checked >= 8 * n_models + 2 * n_models + 3 * 3 + 10  # effect, cost, groups, gaps
    # the verdict is on top, in words
    assert text.index(summary["verdict"][0]) < text.index("Effect against cost")


def test_the_compare_page_puts_pilots_side_by_side(pilot_dir, chromium, tmp_path, capsys):
    import shutil

    other = tmp_path / "second"
    shutil.copytree(pilot_dir, other)
    assert main(["pilot", "--compare", str(pilot_dir), str(other), "--out", str(tmp_path)]) == 0
    assert "compare.html" in capsys.readouterr().out
    parsed, loaded, total = _load(chromium, tmp_path / "compare.html", tmp_path / "profile")
    assert loaded == total == 1
    content = json.loads((tmp_path / "compare.json").read_text())["pilots"]
    assert list(content) == [pilot_dir.name, "second"]
    seen = 0
    for v in parsed.values:
        summary = content[v["data-pilot"]]["summary"]
        gap = summary["gaps"][0]
        expected = {
            "gap": gap["gap"], "fit_time_ratio": gap["fit_time_ratio"],
            "attnmoe_accuracy": summary["models"]["attnmoe"]["accuracy"]["mean"],
            "best_accuracy": summary["models"][summary["best_alternative"]]["accuracy"]["mean"],
        }[v["data-metric"]]  # fmt: skip
        assert _same(v["data-value"], expected)
        seen += 1
    assert seen == 2 * 4


def test_compare_refuses_a_folder_without_a_pilot(tmp_path, capsys):
    assert main(["pilot", "--compare", str(tmp_path), "--out", str(tmp_path / "c")]) == 2
    assert "no pilot.json there" in capsys.readouterr().err
    assert main(["pilot", "data.csv", "--compare", str(tmp_path), "--out", "x"]) == 2
    assert "not DATA" in capsys.readouterr().err


@pytest.mark.parametrize("argv", [["pilot"], ["pilot", "x.csv", "--target", "y"]])
def test_a_pilot_without_data_target_or_out_is_said(argv, capsys):
    assert main(argv) == 2
    assert "a pilot needs DATA, --target COL and --out DIR" in capsys.readouterr().err


def test_the_shift_bars_carry_the_pilot_s_names(monkeypatch):
    import matplotlib.pyplot as plt
    import pandas as pd

    from attnmoe.explain import plots

    legends = []

    def keep(fig):
        legends.append([t.get_text() for t in fig.axes[0].get_legend().get_texts()])
        plt.close(fig)
        return ""

    monkeypatch.setattr(plots, "png", keep)
    before, after = pd.Series([0.5, 0.5], index=["a", "b"]), pd.Series([0.4, 0.6], index=["a", "b"])
    plots.shift_bars(before, after, ("training rows", "new rows"))
    plots.shift_bars(before, after)  # the report's names stay the default
    assert legends == [["training rows", "new rows"],
                       ["training-like data (DATA)", "new data (--shift-data)"]]  # fmt: skip
