"""``attnmoe fit --categorical COL``: a number column read as unordered categories."""

import json

import numpy as np
import pandas as pd

from attnmoe.cli import main
from attnmoe.tabular import AttentionMoEClassifier

FAST = {"epochs": 5, "batch_size": 256, "learning_rate": 1e-2}


def _csv(tmp_path) -> tuple:
    rng = np.random.default_rng(0)
    n = 120
    frame = pd.DataFrame(
        {
            "zip": rng.choice([94305, 10001, 60601], n),
            "weight": rng.normal(size=n),
            "label": rng.choice(["yes", "no"], n),
        }
    )
    path = tmp_path / "train.csv"
    frame.to_csv(path, index=False)
    return path, frame


def _kinds(model) -> dict[str, str]:
    clf = AttentionMoEClassifier.from_pretrained(model)
    return {c.name: c.kind for c in clf.encoder_.columns_}


def test_categorical_columns_are_unordered_and_predict_from_numbers(tmp_path):
    data, frame = _csv(tmp_path)
    argv = ["fit", str(data), "--target", "label", "--params", json.dumps(FAST)]
    assert main([*argv, "--out", str(tmp_path / "ordered")]) == 0
    assert _kinds(tmp_path / "ordered") == {"zip": "numeric", "weight": "numeric"}
    model = tmp_path / "unordered"
    assert main([*argv, "--categorical", "zip", "--out", str(model)]) == 0
    assert _kinds(model) == {"zip": "categorical", "weight": "numeric"}
    # a CSV read later holds the zip codes as numbers: they find their categories
    clf = AttentionMoEClassifier.from_pretrained(model)
    tokens = clf.tokens(frame[["zip", "weight"]]).numpy()
    assert (tokens[:, 0] < len(clf.encoder_.columns_[0].categories)).all()
    out = tmp_path / "pred.csv"
    assert main(["predict", str(model), str(data), "--out", str(out)]) == 0
    assert len(pd.read_csv(out)) == len(frame)


def test_an_unknown_categorical_column_is_one_line(tmp_path, capsys):
    data, _ = _csv(tmp_path)
    argv = ["fit", str(data), "--target", "label", "--categorical", "zipcode"]
    assert main([*argv, "--out", str(tmp_path / "m")]) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "zipcode" in err[0]
