"""What a pilot runs: the models, the seeds, attnmoe's cost-knob sweep, per budget.

Every (model, seed) is one run. The models:

- ``attnmoe``: the classifier with its defaults (and the user's ``params``);
- ``attnmoe-tuned``: the same, with its cost knobs (``n_heads``, ``top_k``,
  ``n_ensembles``) chosen per seed among the budget's sweep on the training rows
  only: the least typical quarter of them is held out
  (:class:`~attnmoe.tabular.AtypicalHoldout`), the best candidate by accuracy
  there (ties to the earlier one; the defaults come first) is refitted on all
  training rows; its fit time includes the sweep;
- ``attnmoe-transductive``: the defaults, also trained on the new rows' features
  (never their labels) as ``X_unlabeled``; another protocol, reported apart;
- the alternatives a team would otherwise use, each with its library's defaults
  (:data:`~attnmoe.bench.baselines.MIXED_BASELINES`): logistic regression,
  HistGradientBoosting, LightGBM and CatBoost; and the majority class, a floor.
"""

from __future__ import annotations

import importlib.util
import itertools
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..files import write_text_atomically
from ..tabular import AttentionMoEClassifier

__all__ = [
    "ALTERNATIVES",
    "ATTNMOE_MODELS",
    "BUDGETS",
    "FLOOR",
    "MODELS",
    "OURS",
    "TRANSDUCTIVE",
    "TUNED",
    "Budget",
    "PilotRun",
    "check_settings",
    "default_models",
    "plan_pilot",
]

OURS = "attnmoe"
TUNED = "attnmoe-tuned"
TRANSDUCTIVE = "attnmoe-transductive"
ATTNMOE_MODELS = (OURS, TUNED, TRANSDUCTIVE)
#: the models a team would otherwise use (the best of them is the verdict's yardstick)
ALTERNATIVES = ("logistic_regression", "hist_gradient_boosting", "lightgbm", "catboost")
#: a floor, shown but never the yardstick
FLOOR = "majority"
MODELS = (*ATTNMOE_MODELS, *ALTERNATIVES, FLOOR)
#: the package each alternative needs beyond scikit-learn (the ``bench`` extra)
_NEEDS = {"lightgbm": "lightgbm", "catboost": "catboost"}


@dataclass(frozen=True)
class Budget:
    """Seeds per model and the candidates of attnmoe's cost-knob sweep (defaults first)."""

    seeds: int
    sweep: tuple[dict[str, Any], ...]


_KNOBS = ("n_ensembles", "n_heads", "top_k")


def _grid(heads: Sequence[int], top_k: Sequence[int | None], ensembles: Sequence[int]):
    """Every combination, as changes from the estimator's defaults."""
    defaults = {k: AttentionMoEClassifier().get_params()[k] for k in _KNOBS}
    combos = itertools.product(ensembles, heads, top_k)
    return tuple({k: v for k, v in zip(_KNOBS, c, strict=True) if v != defaults[k]} for c in combos)


#: quick / standard / thorough: more seeds, a wider sweep of the cost knobs. ``top_k``
#: below the number of columns trains with the torch engine, not the fused one (several
#: times slower to fit, however sparse at prediction): it joins the sweep from "standard"
BUDGETS: dict[str, Budget] = {
    "quick": Budget(3, ({}, {"n_heads": 1}, {"n_ensembles": 1})),
    "standard": Budget(
        5, ({}, {"n_heads": 1}, {"n_ensembles": 1}, {"top_k": 2}, {"n_heads": 1, "top_k": 1})
    ),
    "thorough": Budget(10, _grid((5, 2, 1), (None, 3, 1), (1, 3))),
}


@dataclass(frozen=True)
class PilotRun:
    model: str
    seed: int


def default_models() -> list[str]:
    """Every model of :data:`MODELS` whose package is installed (LightGBM and CatBoost
    come with the ``bench`` extra)."""
    return [m for m in MODELS if m not in _NEEDS or importlib.util.find_spec(_NEEDS[m])]


def plan_pilot(models: Sequence[str], seeds: int) -> list[PilotRun]:
    """Seeds ``0..seeds-1`` x ``models``, seed by seed (a stopped pilot has whole seeds).

    Raises
    ------
    ValueError
        An unknown model, fewer than one seed, or no attnmoe and alternative to weigh.
    """
    for name in models:
        if name not in MODELS:
            raise ValueError(f"unknown model {name!r}; choose from {list(MODELS)}")
    if seeds < 1:
        raise ValueError(f"--seeds must be >= 1, got {seeds}")
    if OURS not in models or not set(models) & set(ALTERNATIVES):
        raise ValueError(
            f"a pilot weighs {OURS} against an alternative: --models needs {OURS} and one of "
            f"{list(ALTERNATIVES)}"
        )
    models = list(dict.fromkeys(models))
    return [PilotRun(m, seed) for seed in range(seeds) for m in models]


def check_settings(out: Path, settings: dict[str, Any]) -> None:
    """Keep ``settings`` in ``out/settings.json``; refuse a folder written with others.

    A pilot's runs are comparable only under one configuration: a rerun with the
    same settings resumes, a rerun with others stops in one line.
    """
    path = out / "settings.json"
    text = json.dumps(settings, sort_keys=True, default=str)
    if path.exists():
        before = json.loads(path.read_text())
        now = json.loads(text)
        changed = sorted(k for k in before.keys() | now.keys() if before.get(k) != now.get(k))
        if changed:
            what = "; ".join(f"{k} was {before.get(k)!r}, now {now.get(k)!r}" for k in changed)
            raise ValueError(
                f"{out} holds a pilot run with other settings ({what}): rerun it with the "
                "same ones to resume, or choose another --out"
            )
        return
    out.mkdir(parents=True, exist_ok=True)
    write_text_atomically(path, json.dumps(json.loads(text), indent=2, sort_keys=True) + "\n")
