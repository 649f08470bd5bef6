"""attnmoe report: the HTML page in a real headless Chromium.

The page records script errors and image loading into its own DOM; Chromium
dumps that DOM (and its console to stderr) and takes a screenshot. Set
ATTNMOE_SAVE_SCREENSHOTS=1 to copy the screenshots into docs/images/.
"""

from __future__ import annotations

import os
import re
import shutil
from collections import Counter
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from attnmoe.cli import main
from attnmoe.explain import audit, expected_calibration_error
from attnmoe.tabular import AttentionMoEClassifier
from tests.browser import console_errors, run_chromium

DOCS_IMAGES = Path(__file__).resolve().parents[2] / "docs" / "images"


class _Values(HTMLParser):
    """Collect ``data-value`` by element id, the group accuracies, root attributes, the
    visible text (outside ``<style>`` and ``<script>``) and a count of ``<span>`` classes."""

    def __init__(self) -> None:
        super().__init__()
        self.by_id: dict[str, str] = {}
        self.groups: dict[str, str] = {}
        self.root: dict[str, dict[str, str | None]] = {}
        self.classes: Counter[str] = Counter()
        self._text: list[str] = []
        self._hidden = 0

    @property
    def text(self) -> str:
        return "".join(self._text)

    def handle_endtag(self, tag):
        self._hidden -= tag in ("style", "script")

    def handle_data(self, data):
        if not self._hidden:
            self._text.append(data)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self._hidden += tag in ("style", "script")
        if tag == "span":
            self.classes[attrs.get("class") or ""] += 1
        if tag in ("html", "body"):
            self.root[tag] = attrs
        if "id" in attrs and "data-value" in attrs:
            self.by_id[attrs["id"]] = attrs["data-value"]
        if "data-group" in attrs:
            self.groups[attrs["data-group"]] = attrs["data-value"]


def _pixels(path: Path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"), dtype=float)


def test_report_in_headlessrun_chromium(tmp_path, auto_mpg, auto_mpg_model, chromium):
    clf = auto_mpg_model
    clf.save_pretrained(tmp_path / "model")
    train = auto_mpg.X_train.assign(mpg=auto_mpg.y_train, origin="USA")
    new = auto_mpg.X_test.assign(mpg=auto_mpg.y_test, origin="Europe/Japan")
    data = pd.concat([train, new], ignore_index=True)
    data.to_csv(tmp_path / "data.csv", index=False)
    new.to_csv(tmp_path / "new.csv", index=False)
    out = tmp_path / "report.html"
    code = main(
        [
            "report",
            str(tmp_path / "model"),
            str(tmp_path / "data.csv"),
            "--out",
            str(out),
            "--target",
            "mpg",
            "--group",
            "origin",
            "--shift-data",
            str(tmp_path / "new.csv"),
            "--bootstrap",
            "50",
        ]
    )
    assert code == 0
    page = out.read_text()
    # self-contained: nothing is fetched from anywhere
    assert not re.search(r"""(src|href)=["']?(https?:|//)""", page)

    dump = run_chromium(chromium, tmp_path / "profile-dom", "--dump-dom", out.as_uri())
    assert dump.returncode == 0, dump.stderr[-2000:]
    console = console_errors(dump.stderr)
    assert not console, console
    parsed = _Values()
    parsed.feed(dump.stdout)
    # what a reader sees is text, not markup: no tag or entity shows as characters
    assert not re.search(r"<(span|b|td|img)\b|&lt;|&gt;|&amp;", parsed.text), parsed.text[:2000]
    assert parsed.classes["pos"] + parsed.classes["neg"] >= 5  # the rows' coloured shares
    assert "data-js-errors" not in parsed.root["html"]
    assert parsed.root["body"].get("data-ready") == "1"
    loaded, total = parsed.root["body"]["data-images-loaded"].split("/")
    assert loaded == total and int(total) >= 5  # usage, reliability, confusion, shift, groups

    # the numbers on the page are the ones computed here, independently
    loaded_clf = AttentionMoEClassifier.from_pretrained(tmp_path / "model")
    X = data[auto_mpg.feature_names]
    proba = loaded_clf.predict_proba(X)
    correct = proba.argmax(1) == data["mpg"].to_numpy()
    assert float(parsed.by_id["accuracy"]) == pytest.approx(clf.score(X, data["mpg"]), abs=1e-12)
    assert float(parsed.by_id["ece"]) == pytest.approx(
        expected_calibration_error(proba.max(1), correct), abs=1e-12
    )
    assert float(parsed.by_id["shift-accuracy"]) == pytest.approx(
        clf.score(auto_mpg.X_test, auto_mpg.y_test), abs=1e-12
    )
    assert int(parsed.by_id["n-rows"]) == len(data)
    for group, rows in (("USA", data.origin == "USA"), ("Europe/Japan", data.origin != "USA")):
        assert float(parsed.groups[group]) == pytest.approx(correct[rows].mean(), abs=1e-12)
    expected = audit(clf, X, data["mpg"], group=data["origin"].to_numpy(), n_bootstrap=50)
    assert int(parsed.by_id["audit-flagged"]) == int(expected.gaps["flagged"].sum())
    assert parsed.classes["flag"] == int(expected.gaps["flagged"].sum())  # one FLAG per gap
    assert parsed.classes["flag"] + parsed.classes["ok"] == len(expected.gaps)

    shot = tmp_path / "report.png"
    result = run_chromium(
        chromium,
        tmp_path / "profile-shot",
        f"--screenshot={shot}",
        "--window-size=1280,4000",
        "--hide-scrollbars",
        out.as_uri(),
    )
    assert result.returncode == 0 and shot.is_file(), result.stderr[-2000:]
    pixels = _pixels(shot)
    assert pixels.shape[:2] == (4000, 1280)
    assert pixels.std() > 20  # not a blank page
    # the plots are there: many distinct colours (viridis heatmap, bars)
    colours = np.unique(pixels[::4, ::4].reshape(-1, 3), axis=0)
    assert len(colours) > 200
    if os.environ.get("ATTNMOE_SAVE_SCREENSHOTS"):
        DOCS_IMAGES.mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, DOCS_IMAGES / "report.png")
        full = tmp_path / "report-full.png"
        run_chromium(
            chromium,
            tmp_path / "profile-full",
            f"--screenshot={full}",
            "--window-size=1280,6200",
            "--hide-scrollbars",
            out.as_uri(),
        )
        shutil.copy(full, DOCS_IMAGES / "report-full.png")


def test_report_command_errors(tmp_path, auto_mpg_model, capsys):
    auto_mpg_model.save_pretrained(tmp_path / "model")
    pd.DataFrame({"other": [1, 2]}).to_csv(tmp_path / "bad.csv", index=False)
    assert main(["report", str(tmp_path / "model"), str(tmp_path / "bad.csv")]) == 2
    assert "lacks the model's columns" in capsys.readouterr().err


def test_report_scores_a_target_read_with_gaps(auto_mpg, auto_mpg_model):
    """A target column with empty cells reads as floats: labelled rows still match."""
    from attnmoe.explain import build_report

    data = auto_mpg.X_test.assign(mpg=auto_mpg.y_test.to_numpy(), origin=auto_mpg.X_test.index % 2)
    _, typed = build_report(auto_mpg_model, data, target="mpg", n_bootstrap=10)
    gapped = data.assign(mpg=data["mpg"].astype(float))
    gapped.loc[gapped.index[:6], "mpg"] = np.nan
    with pytest.warns(UserWarning, match="6 of 140 rows have no 'mpg' label") as caught:
        html, numbers = build_report(
            auto_mpg_model, gapped, target="mpg", group="origin", n_bootstrap=10
        )
    assert sum("label" in str(w.message) for w in caught) == 1  # said once, not again by audit
    assert numbers["n_labelled"] == 134
    with pytest.warns(UserWarning, match="6 of 140 rows"):  # without a group too
        build_report(auto_mpg_model, gapped, target="mpg", n_bootstrap=10)
    labelled = data.iloc[6:]
    direct = (auto_mpg_model.predict(labelled[auto_mpg.X_test.columns]) == labelled["mpg"]).mean()
    assert numbers["accuracy"] == pytest.approx(direct)
    assert abs(numbers["accuracy"] - typed["accuracy"]) < 0.05 and typed["accuracy"] > 0.5
    assert "6 rows without a true label left out" in html


def test_data_never_becomes_markup_and_dollars_stay_text():
    """Column names, labels and group values are the user's data: escaped everywhere,
    including values that look like HTML, and `$` is not read as math in the plots."""
    from attnmoe.explain import build_report

    rng = np.random.default_rng(0)
    n = 120
    attack = "<img src=x onerror=alert(1)>"
    data = pd.DataFrame(
        {
            "<b>col</b>": rng.choice(["u", "<i>v</i>"], n),
            "plain": rng.choice(["p", "q"], n),
            "y": rng.choice(["A&B", "<i>yes</i>"], n),
            "grp": rng.choice([attack, "$0-$50k", "x $^$ y"], n),
        }
    )
    clf = AttentionMoEClassifier(epochs=2, random_state=0).fit(
        data[["<b>col</b>", "plain"]], data["y"]
    )
    data["<u>by</u>"] = data["grp"]
    title = "<script>alert('title')</script> & co"
    page, numbers = build_report(
        clf, data, target="y", group="<u>by</u>", n_bootstrap=5, title=title, shift_data=data
    )
    for raw in (attack, "<b>col</b>", "<i>yes</i>", "<i>v</i>", "<u>by</u>", "<script>alert"):
        assert raw not in page
    assert "&lt;script&gt;alert(&#39;title&#39;)&lt;/script&gt; &amp; co" in page
    assert "&lt;img src=x onerror=alert(1)&gt;" in page
    assert "A&amp;B" in page and "&amp;amp;" not in page  # escaped once
    assert numbers["n_rows"] == n
    # no rows asked for: no rows section, no error
    quiet, _ = build_report(clf, data, target="y", group="grp", n_bootstrap=5, n_explained=0)
    assert attack not in quiet
    assert "Why individual rows" not in quiet and "Why individual rows" in page


def test_sentence_page_json_parses_and_escapes():
    """The page's JSON cannot end its script element; tokens are text, never markup."""
    import json

    from attnmoe.explain.pages import _environment
    from attnmoe.explain.sentence import _view_dict, build_sentence_report

    attack = "</script><script>alert(1)</script>"
    text = (
        _environment()
        .from_string("{{ data|tojson }}")
        .render(data={"tokens": [attack, "a&b", '"q"']})
    )
    assert "<" not in text  # cannot close the script element
    assert json.loads(text)["tokens"][0] == attack

    tokens = [attack, "a&b", "<b>w</b>"]
    view = _view_dict(tokens, np.full((2, 3, 3), 1 / 3), k=2, check=None)
    page, numbers = build_sentence_report({**view, "source": "<i>src</i>"})
    assert attack not in page and "<b>w</b>" not in page and "<i>src</i>" not in page
    assert "&lt;b&gt;w&lt;/b&gt;" in page and "a&amp;b" in page
    data = re.search(r'<script type="application/json" id="view-data">(.*?)</script>', page)
    assert json.loads(data.group(1)) == numbers == {"n_tokens": 3, "n_heads": 2}


class _Section(HTMLParser):
    """The text and the ``<span>`` classes of one ``<section>``, found by its heading."""

    def __init__(self, heading: str) -> None:
        super().__init__()
        self.heading, self.depth, self.inside = heading, 0, False
        self.text: list[str] = []
        self.spans: list[str] = []
        self._h2 = ""

    def handle_starttag(self, tag, attrs):
        if tag == "section":
            self.depth += 1
        if self.inside and tag == "span":
            self.spans.append(dict(attrs).get("class") or "")
        self._h2 = "" if tag == "h2" else self._h2

    def handle_endtag(self, tag):
        if tag == "section":
            self.depth -= 1
            self.inside = self.inside and self.depth > 0

    def handle_data(self, data):
        if self.depth and data.startswith(self.heading):
            self.inside = True
        if self.inside:
            self.text.append(data)


def test_row_explanations_are_markup_not_text(auto_mpg, auto_mpg_model):
    """The "why" table's coloured shares are real elements: under pandas 3 the cells
    went through a string column and the page showed its own ``<span>`` tags as text."""
    from attnmoe.explain import build_report

    data = auto_mpg.X_test.assign(mpg=auto_mpg.y_test.to_numpy())
    page, _ = build_report(auto_mpg_model, data, target="mpg", n_bootstrap=5, n_explained=4)
    section = _Section("Why individual rows")
    section.feed(page)
    text = "".join(section.text)
    assert "Why individual rows" in text
    assert "<span" not in text and "&lt;" not in text and "&gt;" not in text
    shares = [c for c in section.spans if c in ("pos", "neg")]
    assert 4 <= len(shares) <= 12  # up to three experts for each of the four rows
    assert re.search(r"\([+-]\d\.\d\d, gate \d\.\d\d\)", text)


def test_report_data_holds_the_numbers_without_html(auto_mpg, auto_mpg_model):
    """The computing step alone: tables and numbers, sections only where asked for."""
    from attnmoe.explain import build_report
    from attnmoe.explain.report import report_data

    data = auto_mpg.X_test.assign(mpg=auto_mpg.y_test.to_numpy(), origin=auto_mpg.X_test.index % 2)
    bare = report_data(auto_mpg_model, data, n_explained=0)
    assert (bare.explained, bare.accuracy, bare.shift, bare.groups) == (None, None, None, None)
    assert bare.numbers == {"n_rows": 140, "top_expert": bare.top_expert}
    assert bare.usage["mean gate weight"].sum() == pytest.approx(1.0)

    full = report_data(
        auto_mpg_model, data, "mpg", "origin", auto_mpg.X_train, n_explained=3, n_bootstrap=10
    )
    a = full.accuracy
    assert a.confusion.sum() == a.n_labelled == 140 and a.left_out == 0
    assert a.reliability["rows"].sum() == 140
    assert a.accuracy == pytest.approx(np.trace(a.confusion) / 140)
    assert len(full.explained) == 3 and all(1 <= len(r.experts) <= 3 for r in full.explained)
    assert all(r.true == str(data["mpg"].iloc[r.row]) for r in full.explained)
    assert full.shift.accuracy is None and full.shift.usage_tv >= 0  # no target in shift data
    assert full.groups.result.n_bootstrap == 10
    assert set(full.numbers) >= {"accuracy", "ece", "shift_usage_tv", "audit_flagged"}
    _, numbers = build_report(auto_mpg_model, data, n_explained=1)
    assert numbers == bare.numbers  # the page shows what report_data computed
