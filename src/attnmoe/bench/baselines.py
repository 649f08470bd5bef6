"""Baseline classifiers of the paper's tabular experiments, as a practitioner runs them.

Every factory returns an *unfitted* scikit-learn-compatible estimator that
accepts the integer-coded categorical DataFrames of
:mod:`attnmoe.bench.datasets` directly:

- ``logistic_regression``, ``random_forest``, ``gradient_boosting``, ``mlp``:
  the paper's baselines (Tables 3-5): one-hot features with the first level
  dropped, then the model; RF, GB and MLP are tuned by a 5-fold stratified
  shuffled grid search on accuracy over the paper's grids
  (``logistic_regression(legacy=True)`` swaps in :class:`LegacyLogisticRegression`,
  which reproduces the published per-seed numbers exactly);
- ``catboost``: CatBoost with native categorical features;
- ``ft_transformer``: the FT-Transformer of Gorishniy et al. (2021) from the
  ``rtdl_revisiting_models`` package, with the package's default
  hyperparameters and optimizer;
- ``tabm``: TabM (Gorishniy et al., 2025) from the ``tabm`` package, defaults.

:data:`MIXED_BASELINES` holds the real-table benchmark's models, for frames of
pandas categoricals and numbers, each with its library's defaults (no grid
search): majority class, logistic regression, random forest,
HistGradientBoosting, LightGBM, CatBoost, FT-Transformer and TabM.

All factories share the keywords ``random_state`` and ``n_jobs``; use
:func:`make_baseline` to build one by name.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from typing import Any

import numpy as np
import pandas as pd
from scipy.optimize import minimize
from scipy.special import log_softmax
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.ensemble import GradientBoostingClassifier, RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, StratifiedKFold, train_test_split
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import LabelEncoder, OneHotEncoder, OrdinalEncoder, StandardScaler
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_is_fitted
from threadpoolctl import threadpool_limits

from ..training.threads import torch_threads

__all__ = [
    "BASELINES",
    "FROM_DTYPE",
    "GB_GRID",
    "MIXED_BASELINES",
    "MLP_GRID",
    "RF_GRID",
    "CatBoostCategoricalClassifier",
    "FTTransformerClassifier",
    "LegacyLogisticRegression",
    "TabMClassifier",
    "catboost",
    "ft_transformer",
    "gradient_boosting",
    "hist_gradient_boosting",
    "lightgbm",
    "logistic_regression",
    "majority",
    "make_baseline",
    "make_mixed_baseline",
    "mixed_frame_pipeline",
    "mlp",
    "one_hot_pipeline",
    "random_forest",
    "tabm",
]

# The paper's grids (paper Section 3, "Baselines").
RF_GRID: dict[str, list[Any]] = {
    "criterion": ["gini", "entropy"],
    "n_estimators": [50, 100, 200],
    "max_depth": [1, 3, None],
}
GB_GRID: dict[str, list[Any]] = {
    "learning_rate": [0.01, 0.1, 1],
    "n_estimators": [50, 100, 200],
    "max_depth": [1, 3, 5],
}
MLP_GRID: dict[str, list[Any]] = {
    "hidden_layer_sizes": [(50,), (100,), (100, 50)],
    "alpha": [1e-4, 1e-3, 1e-2],
    "learning_rate": ["constant", "adaptive"],
}


def one_hot_pipeline(estimator: BaseEstimator) -> Pipeline:
    """One-hot encode every feature (first level dropped), then apply ``estimator``.

    Parameters
    ----------
    estimator : estimator
        The classifier that sees the one-hot features (step name ``"clf"``).

    Returns
    -------
    sklearn.pipeline.Pipeline
        ``onehot -> clf``.
    """
    # drop="first" mirrors the paper's dummy coding; an unseen test category is
    # encoded as all zeros, i.e. like the dropped reference level, instead of
    # failing.  Dense output: the data are small and some models are faster on it.
    encoder = OneHotEncoder(drop="first", handle_unknown="ignore", sparse_output=False)
    return Pipeline([("onehot", encoder), ("clf", estimator)])


def _grid_search(
    estimator: BaseEstimator,
    grid: Mapping[str, Sequence[Any]],
    random_state: int | None,
    n_jobs: int | None,
    cv_splits: int,
) -> GridSearchCV:
    # The grid addresses the classifier inside the one-hot pipeline.
    param_grid = {f"clf__{key}": list(values) for key, values in grid.items()}
    cv = StratifiedKFold(n_splits=cv_splits, shuffle=True, random_state=random_state)
    return GridSearchCV(
        one_hot_pipeline(estimator),
        param_grid=param_grid,
        scoring="accuracy",
        cv=cv,
        n_jobs=n_jobs,
        refit=True,
    )


class LegacyLogisticRegression(ClassifierMixin, BaseEstimator):
    """L2 logistic regression with scikit-learn's pre-1.1 L-BFGS objective.

    The paper's logistic-regression numbers were computed with an older
    scikit-learn whose L-BFGS solver minimised the *sum* of the per-sample
    losses plus ``||w||^2 / (2 C)`` and stopped at a projected-gradient norm of
    ``tol``.  Current scikit-learn minimises the *mean* loss, so the same
    ``tol`` stops at a different, less converged point and a few predictions
    change.  This class re-implements the old objective (multinomial for more
    than two classes, binary logistic loss for two, zero start, unpenalised
    intercept) so that the published per-seed accuracies are reproduced
    exactly.

    Parameters
    ----------
    C : float, default 1.0
        Inverse regularisation strength.
    tol : float, default 1e-4
        Projected-gradient tolerance of L-BFGS-B.
    max_iter : int, default 2000
        Maximum number of L-BFGS-B iterations.
    """

    def __init__(self, C: float = 1.0, tol: float = 1e-4, max_iter: int = 2000) -> None:
        self.C = C
        self.tol = tol
        self.max_iter = max_iter

    def fit(self, X: Any, y: Any) -> LegacyLogisticRegression:
        """Fit the model.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Numeric features.
        y : array-like of shape (n_samples,)
            Class labels.

        Returns
        -------
        LegacyLogisticRegression
            The fitted estimator.
        """
        X = np.asarray(X, dtype=np.float64)
        encoder = LabelEncoder().fit(y)
        codes = encoder.transform(y)
        self.classes_ = encoder.classes_
        n, p = X.shape
        n_classes = len(self.classes_)
        if n_classes < 2:
            raise ValueError("LegacyLogisticRegression needs at least two classes")
        alpha = 1.0 / self.C
        Xb = np.hstack([X, np.ones((n, 1))])  # last column: intercept

        if n_classes == 2:
            # Old "auto" picked one-vs-rest, i.e. the binary loss, for two classes.
            sign = np.where(codes == 1, 1.0, -1.0)

            def loss_grad(w: np.ndarray) -> tuple[float, np.ndarray]:
                z = sign * (Xb @ w)
                loss = np.logaddexp(0.0, -z).sum() + 0.5 * alpha * (w[:p] @ w[:p])
                weight = -sign * np.exp(-np.logaddexp(0.0, z))  # -y * sigmoid(-y z)
                grad = Xb.T @ weight
                grad[:p] += alpha * w[:p]
                return float(loss), grad

            size = p + 1
        else:
            onehot = np.eye(n_classes)[codes]

            def loss_grad(w: np.ndarray) -> tuple[float, np.ndarray]:
                W = w.reshape(n_classes, p + 1)
                log_prob = log_softmax(Xb @ W.T, axis=1)
                loss = -(onehot * log_prob).sum() + 0.5 * alpha * (W[:, :p] ** 2).sum()
                grad = (np.exp(log_prob) - onehot).T @ Xb
                grad[:, :p] += alpha * W[:, :p]
                return float(loss), grad.ravel()

            size = n_classes * (p + 1)

        # The matrices are small: multi-threaded BLAS only adds synchronisation
        # (several times slower on a busy 2-core machine), so use one thread.
        with threadpool_limits(limits=1, user_api="blas"):
            result = minimize(
                loss_grad,
                np.zeros(size),
                method="L-BFGS-B",
                jac=True,
                options={"gtol": self.tol, "maxiter": self.max_iter},
            )
        self.n_iter_ = np.array([result.nit])
        W = result.x.reshape(-1, p + 1)
        self.coef_ = W[:, :p]
        self.intercept_ = W[:, p]
        self.n_features_in_ = p
        return self

    def decision_function(self, X: Any) -> np.ndarray:
        """Linear scores (one column per class; a single column for two classes)."""
        check_is_fitted(self, "coef_")
        scores = np.asarray(X, dtype=np.float64) @ self.coef_.T + self.intercept_
        return scores.ravel() if scores.shape[1] == 1 else scores

    def predict_proba(self, X: Any) -> np.ndarray:
        """Class probabilities, columns ordered as ``classes_``."""
        scores = self.decision_function(X)
        if scores.ndim == 1:
            scores = np.column_stack([np.zeros_like(scores), scores])
        return np.exp(log_softmax(scores, axis=1))

    def predict(self, X: Any) -> np.ndarray:
        """Most probable class."""
        scores = self.decision_function(X)
        if scores.ndim == 1:
            return self.classes_[(scores > 0).astype(int)]
        return self.classes_[np.argmax(scores, axis=1)]


def logistic_regression(
    random_state: int | None = 0,
    n_jobs: int | None = 1,
    *,
    max_iter: int = 2000,
    legacy: bool = False,
) -> Pipeline:
    """Return the paper's logistic regression: one-hot features, L2, ``max_iter=2000``.

    Parameters
    ----------
    random_state : int or None, default 0
        Unused (L-BFGS is deterministic); accepted for a uniform interface.
    n_jobs : int or None, default 1
        Unused; accepted for a uniform interface.
    max_iter : int, default 2000
        Maximum solver iterations.
    legacy : bool, default False
        Use :class:`LegacyLogisticRegression`, the objective of the
        scikit-learn version the paper ran, which reproduces the published
        per-seed numbers exactly; the default is current scikit-learn's
        ``LogisticRegression``.

    Returns
    -------
    sklearn.pipeline.Pipeline
        ``onehot -> clf``, unfitted.
    """
    del random_state, n_jobs
    if legacy:
        return one_hot_pipeline(LegacyLogisticRegression(max_iter=max_iter))
    return one_hot_pipeline(LogisticRegression(max_iter=max_iter))


def random_forest(
    random_state: int | None = 0,
    n_jobs: int | None = 1,
    *,
    param_grid: Mapping[str, Sequence[Any]] | None = None,
    cv_splits: int = 5,
) -> GridSearchCV:
    """Return the paper's random forest, tuned by grid search on accuracy.

    Parameters
    ----------
    random_state : int or None, default 0
        Seed of the forest and of the CV shuffling.
    n_jobs : int or None, default 1
        Parallel grid-search fits.
    param_grid : mapping, optional
        Grid over ``RandomForestClassifier`` parameters; default :data:`RF_GRID`.
    cv_splits : int, default 5
        Folds of the stratified shuffled cross-validation.

    Returns
    -------
    sklearn.model_selection.GridSearchCV
        Unfitted; refits the best one-hot pipeline on all training data.
    """
    return _grid_search(
        RandomForestClassifier(random_state=random_state),
        RF_GRID if param_grid is None else param_grid,
        random_state,
        n_jobs,
        cv_splits,
    )


def gradient_boosting(
    random_state: int | None = 0,
    n_jobs: int | None = 1,
    *,
    param_grid: Mapping[str, Sequence[Any]] | None = None,
    cv_splits: int = 5,
) -> GridSearchCV:
    """Return the paper's gradient boosting, tuned by grid search on accuracy.

    Parameters
    ----------
    random_state : int or None, default 0
        Seed of the boosting and of the CV shuffling.
    n_jobs : int or None, default 1
        Parallel grid-search fits.
    param_grid : mapping, optional
        Grid over ``GradientBoostingClassifier`` parameters; default :data:`GB_GRID`.
    cv_splits : int, default 5
        Folds of the stratified shuffled cross-validation.

    Returns
    -------
    sklearn.model_selection.GridSearchCV
        Unfitted; refits the best one-hot pipeline on all training data.
    """
    return _grid_search(
        GradientBoostingClassifier(random_state=random_state),
        GB_GRID if param_grid is None else param_grid,
        random_state,
        n_jobs,
        cv_splits,
    )


def mlp(
    random_state: int | None = 0,
    n_jobs: int | None = 1,
    *,
    param_grid: Mapping[str, Sequence[Any]] | None = None,
    cv_splits: int = 5,
    max_iter: int = 2000,
) -> GridSearchCV:
    """Return the paper's MLP (``learning_rate_init=0.01``), tuned by grid search.

    Parameters
    ----------
    random_state : int or None, default 0
        Seed of the weights and of the CV shuffling.
    n_jobs : int or None, default 1
        Parallel grid-search fits.
    param_grid : mapping, optional
        Grid over ``MLPClassifier`` parameters; default :data:`MLP_GRID`.
    cv_splits : int, default 5
        Folds of the stratified shuffled cross-validation.
    max_iter : int, default 2000
        Maximum training epochs of each MLP.

    Returns
    -------
    sklearn.model_selection.GridSearchCV
        Unfitted; refits the best one-hot pipeline on all training data.
    """
    estimator = MLPClassifier(learning_rate_init=0.01, max_iter=max_iter, random_state=random_state)
    return _grid_search(
        estimator, MLP_GRID if param_grid is None else param_grid, random_state, n_jobs, cv_splits
    )


def _as_frame(X: Any) -> pd.DataFrame:
    if isinstance(X, pd.DataFrame):
        return X
    return pd.DataFrame(np.asarray(X))


#: ``cat_features`` value that picks the columns of pandas ``category`` dtype
FROM_DTYPE = "from_dtype"


def _categorical_columns(frame: pd.DataFrame, cat_features: Any) -> list:
    """The categorical columns: all (``None``), the ``category`` dtype ones
    (:data:`FROM_DTYPE`), or the given ones."""
    if cat_features is None:
        return list(frame.columns)
    if isinstance(cat_features, str) and cat_features == FROM_DTYPE:
        return [c for c in frame.columns if isinstance(frame[c].dtype, pd.CategoricalDtype)]
    return list(cat_features)


class CatBoostCategoricalClassifier(ClassifierMixin, BaseEstimator):
    """CatBoost with native categorical features, as a plain scikit-learn estimator.

    A thin wrapper so that ``cat_features`` can default to *every* column (the
    data of :mod:`attnmoe.bench.datasets` are all categorical), that
    ``predict`` returns a flat label vector, and that ``clone`` works.

    Parameters
    ----------
    iterations : int or None, default None
        Boosting rounds; ``None`` keeps CatBoost's default (1000).
    cat_features : sequence of str or int, or "from_dtype", optional
        Categorical columns; default all columns; ``"from_dtype"``: the columns
        of pandas ``category`` dtype.
    random_state : int or None, default 0
        CatBoost ``random_seed``.
    thread_count : int or None, default 1
        CatBoost threads (``None`` lets CatBoost use all cores).
    params : mapping, optional
        Further ``CatBoostClassifier`` keyword arguments.
    """

    def __init__(
        self,
        iterations: int | None = None,
        cat_features: Sequence[str | int] | None = None,
        random_state: int | None = 0,
        thread_count: int | None = 1,
        params: Mapping[str, Any] | None = None,
    ) -> None:
        self.iterations = iterations
        self.cat_features = cat_features
        self.random_state = random_state
        self.thread_count = thread_count
        self.params = params

    def fit(self, X: Any, y: Any) -> CatBoostCategoricalClassifier:
        """Fit CatBoost on ``X`` (integer or string categories) and labels ``y``.

        Parameters
        ----------
        X : DataFrame or array-like of shape (n_samples, n_features)
            Features.
        y : array-like of shape (n_samples,)
            Class labels.

        Returns
        -------
        CatBoostCategoricalClassifier
            The fitted estimator.
        """
        from catboost import CatBoostClassifier

        frame = _as_frame(X)
        cat_features = _categorical_columns(frame, self.cat_features)
        kwargs: dict[str, Any] = {
            "verbose": 0,
            # CatBoost writes a catboost_info/ directory by default; benchmarks
            # must not litter the working directory.
            "allow_writing_files": False,
            "random_seed": self.random_state,
            "thread_count": -1 if self.thread_count is None else self.thread_count,
            "cat_features": list(cat_features),
        }
        if self.iterations is not None:
            kwargs["iterations"] = self.iterations
        kwargs.update(self.params or {})
        self.model_ = CatBoostClassifier(**kwargs)
        self.model_.fit(frame, np.asarray(y))
        self.classes_ = np.asarray(self.model_.classes_)
        self.n_features_in_ = frame.shape[1]
        return self

    def predict_proba(self, X: Any) -> np.ndarray:
        """Class probabilities, columns ordered as ``classes_``."""
        check_is_fitted(self, "model_")
        return np.asarray(self.model_.predict_proba(_as_frame(X)))

    def predict(self, X: Any) -> np.ndarray:
        """Most probable class (flat vector, unlike CatBoost's ``(n, 1)``)."""
        return self.classes_[np.argmax(self.predict_proba(X), axis=1)]


def catboost(
    random_state: int | None = 0,
    n_jobs: int | None = 1,
    *,
    iterations: int | None = None,
    cat_features: Sequence[str | int] | None = None,
    **params: Any,
) -> CatBoostCategoricalClassifier:
    """Return CatBoost with native categorical features (every column by default).

    Parameters
    ----------
    random_state : int or None, default 0
        CatBoost ``random_seed``.
    n_jobs : int or None, default 1
        CatBoost ``thread_count``.
    iterations : int or None, default None
        Boosting rounds; ``None`` keeps CatBoost's default.
    cat_features : sequence, optional
        Categorical columns; default all.
    **params
        Further ``CatBoostClassifier`` keyword arguments.

    Returns
    -------
    CatBoostCategoricalClassifier
        Unfitted.
    """
    return CatBoostCategoricalClassifier(
        iterations=iterations,
        cat_features=cat_features,
        random_state=random_state,
        thread_count=n_jobs,
        params=params or None,
    )


class FTTransformerClassifier(ClassifierMixin, BaseEstimator):
    """FT-Transformer (``rtdl_revisiting_models``) behind a scikit-learn interface.

    Categorical columns are ordinal-encoded into the model's categorical
    embeddings (one extra slot per column for categories unseen in training);
    other columns are standardised and fed as continuous features.  The model
    uses the package's default configuration for ``n_blocks`` blocks and its
    default AdamW optimizer.  Training runs for at most ``max_epochs`` epochs
    and keeps the weights of the epoch with the lowest cross-entropy on a
    stratified validation split carved from the *training* data (the test
    data are never looked at), stopping after ``patience`` epochs without
    improvement.

    Parameters
    ----------
    n_blocks : int, default 3
        Transformer blocks (1-6; sets the package's default width and dropouts).
    max_epochs : int, default 100
        Maximum training epochs.
    batch_size : int, default 128
        Mini-batch size.
    patience : int or None, default 16
        Early-stopping patience in epochs; ``None`` trains all ``max_epochs``
        and keeps the best epoch.
    validation_fraction : float, default 0.2
        Share of the training rows held out for early stopping.
    cat_features : sequence of str or int, or "from_dtype", optional
        Categorical columns; default all columns; ``"from_dtype"``: the columns
        of pandas ``category`` dtype.
    random_state : int or None, default None
        Seed of initialisation, dropout, batching and the validation split.
    n_threads : int or None, default None
        Torch CPU threads during ``fit``/``predict`` (restored afterwards);
        ``None`` leaves torch's setting alone.
    device : str, default "cpu"
        Torch device.
    """

    def __init__(
        self,
        n_blocks: int = 3,
        max_epochs: int = 100,
        batch_size: int = 128,
        patience: int | None = 16,
        validation_fraction: float = 0.2,
        cat_features: Sequence[str | int] | None = None,
        random_state: int | None = None,
        n_threads: int | None = None,
        device: str = "cpu",
    ) -> None:
        self.n_blocks = n_blocks
        self.max_epochs = max_epochs
        self.batch_size = batch_size
        self.patience = patience
        self.validation_fraction = validation_fraction
        self.cat_features = cat_features
        self.random_state = random_state
        self.n_threads = n_threads
        self.device = device

    # -- encoding -------------------------------------------------------------
    def _encode(self, X: Any) -> tuple[Any, Any]:
        import torch

        frame = _as_frame(X)
        x_cat = None
        if self.cat_columns_:
            codes = self.ordinal_.transform(frame[self.cat_columns_]).astype(np.int64)
            # OrdinalEncoder marks unseen categories -1; route them to the spare slot.
            spare = np.asarray(self.cat_cardinalities_) - 1
            codes = np.where(codes < 0, spare, codes)
            x_cat = torch.as_tensor(codes, dtype=torch.long)
        x_cont = None
        if self.cont_columns_:
            values = self.scaler_.transform(frame[self.cont_columns_].to_numpy(dtype=float))
            x_cont = torch.as_tensor(values, dtype=torch.float32)
        return x_cont, x_cat

    def _threads(self) -> AbstractContextManager[None]:
        return torch_threads(self.n_threads)

    # -- fitting --------------------------------------------------------------
    def fit(self, X: Any, y: Any) -> FTTransformerClassifier:
        """Train the FT-Transformer.

        Parameters
        ----------
        X : DataFrame or array-like of shape (n_samples, n_features)
            Features; categorical columns hold integer or string codes.
        y : array-like of shape (n_samples,)
            Class labels.

        Returns
        -------
        FTTransformerClassifier
            The fitted estimator.
        """
        import torch

        frame = _as_frame(X)
        columns = list(frame.columns)
        self.cat_columns_ = _categorical_columns(frame, self.cat_features)
        self.cont_columns_ = [c for c in columns if c not in self.cat_columns_]
        self.n_features_in_ = len(columns)
        label_encoder = LabelEncoder().fit(y)
        self.classes_ = label_encoder.classes_
        targets = label_encoder.transform(y)

        if self.cat_columns_:
            self.ordinal_ = OrdinalEncoder(
                handle_unknown="use_encoded_value", unknown_value=-1, dtype=np.int64
            ).fit(frame[self.cat_columns_])
            # +1: a spare embedding per column for categories unseen in training.
            self.cat_cardinalities_ = [len(c) + 1 for c in self.ordinal_.categories_]
        else:
            self.cat_cardinalities_ = []
        if self.cont_columns_:
            self.scaler_ = StandardScaler().fit(frame[self.cont_columns_].to_numpy(dtype=float))

        rng = check_random_state(self.random_state)
        seed = int(rng.randint(2**31 - 1))
        indices = np.arange(len(frame))
        counts = np.bincount(targets)
        stratify = targets if counts.min() >= 2 else None
        train_idx, val_idx = train_test_split(
            indices, test_size=self.validation_fraction, random_state=seed, stratify=stratify
        )
        x_cont, x_cat = self._encode(frame)
        y_all = torch.as_tensor(targets, dtype=torch.long)

        device = torch.device(self.device)

        def take(t: Any, idx: np.ndarray) -> Any:
            return None if t is None else t[torch.as_tensor(idx)].to(device)

        tr = (take(x_cont, train_idx), take(x_cat, train_idx), y_all[train_idx].to(device))
        va = (take(x_cont, val_idx), take(x_cat, val_idx), y_all[val_idx].to(device))

        # fork_rng: seed torch for init/dropout without disturbing the caller's RNG.
        with self._threads(), torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model, optimizer = self._build(device)
            loss_fn = self._loss_function()
            batch_gen = torch.Generator().manual_seed(seed)
            n_train = len(train_idx)
            best_loss, best_state, best_epoch, stale = math.inf, None, -1, 0
            self.history_: list[dict[str, float]] = []
            for epoch in range(self.max_epochs):
                model.train()
                order = torch.randperm(n_train, generator=batch_gen).to(device)
                total = 0.0
                for start in range(0, n_train, self.batch_size):
                    idx = order[start : start + self.batch_size]
                    logits = model(
                        None if tr[0] is None else tr[0][idx],
                        None if tr[1] is None else tr[1][idx],
                    )
                    loss = loss_fn(logits, tr[2][idx])
                    optimizer.zero_grad()
                    loss.backward()
                    optimizer.step()
                    total += float(loss.detach()) * len(idx)
                val_loss = self._loss(model, va, loss_fn)
                self.history_.append(
                    {"epoch": epoch, "train_loss": total / n_train, "val_loss": val_loss}
                )
                if val_loss < best_loss:
                    best_loss, best_epoch, stale = val_loss, epoch, 0
                    best_state = copy.deepcopy(model.state_dict())
                else:
                    stale += 1
                    if self.patience is not None and stale >= self.patience:
                        break
            if best_state is not None:
                model.load_state_dict(best_state)
        model.eval()
        self.model_ = model
        self.best_epoch_ = best_epoch
        self.best_val_loss_ = best_loss
        return self

    def _build(self, device: Any) -> tuple[Any, Any]:
        """The untrained network on ``device`` and its optimizer (the package's defaults)."""
        from rtdl_revisiting_models import FTTransformer

        kwargs = FTTransformer.get_default_kwargs(self.n_blocks)
        model = FTTransformer(
            n_cont_features=len(self.cont_columns_),
            cat_cardinalities=self.cat_cardinalities_,
            d_out=len(self.classes_),
            **kwargs,
        ).to(device)
        return model, model.make_default_optimizer()

    def _loss_function(self) -> Any:
        """The training loss of the network's output and the class codes."""
        import torch

        return torch.nn.CrossEntropyLoss()

    def _probabilities(self, logits: Any) -> Any:
        import torch

        return torch.softmax(logits, dim=1)

    def _loss(self, model: Any, data: tuple[Any, Any, Any], loss_fn: Any) -> float:
        import torch

        model.eval()
        with torch.no_grad():
            logits = self._logits(model, data[0], data[1])
            return float(loss_fn(logits, data[2]))

    def _logits(self, model: Any, x_cont: Any, x_cat: Any) -> Any:
        import torch

        n = len(x_cont if x_cont is not None else x_cat)
        chunks = []
        for start in range(0, n, 1024):
            sl = slice(start, start + 1024)
            chunks.append(
                model(
                    None if x_cont is None else x_cont[sl],
                    None if x_cat is None else x_cat[sl],
                )
            )
        return torch.cat(chunks)

    def predict_proba(self, X: Any) -> np.ndarray:
        """Class probabilities, columns ordered as ``classes_``."""
        import torch

        check_is_fitted(self, "model_")
        x_cont, x_cat = self._encode(X)
        device = torch.device(self.device)
        with self._threads(), torch.no_grad():
            self.model_.eval()
            logits = self._logits(
                self.model_,
                None if x_cont is None else x_cont.to(device),
                None if x_cat is None else x_cat.to(device),
            )
            return self._probabilities(logits).cpu().numpy()

    def predict(self, X: Any) -> np.ndarray:
        """Most probable class."""
        return self.classes_[np.argmax(self.predict_proba(X), axis=1)]


def ft_transformer(
    random_state: int | None = 0,
    n_jobs: int | None = 1,
    *,
    n_blocks: int = 3,
    max_epochs: int = 100,
    batch_size: int = 128,
    patience: int | None = 16,
    validation_fraction: float = 0.2,
    cat_features: Sequence[str | int] | None = None,
    device: str = "cpu",
) -> FTTransformerClassifier:
    """Return an FT-Transformer classifier with the package's defaults.

    Parameters
    ----------
    random_state : int or None, default 0
        Seed of initialisation, dropout, batching and the validation split.
    n_jobs : int or None, default 1
        Torch CPU threads while fitting and predicting.
    n_blocks, max_epochs, batch_size, patience, validation_fraction, cat_features, device
        See :class:`FTTransformerClassifier`.

    Returns
    -------
    FTTransformerClassifier
        Unfitted.
    """
    return FTTransformerClassifier(
        n_blocks=n_blocks,
        max_epochs=max_epochs,
        batch_size=batch_size,
        patience=patience,
        validation_fraction=validation_fraction,
        cat_features=cat_features,
        random_state=random_state,
        n_threads=n_jobs,
        device=device,
    )


class TabMClassifier(FTTransformerClassifier):
    """TabM (``tabm`` package; Gorishniy et al., ICLR 2025) behind a scikit-learn interface.

    One network that holds ``k`` MLPs sharing most of their weights, trained
    together. The data handling, training loop and early stopping are those of
    :class:`FTTransformerClassifier` (numbers standardised, categorical columns
    as codes that TabM one-hot encodes, a spare code for categories unseen in
    training); the model is ``TabM.make`` with the package's defaults and the
    optimizer the package's documentation uses, AdamW with ``lr=2e-3`` and
    ``weight_decay=3e-4``. The training loss is the mean cross-entropy of the
    ``k`` members; a prediction is the mean of their class probabilities.

    Parameters
    ----------
    max_epochs, batch_size, patience, validation_fraction, cat_features, random_state,
    n_threads, device
        See :class:`FTTransformerClassifier` (``batch_size`` defaults to 256 here,
        as in the package's example).
    """

    def __init__(
        self,
        max_epochs: int = 100,
        batch_size: int = 256,
        patience: int | None = 16,
        validation_fraction: float = 0.2,
        cat_features: Sequence[str | int] | str | None = None,
        random_state: int | None = None,
        n_threads: int | None = None,
        device: str = "cpu",
    ) -> None:
        super().__init__(
            max_epochs=max_epochs,
            batch_size=batch_size,
            patience=patience,
            validation_fraction=validation_fraction,
            cat_features=cat_features,
            random_state=random_state,
            n_threads=n_threads,
            device=device,
        )

    def _build(self, device: Any) -> tuple[Any, Any]:
        import torch
        from tabm import TabM

        model = TabM.make(
            n_num_features=len(self.cont_columns_),
            cat_cardinalities=self.cat_cardinalities_ or None,
            d_out=len(self.classes_),
        ).to(device)
        return model, torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=3e-4)

    def _loss_function(self) -> Any:
        import torch

        cross_entropy = torch.nn.CrossEntropyLoss()

        def members_loss(logits: Any, targets: Any) -> Any:
            # logits (batch, k, classes): every member learns every row
            k = logits.shape[1]
            return cross_entropy(logits.flatten(0, 1), targets.repeat_interleave(k))

        return members_loss

    def _probabilities(self, logits: Any) -> Any:
        import torch

        return torch.softmax(logits, dim=-1).mean(dim=1)


def tabm(
    random_state: int | None = 0,
    n_jobs: int | None = 1,
    *,
    max_epochs: int = 100,
    batch_size: int = 256,
    patience: int | None = 16,
    cat_features: Sequence[str | int] | str | None = FROM_DTYPE,
    device: str = "cpu",
) -> TabMClassifier:
    """Return a TabM classifier with the package's defaults (see :class:`TabMClassifier`).

    Parameters
    ----------
    random_state : int or None, default 0
        Seed of initialisation, dropout, batching and the validation split.
    n_jobs : int or None, default 1
        Torch CPU threads while fitting and predicting.
    max_epochs, batch_size, patience, cat_features, device
        See :class:`TabMClassifier`; categorical columns default to the pandas
        ``category`` ones.

    Returns
    -------
    TabMClassifier
        Unfitted.
    """
    return TabMClassifier(
        max_epochs=max_epochs,
        batch_size=batch_size,
        patience=patience,
        cat_features=cat_features,
        random_state=random_state,
        n_threads=n_jobs,
        device=device,
    )


# -- models for mixed frames (pandas categoricals and numbers) ----------------------------


def mixed_frame_pipeline(estimator: BaseEstimator, scale: bool = False) -> Pipeline:
    """One-hot encode the ``category`` columns, pass (or standardise) the numbers, then fit.

    Parameters
    ----------
    estimator : estimator
        The classifier (step name ``"clf"``).
    scale : bool, default False
        Standardise the numeric columns (for linear models).

    Returns
    -------
    sklearn.pipeline.Pipeline
        ``encode -> clf``; a test category unseen in training is all zeros.
    """
    from sklearn.compose import ColumnTransformer, make_column_selector

    onehot = OneHotEncoder(handle_unknown="ignore", sparse_output=False)
    numbers = StandardScaler() if scale else "passthrough"
    encode = ColumnTransformer(
        [
            ("categorical", onehot, make_column_selector(dtype_include="category")),
            ("numeric", numbers, make_column_selector(dtype_exclude="category")),
        ]
    )
    return Pipeline([("encode", encode), ("clf", estimator)])


def majority(random_state: int | None = 0, n_jobs: int | None = 1) -> BaseEstimator:
    """Return the majority-class classifier (the training rows' most frequent class)."""
    from sklearn.dummy import DummyClassifier

    del random_state, n_jobs
    return DummyClassifier(strategy="most_frequent")


def logistic_regression_mixed(random_state: int | None = 0, n_jobs: int | None = 1) -> Pipeline:
    """Return scikit-learn's default logistic regression (``max_iter=2000``) on one-hot
    categoricals and standardised numbers."""
    del n_jobs
    clf = LogisticRegression(max_iter=2000, random_state=random_state)
    return mixed_frame_pipeline(clf, scale=True)


def random_forest_mixed(random_state: int | None = 0, n_jobs: int | None = 1) -> Pipeline:
    """Return scikit-learn's default random forest on one-hot categoricals and raw numbers."""
    return mixed_frame_pipeline(RandomForestClassifier(random_state=random_state, n_jobs=n_jobs))


def hist_gradient_boosting(random_state: int | None = 0, n_jobs: int | None = 1) -> BaseEstimator:
    """Return scikit-learn's default HistGradientBoosting, ``category`` columns native."""
    from sklearn.ensemble import HistGradientBoostingClassifier

    del n_jobs
    return HistGradientBoostingClassifier(
        categorical_features="from_dtype", random_state=random_state
    )


def lightgbm(random_state: int | None = 0, n_jobs: int | None = 1) -> BaseEstimator:
    """Return LightGBM's default classifier; pandas ``category`` columns are native."""
    from lightgbm import LGBMClassifier

    return LGBMClassifier(random_state=random_state, n_jobs=n_jobs, verbose=-1)


def catboost_mixed(
    random_state: int | None = 0, n_jobs: int | None = 1
) -> CatBoostCategoricalClassifier:
    """Return CatBoost's defaults with the ``category`` columns native (see :func:`catboost`)."""
    return catboost(random_state, n_jobs, cat_features=FROM_DTYPE)


def ft_transformer_mixed(
    random_state: int | None = 0, n_jobs: int | None = 1
) -> FTTransformerClassifier:
    """Return the FT-Transformer (:func:`ft_transformer`), the ``category`` columns embedded."""
    return ft_transformer(random_state, n_jobs, cat_features=FROM_DTYPE)


#: Baselines of the real-table benchmark (frames of pandas categoricals and numbers),
#: each with its library's defaults; each factory takes ``random_state`` and ``n_jobs``.
MIXED_BASELINES: dict[str, Callable[..., BaseEstimator]] = {
    "majority": majority,
    "logistic_regression": logistic_regression_mixed,
    "random_forest": random_forest_mixed,
    "hist_gradient_boosting": hist_gradient_boosting,
    "lightgbm": lightgbm,
    "catboost": catboost_mixed,
    "ft_transformer": ft_transformer_mixed,
    "tabm": tabm,
}


#: Baseline factories by name; each takes ``random_state`` and ``n_jobs``.
BASELINES: dict[str, Callable[..., BaseEstimator]] = {
    "logistic_regression": logistic_regression,
    "random_forest": random_forest,
    "gradient_boosting": gradient_boosting,
    "mlp": mlp,
    "catboost": catboost,
    "ft_transformer": ft_transformer,
}


def make_mixed_baseline(
    name: str, random_state: int | None = 0, n_jobs: int | None = 1
) -> BaseEstimator:
    """Build an unfitted baseline of :data:`MIXED_BASELINES` by name."""
    try:
        factory = MIXED_BASELINES[name]
    except KeyError:
        raise ValueError(
            f"unknown baseline {name!r}; choose from {sorted(MIXED_BASELINES)}"
        ) from None
    return factory(random_state=random_state, n_jobs=n_jobs)


def make_baseline(
    name: str, random_state: int | None = 0, n_jobs: int | None = 1, **kwargs: Any
) -> BaseEstimator:
    """Build an unfitted baseline by name.

    Parameters
    ----------
    name : str
        A key of :data:`BASELINES`.
    random_state : int or None, default 0
        Seed passed to the factory.
    n_jobs : int or None, default 1
        Parallelism passed to the factory.
    **kwargs
        Factory-specific options (e.g. ``param_grid``, ``max_epochs``).

    Returns
    -------
    estimator
        An unfitted scikit-learn-compatible classifier.
    """
    try:
        factory = BASELINES[name]
    except KeyError:
        raise ValueError(f"unknown baseline {name!r}; choose from {sorted(BASELINES)}") from None
    return factory(random_state=random_state, n_jobs=n_jobs, **kwargs)
