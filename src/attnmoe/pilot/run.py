"""One pilot run (a model, a seed): its effect on the new rows and its cost, measured alike.

Effect, on the new rows: accuracy, macro-F1, log loss and calibration (ECE, 10
equal-width bins of the predicted class's probability), and accuracy per group.

Cost, for every model in the same way:

- fit time and prediction time (``time.perf_counter``; prediction repeated
  until 0.1 s have passed, per 1,000 rows);
- peak memory of the fit: the process's resident memory at its highest during
  ``fit``, less its level just before. On Linux the high-water mark is reset
  before each fit (``/proc/self/clear_refs``), so the figure is the fit's own;
  elsewhere it is read from ``getrusage`` and counts only a new high. Memory the
  process already holds from earlier work (allocator caches) is reused before
  the resident level grows, so this is what the fit added, not all it touched;
- size on disk: attnmoe's ``save_pretrained`` folder, LightGBM's and CatBoost's
  native model files, and for scikit-learn models the file ``joblib.dump``
  writes (scikit-learn's documented way to persist one; measured, never loaded).

Runs are appended to ``runs.csv`` as they finish (the machinery of
:func:`attnmoe.bench.runner.append_runs`); a rerun skips those recorded.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pandas as pd
from joblib import delayed
from sklearn.metrics import f1_score
from sklearn.model_selection import GridSearchCV

from ..bench.baselines import make_mixed_baseline
from ..bench.runner import append_runs, recorded_runs
from ..explain.audit import expected_calibration_error
from ..tabular import AttentionMoEClassifier, AtypicalHoldout
from ..training.threads import torch_threads
from .plan import OURS, TRANSDUCTIVE, TUNED, PilotRun
from .split import PilotSplit

__all__ = ["RUN_COLUMNS", "effect", "model_size", "run_one", "run_pilot"]

RUN_COLUMNS = [
    "model", "seed", "accuracy", "macro_f1", "log_loss", "ece", "fit_seconds",
    "predict_seconds_per_1000", "peak_memory_mb", "size_bytes", "chosen", "group_accuracy",
]  # fmt: skip
_KEY = ["model", "seed"]
#: the model kept for the page's expert and audit views
EXPLAINED = (OURS, 0)


# -- memory -----------------------------------------------------------------------------


def _status_mb(field: str) -> float | None:
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def _max_rss_mb() -> float:
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024  # macOS: bytes


class _PeakMemory:
    """The growth of resident memory over a block, at its highest (see the module notes)."""

    def __enter__(self) -> _PeakMemory:
        try:  # "5" resets the high-water mark to the current level (Linux >= 4.0)
            with open("/proc/self/clear_refs", "w") as fh:
                fh.write("5")
            self.reset = True
            self.before = _status_mb("VmRSS")
        except OSError:
            self.reset = False
        if not self.reset or self.before is None:
            self.reset, self.before = False, _max_rss_mb()
        return self

    def __exit__(self, *exc: object) -> None:
        peak = _status_mb("VmHWM") if self.reset else None
        peak = _max_rss_mb() if peak is None else peak
        self.mb = max(0.0, peak - self.before)


# -- one run ----------------------------------------------------------------------------


def _model(run: PilotRun, params: dict[str, Any], sweep: Sequence[dict[str, Any]]) -> Any:
    if run.model in (OURS, TUNED, TRANSDUCTIVE):
        model = AttentionMoEClassifier(random_state=run.seed, **params)
        if run.model == TUNED:
            grid = [{k: [v] for k, v in candidate.items()} for candidate in sweep]
            model = GridSearchCV(
                model,
                grid,
                scoring="accuracy",
                cv=AtypicalHoldout(0.25),
                refit=True,
                error_score="raise",
            )
        return model
    return make_mixed_baseline(run.model, random_state=run.seed, n_jobs=1)


def _folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def model_size(model: Any, keep: Path | None = None) -> int:
    """Bytes of ``model`` on disk, in its library's own format (see the module notes).

    ``keep``: an attnmoe model is saved there (and stays); else in a temporary folder.
    """
    model = getattr(model, "best_estimator_", model)
    with tempfile.TemporaryDirectory() as tmp:
        if isinstance(model, AttentionMoEClassifier):
            folder = keep if keep is not None else Path(tmp) / "model"
            model.save_pretrained(folder)
            return _folder_bytes(folder)
        if hasattr(model, "booster_"):  # LightGBM: its text model file
            return len(model.booster_.model_to_string().encode())
        if hasattr(getattr(model, "model_", None), "save_model"):  # CatBoost: .cbm
            path = Path(tmp) / "model.cbm"
            model.model_.save_model(str(path))
            return path.stat().st_size
        path = Path(tmp) / "model.joblib"  # scikit-learn's own way to persist a model
        joblib.dump(model, path)
        return path.stat().st_size


def effect(classes: np.ndarray, proba: np.ndarray, truth: pd.Series) -> dict[str, float]:
    """Accuracy, macro-F1, log loss and ECE of ``proba`` (columns ``classes``) on ``truth``.

    A true class the model never saw in training has probability 0 (clipped to
    1e-15 in the log loss).
    """
    classes = np.asarray(classes).astype(str)
    truth = truth.astype(str).to_numpy()
    predicted = classes[proba.argmax(1)]
    correct = predicted == truth
    column = {c: j for j, c in enumerate(classes)}
    p_true = np.array([proba[i, column[t]] if t in column else 0.0 for i, t in enumerate(truth)])
    return {
        "accuracy": float(correct.mean()),
        "macro_f1": float(f1_score(truth, predicted, average="macro", zero_division=0)),
        "log_loss": float(-np.mean(np.log(np.clip(p_true, 1e-15, 1.0)))),
        "ece": expected_calibration_error(proba.max(1), correct),
    }


def _predict_seconds(model: Any, X: pd.DataFrame) -> tuple[np.ndarray, float]:
    """Probabilities on ``X`` and the mean seconds of one call (repeated for 0.1 s)."""
    calls, start = 0, time.perf_counter()
    while True:
        proba = np.asarray(model.predict_proba(X))
        calls += 1
        elapsed = time.perf_counter() - start
        if elapsed >= 0.1 or calls >= 20:
            return proba, elapsed / calls


#: the kinds of model already fitted once in this process (see :func:`_warm_up`)
_WARM: set[str] = set()


def _warm_up(split: PilotSplit, run: PilotRun, params: dict[str, Any]) -> None:
    """Fit and predict once on a few rows per class, once per kind of model and process.

    Imports, compiled kernels and the allocator's first pools are paid here, not by
    whichever seed happens to run first: every measured fit starts from a warm process.
    """
    kind = OURS if run.model == TRANSDUCTIVE else run.model
    if kind in _WARM:
        return
    rows = split.y_train.groupby(split.y_train).head(20).index
    quick = {**params, "epochs": 1} if kind in (OURS, TUNED) else params
    model = _model(PilotRun(kind, run.seed), quick, ({},))
    try:
        with warnings.catch_warnings(), torch_threads(1):
            warnings.simplefilter("ignore")
            model.fit(split.X_train.loc[rows], split.y_train.loc[rows])
            model.predict_proba(split.X_test.iloc[: len(rows)])
    except Exception:
        pass
    _WARM.add(kind)


def run_one(
    split: PilotSplit,
    run: PilotRun,
    params: dict[str, Any] | None = None,
    sweep: Sequence[dict[str, Any]] = ({},),
    models_dir: Path | None = None,
) -> dict[str, Any]:
    """Fit one model on the training rows and measure it on the new rows.

    Returns
    -------
    dict
        One row of ``runs.csv`` (:data:`RUN_COLUMNS`).
    """
    _warm_up(split, run, params or {})
    model = _model(run, params or {}, sweep)
    extra = {"X_unlabeled": split.X_test} if run.model == TRANSDUCTIVE else {}
    with warnings.catch_warnings(), torch_threads(1):
        warnings.simplefilter("ignore")  # unseen values, convergence: the numbers say it
        with _PeakMemory() as memory:
            start = time.perf_counter()
            model.fit(split.X_train, split.y_train, **extra)
            fit_seconds = time.perf_counter() - start
        proba, seconds = _predict_seconds(model, split.X_test)
    keep = (
        models_dir / f"{run.model}-seed{run.seed}"
        if models_dir and (run.model, run.seed) == EXPLAINED
        else None
    )
    row = {"model": run.model, "seed": run.seed}
    row.update(effect(model.classes_, proba, split.y_test))
    groups = {}
    if split.group_test is not None:
        correct = np.asarray(model.classes_).astype(str)[proba.argmax(1)] == split.y_test.to_numpy()
        groups = {
            str(g): float(correct[split.group_test.to_numpy() == g].mean())
            for g in sorted(split.group_test.unique())
        }
    row.update(
        fit_seconds=fit_seconds,
        predict_seconds_per_1000=1000 * seconds / len(split.X_test),
        peak_memory_mb=memory.mb,
        size_bytes=model_size(model, keep),
        chosen=json.dumps(model.best_params_, sort_keys=True) if run.model == TUNED else "",
        group_accuracy=json.dumps(groups, sort_keys=True),
    )
    return {k: row[k] for k in RUN_COLUMNS}


def run_pilot(
    split: PilotSplit,
    runs: Sequence[PilotRun],
    out: str | Path,
    params: dict[str, Any] | None = None,
    sweep: Sequence[dict[str, Any]] = ({},),
    jobs: int = 1,
    progress: bool = True,
) -> pd.DataFrame:
    """Run (or resume) ``runs``, appending each finished one to ``out/runs.csv``.

    The attnmoe model of seed 0 is kept in ``out/models/`` for the page's expert
    and audit views. Interrupted, the folder keeps every finished run; the same
    call resumes it.

    Returns
    -------
    DataFrame
        The planned runs' rows of ``runs.csv``, each once.
    """
    out = Path(out)
    out_csv = out / "runs.csv"
    seen = recorded_runs(out_csv, _KEY)
    todo = [r for r in runs if (r.model, str(r.seed)) not in seen]
    models_dir = out / "models"
    if any((r.model, r.seed) == EXPLAINED for r in todo):
        models_dir.mkdir(parents=True, exist_ok=True)
    tasks = [delayed(run_one)(split, r, params, sweep, models_dir) for r in todo]
    append_runs(tasks, out_csv, jobs=jobs, progress=progress)
    results = pd.read_csv(out_csv, keep_default_na=False, na_values=[""])
    results = results.drop_duplicates(_KEY, keep="first")
    planned = {(r.model, r.seed) for r in runs}
    keep = [(m, int(s)) in planned for m, s in zip(results["model"], results["seed"], strict=True)]
    return results[keep].reset_index(drop=True)
