"""``attnmoe fit --unlabeled NEW.csv``: the new rows' features as fit's ``X_unlabeled``."""

import json

import numpy as np
import pandas as pd

from attnmoe.cli import main
from attnmoe.tabular import AttentionMoEClassifier

FAST = {"epochs": 10, "batch_size": 256, "learning_rate": 1e-2}


def _frame(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    colour = rng.choice(["red", "green", "blue"], n)
    size = rng.integers(0, 4, n)
    return pd.DataFrame(
        {
            "id": np.arange(n),
            "colour": colour,
            "size": size,
            "weight": rng.normal(size=n),
            "label": np.where((colour == "red") | (size >= 3), "yes", "no"),
        }
    )


def test_fit_with_an_unlabeled_file_matches_the_python_api(tmp_path, capsys):
    train, new = _frame(200, 0), _frame(80, 1)
    data, new_path = tmp_path / "train.csv", tmp_path / "new.csv"
    train.to_csv(data, index=False)
    new.drop(columns="id").to_csv(new_path, index=False)  # its label column is ignored
    model = tmp_path / "model"
    argv = ["fit", str(data), "--target", "label", "--drop", "id", "--out", str(model)]
    assert main([*argv, "--params", json.dumps(FAST), "--unlabeled", str(new_path)]) == 0
    said = capsys.readouterr().out
    assert f"80 rows of {new_path} train their columns only" in said
    assert "fitted on 200 rows (and 80 without a label), 3 columns" in said
    features = ["colour", "size", "weight"]
    python = AttentionMoEClassifier(random_state=0, **FAST)
    python.fit(train[features], train["label"], X_unlabeled=new[features])
    cli = AttentionMoEClassifier.from_pretrained(model)
    np.testing.assert_allclose(
        cli.predict_proba(new[features]), python.predict_proba(new[features]), rtol=1e-5
    )
    plain = AttentionMoEClassifier(random_state=0, **FAST).fit(train[features], train["label"])
    assert not np.allclose(plain.predict_proba(new[features]), cli.predict_proba(new[features]))


def test_an_unlabeled_file_without_a_feature_column_is_refused(tmp_path, capsys):
    train = _frame(60, 0)
    data, new_path = tmp_path / "train.csv", tmp_path / "new.csv"
    train.to_csv(data, index=False)
    train.drop(columns=["weight"]).to_csv(new_path, index=False)
    model = tmp_path / "model"
    argv = ["fit", str(data), "--target", "label", "--drop", "id", "--out", str(model)]
    assert main([*argv, "--unlabeled", str(new_path)]) == 2
    err = capsys.readouterr().err
    assert "--unlabeled" in err and "no column(s) ['weight']" in err
    assert not model.exists()
