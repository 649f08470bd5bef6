"""scikit-learn estimators that model a whole table row by masked-word prediction.

A row is a sentence and every column a word location (one expert per column);
the target is the last location. Training masks every location of every row
once per epoch (MLM); prediction masks the target.
"""

from __future__ import annotations

import copy
import math
import numbers
import time
import warnings
import weakref
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from numbers import Integral, Real
from pathlib import Path
from typing import ClassVar, Literal, get_args

import numpy as np
import pandas as pd
import torch
from sklearn.base import BaseEstimator, ClassifierMixin, TransformerMixin, _fit_context
from sklearn.utils._param_validation import Interval, Options, StrOptions
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import (
    _check_feature_names_in,
    _check_sample_weight,
    check_is_fitted,
    check_random_state,
    column_or_1d,
    validate_data,
)
from tqdm.auto import tqdm

from ..model import AttentionConfig, BidirectionalAttention
from ..model.attention import MultiHeadSelfAttention
from ..model.tables import ExpertTables
from ..training import TrainingHistory, torch_threads, train_mlm
from ..training.distributed.affinity import usable_cpus
from ..training.distributed.launch import _launched_by_torchrun
from ..training.distributed.tables import train_rows_distributed
from ..training.fused import fused_refusal, fused_supported
from ..training.options import (
    ADAM_FLAVOURS,
    ENGINES,
    LR_SCHEDULES,
    check_averaging_without_stopping,
    check_context_needs_copies,
)
from .encoding import TableEncoder, label_indices
from .model_files import (
    CLASSIFIER_NAME,
    check_params,
    read_classifier,
    restore_classifier,
    save_classifier,
)
from .streaming import CodeTable, TargetMaskedRows, chunk_passes, count_chunks

_PREDICT_CHUNK = 4096

#: optimizer steps of the torch engine timed to project a fit's time (after one step)
_PROBE_STEPS = 4


class SlowEngineWarning(UserWarning):
    """``engine="auto"`` trains on the torch engine because the fused one cannot take
    the model: the fit is slower than the model's size alone would suggest."""


#: The default cap on optimizer steps (``max_steps``): far above the 18,800 steps of the
#: paper's 200 epochs on its 2,000 rows of 5 features and the target (94 steps of 128
#: masked copies per epoch; 375 steps with 23 features), so tables up to that size train
#: all their epochs, while a table of a million rows stops after a few passes. Chosen on
#: 200,000 rows x 20 columns (benchmarks/bench_table_scale.py): 25,000 steps (less than a
#: pass) fell 0.011 short of LightGBM's accuracy, 75,000 (three passes) came within 0.003.
MAX_STEPS = 75_000

#: The default number of averaged members (``n_ensembles``), chosen on the real-table
#: pool's training rows (benchmarks/select_real_defaults.py, rounds 1 and 2): three members
#: halved the seed-to-seed spread (to 1.9x CatBoost's) and raised validation accuracy.
N_ENSEMBLES = 3

#: The classifier's default ``max_categories``: whole-number columns with more distinct
#: values get ``n_bins`` (10) quantile knots, as other numbers do, so their experts are
#: smooth functions of the value rather than one word per level. Chosen on the real-table
#: pool's training rows (benchmarks/select_real_defaults.py, rounds 3 and 4): against 50,
#: +0.032 validation accuracy (paired SE 0.007) and a smaller spread; five knots did no
#: better than ten.
MAX_CATEGORIES = 10

TableMasking = Literal["copies", "all"]
"""The estimators' ``masking``: the values of :data:`attnmoe.training.options.Masking`
that group whole masked predictions ("auto" and "random" have no table meaning)."""


class _NotBool(Interval):
    """scikit-learn's ``Interval`` that refuses ``True`` and ``False``: a flag is no
    count or rate here (``n_ensembles=True`` is a slip, not one model)."""

    def is_satisfied_by(self, val) -> bool:
        return not isinstance(val, (bool, np.bool_)) and super().is_satisfied_by(val)


def _at_least(low: int) -> _NotBool:
    return _NotBool(Integral, low, None, closed="left")


def _share(closed: str = "left") -> _NotBool:
    return _NotBool(Real, 0, 1, closed=closed)


_NON_NEGATIVE = _NotBool(Real, 0, math.inf, closed="left")  # finite, >= 0


def _threads(n_jobs: int | None) -> int:
    """Threads for ``n_jobs`` as scikit-learn reads it: None is 1, -1 every CPU this
    process may use."""
    if n_jobs is None:
        return 1
    return len(usable_cpus()) if n_jobs == -1 else n_jobs


def _target_labels(y) -> np.ndarray:
    """``y`` as a 1-d array with every label kept as given.

    numpy would turn a list mixing ``1`` and ``"a"`` into the strings ``"1"`` and
    ``"a"``, and a list of tuples into a 2-d array; such lists become object arrays
    instead. Everything else (numbers alone, strings alone, arrays, Series) goes
    through scikit-learn's ``column_or_1d``, as scikit-learn's own classifiers do.
    """
    if (
        isinstance(y, (list, tuple))
        and len(y)
        and not any(isinstance(v, (list, np.ndarray)) for v in y)
    ):
        numbers_only = all(isinstance(v, numbers.Number) for v in y)
        kinds = {type(v) for v in y}
        if not numbers_only and (len(kinds) > 1 or issubclass(kinds.pop(), tuple)):
            labels = np.empty(len(y), dtype=object)
            labels[:] = list(y)
            return labels
    return column_or_1d(y, warn=True)


def _check_target_labels(y: np.ndarray) -> None:
    """Refuse what cannot be a class label; object arrays may hold any hashable labels."""
    if y.dtype != object or all(isinstance(v, str) for v in y):
        check_classification_targets(y)  # e.g. refuses continuous floats
        return
    typed: dict = {}  # label -> its type, to catch labels of two types that are equal
    for value in y:
        try:
            hash(value)
        except TypeError:
            raise ValueError(f"class labels must be hashable, got {value!r}") from None
        if isinstance(value, (float, np.floating)) and not float(value).is_integer():
            raise ValueError(f"Unknown label type: continuous value {value!r} among the labels")
        kind = type(value.item() if isinstance(value, np.generic) else value)
        if typed.setdefault(value, kind) is not kind:
            other = next(v for v in typed if v == value)
            raise ValueError(
                f"labels {other!r} and {value!r} are equal in Python but of different types "
                f"and would merge into one class; write them as one type"
            )


def _unique_labels(y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sorted classes and each label's index; labels of several types that cannot be
    compared are ordered by type name, then ``repr`` (deterministic)."""
    try:
        return np.unique(y, return_inverse=True)
    except TypeError:
        distinct = list(dict.fromkeys(y))
        distinct.sort(key=lambda v: (type(v).__name__, repr(v)))
        classes = np.empty(len(distinct), dtype=object)
        classes[:] = distinct
        index = {label: k for k, label in enumerate(distinct)}
        return classes, np.array([index[v] for v in y], dtype=np.intp)


def keras_init_(model: BidirectionalAttention, generator: torch.Generator) -> None:
    """Keras default initialisers (the paper's model): Glorot-uniform kernels,
    zero biases, U(-0.05, 0.05) token embeddings, unit LayerNorms, and
    Glorot-uniform position embeddings.

    The paper's code adds ``keras_nlp.layers.PositionEmbedding``, whose default
    initialiser is Glorot-uniform over its ``(length, d)`` table: bounds about
    ten times the token embeddings' (0.48 for 6 columns and d = 20), so the
    columns start well apart.

    Glorot's fans are Keras's for the kernel as Keras shapes it. A Dense kernel
    is ``(in, out)``; ``keras.layers.MultiHeadAttention`` keeps its projections
    as einsum kernels, ``(d, heads, key_dim)`` for query, key and value and
    ``(heads, key_dim, d)`` for the output, whose fans multiply the two last
    dimensions by the product of the others (fan_in = heads * d, fan_out =
    key_dim * d for the query): bounds about half a Dense layer's here.
    """

    def glorot_(weight: torch.Tensor, fan_in: int, fan_out: int) -> None:
        bound = math.sqrt(6.0 / (fan_in + fan_out))
        weight.copy_(torch.rand(weight.shape, generator=generator) * 2 * bound - bound)

    with torch.no_grad():
        einsum_kernels = {}
        for module in model.modules():
            if isinstance(module, MultiHeadSelfAttention):
                h, dh = module.n_heads, module.d_head
                d = module.query.in_features
                for projection in (module.query, module.key, module.value):
                    einsum_kernels[projection] = (h * d, dh * d)  # kernel (d, h, dh)
                einsum_kernels[module.out] = (dh * h, d * h)  # kernel (h, dh, d)
        for module in model.modules():
            if isinstance(module, torch.nn.Linear):
                fan_out, fan_in = module.weight.shape
                glorot_(module.weight, *einsum_kernels.get(module, (fan_in, fan_out)))
                if module.bias is not None:
                    module.bias.zero_()
        model.token_embedding.weight.copy_(
            torch.rand(model.token_embedding.weight.shape, generator=generator) * 0.1 - 0.05
        )
        glorot_(model.position_embedding.weight, *model.position_embedding.weight.shape)


def _recast(values: pd.Series, dtype) -> pd.Series | None:
    """``values`` (object) as ``dtype`` if that keeps every value and gap as it is, else None.

    pandas casts lossily without a word (``2.7`` to int ``2``, ``"False"`` to bool
    ``True``, a value outside a categorical dtype's categories to NaN)."""
    if isinstance(dtype, pd.CategoricalDtype):  # its categories first, then new ones
        new = [v for v in pd.unique(values.dropna()) if v not in set(dtype.categories)]
        dtype = pd.CategoricalDtype([*dtype.categories, *new], ordered=dtype.ordered)
    try:
        cast = values.astype(dtype)
    except (TypeError, ValueError, OverflowError):
        return None
    gaps = values.isna().to_numpy()
    if not np.array_equal(cast.isna().to_numpy(), gaps):
        return None
    before, after = values[~gaps].tolist(), cast.astype(object)[~gaps].tolist()
    return cast if before == after else None


def _filled_column(column: pd.Series, positions: np.ndarray, values: np.ndarray) -> pd.Series:
    """``column`` with ``values`` at ``positions``, in the column's own dtype when it
    holds them exactly; else as numbers (float) if all are numbers, else as objects."""
    out = column.astype(object)
    out.iloc[positions] = list(values)
    kept = _recast(out, column.dtype)
    if kept is not None:
        return kept
    numbers = pd.to_numeric(out, errors="coerce")
    if numbers.isna().equals(out.isna()) and not pd.api.types.is_bool_dtype(column.dtype):
        return numbers.astype(float)
    return out


def _torch_device(name: str) -> torch.device:
    """``name`` as a torch device this machine has (one-line ``ValueError`` otherwise)."""
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ValueError(f"device={name!r} is not a torch device (cpu, cuda, cuda:1)") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={name!r}: torch sees no CUDA device on this machine")
    if device.type == "cuda" and (device.index or 0) >= torch.cuda.device_count():
        raise ValueError(f"device={name!r}: torch sees {torch.cuda.device_count()} CUDA devices")
    if device.type not in ("cpu", "cuda"):
        raise ValueError(f"device={name!r}: the estimators train on 'cpu' or 'cuda'")
    return device


def _seconds_per_step(
    model: BidirectionalAttention, data: torch.Tensor, batch: int, copies: bool, threads: int
) -> float | None:
    """Seconds per torch-engine optimizer step of ``model`` on ``data``: a copy trains
    one step, then ``_PROBE_STEPS`` more, timed; None if the probe cannot train."""
    rows = data[: 2 * (_PROBE_STEPS + 1) * batch]  # enough for the steps either way
    kwargs = {
        "batch_size": batch, "masking": "copies" if copies else "all", "engine": "torch",
        "verbose": 0, "num_threads": threads,
    }  # fmt: skip
    probe = copy.deepcopy(model)
    try:
        with torch.random.fork_rng(devices=[]):
            train_mlm(probe, rows, epochs=1, max_steps=1, **kwargs)  # first calls, warm-up
            start = time.perf_counter()
            train_mlm(probe, rows, epochs=_PROBE_STEPS, max_steps=_PROBE_STEPS, **kwargs)
    except (ValueError, FloatingPointError):  # e.g. nothing to predict in the first rows
        return None
    return (time.perf_counter() - start) / _PROBE_STEPS


#: each classifier's prediction tables and what they were built from, beside the
#: estimator (scikit-learn's contract: predicting leaves the estimator's ``__dict__``
#: as it was), dropped with it
_TABLES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _weights_key(model: torch.nn.Module) -> tuple:
    """What a model's prediction tables are computed from: the model itself (held, so
    its id is not reused), its mode and config, and each weight's storage and in-place
    version (torch bumps it on every write)."""
    weights = tuple((p.data_ptr(), p.dtype, p.device, p._version) for p in model.parameters())
    return model, model.training, repr(model.config.to_dict()), weights


def _duration(seconds: float) -> str:
    """``seconds`` in words: ``"42 s"``, ``"18 min"``, ``"2.5 h"``."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


class _TableMLM(BaseEstimator):
    """Shared fitting machinery of the classifier and the imputer."""

    # each parameter's type and range, checked by scikit-learn when ``fit`` starts
    # (``_fit_context``); what depends on two parameters is in _check_combinations
    _parameter_constraints: ClassVar[dict] = {
        "block": [StrOptions({"bert", "pure"})],
        "n_heads": [_at_least(1)],
        "d_head": [_at_least(1), None],
        "d_model": [_at_least(1)],
        "d_ff": [_at_least(1), None],
        "n_layers": [_at_least(1)],
        "dropout": [_share()],
        "top_k": [_at_least(1), None],
        "epochs": [_at_least(1)],
        "max_steps": [_at_least(1), None],
        "batch_size": [_at_least(1)],
        "masking": [StrOptions(set(get_args(TableMasking)))],
        "context_mask_rate": [_share()],
        "learning_rate": [_NotBool(Real, 0, math.inf, closed="neither")],
        "lr_schedule": [StrOptions(set(LR_SCHEDULES))],
        "weight_decay": [_NON_NEGATIVE],
        "adam": [StrOptions(set(ADAM_FLAVOURS))],
        "n_bins": [_at_least(1)],
        "max_categories": [_at_least(0)],
        "n_ensembles": [_at_least(1)],
        "validation_fraction": [_share()],
        "patience": [_at_least(1), None],
        "average_last": [_share(closed="both")],
        "init": [StrOptions({"keras", "torch"})],
        "random_state": ["random_state"],
        "n_jobs": [_at_least(1), Options(Integral, {-1}), None],
        "engine": [StrOptions(set(ENGINES))],
        "device": [str],
        "nproc": [_at_least(1)],
        "checkpoint_dir": [str, Path, None],
        "checkpoint_every": [_at_least(0)],
        "resume": ["boolean"],
        "verbose": ["verbose"],
    }

    def _check_combinations(self) -> None:
        """The requirements that tie two parameters together (the constraints check
        each one alone)."""
        check_context_needs_copies(
            self.context_mask_rate,
            self._copies(),
            "masking='copies' and n_layers=1 (masked copies)",
        )
        check_averaging_without_stopping(
            self.average_last, bool(self.validation_fraction), "validation_fraction > 0"
        )

    def _copies(self) -> bool:
        """Whether training takes masked copies (one layer only), else whole rows."""
        return self.masking == "copies" and self.n_layers == 1

    def _sample_weight(self, sample_weight, frame: pd.DataFrame) -> np.ndarray | None:
        """``sample_weight`` checked (one finite weight >= 0 per row, not all 0);
        None when absent or all ones, which weigh nothing differently."""
        if sample_weight is None:
            return None
        weights = _check_sample_weight(
            sample_weight, frame, dtype=np.float64, ensure_non_negative=True
        )
        if (weights == 1).all():
            return None
        return weights

    @staticmethod
    def _loss_weights(
        row_weights: np.ndarray | None, n_rows: int, location_weights: np.ndarray
    ) -> torch.Tensor | None:
        """The MLM loss weight of every location of every row: ``(L,)`` without row
        weights, else ``(n_rows, L)``; rows beyond ``row_weights`` weigh 1."""
        if row_weights is None:
            return torch.as_tensor(location_weights, dtype=torch.float32)
        rows = np.ones(n_rows)
        rows[: len(row_weights)] = row_weights
        return torch.as_tensor(rows[:, None] * location_weights[None, :], dtype=torch.float32)

    def _frame(self, X, reset: bool) -> pd.DataFrame:
        if isinstance(X, pd.DataFrame):
            validate_data(self, X, reset=reset, skip_check_array=True)
            if X.shape[1] == 0 or X.shape[0] == 0:
                raise ValueError(f"Found array with shape {X.shape}; expected a non-empty table")
            return X.reset_index(drop=True)
        array = validate_data(
            self, X, reset=reset, dtype=None, ensure_all_finite="allow-nan", ensure_min_samples=1
        )
        if array.dtype.kind in "fc":
            if not np.isfinite(array[~np.isnan(array)]).all():
                raise ValueError("Input X contains infinity or a value too large")
        # an object array (a mixed frame's .to_numpy()): numbers back to numbers, so
        # float columns are numeric rather than one category per distinct value
        return pd.DataFrame(array).infer_objects()

    def _config(self, vocab_size: int, length: int) -> AttentionConfig:
        return AttentionConfig(
            vocab_size=vocab_size,
            max_len=length,
            d_model=self.d_model,
            n_heads=self.n_heads,
            d_head=self.d_head,
            n_layers=self.n_layers,
            block=self.block,
            d_ff=self.d_ff,
            dropout=self.dropout,
            layer_norm_eps=1e-6,
            top_k=self.top_k,
        )

    def _fit_models(self, tokens: np.ndarray, vocab_size: int, weights: torch.Tensor | None):
        copies = self._copies()
        device = _torch_device(self.device)
        rng = check_random_state(self.random_state)
        seeds = [int(s) for s in rng.randint(0, 2**31 - 1, size=self.n_ensembles)]
        length = tokens.shape[1]
        models = []
        for seed in seeds:  # in order, on this thread: torch's default init draws globally
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                model = BidirectionalAttention(self._config(vocab_size, length))
            if self.init == "keras":
                keras_init_(model, torch.Generator().manual_seed(seed))
            models.append(model.to(device))  # initialised on the CPU: the same weights
        data = torch.as_tensor(tokens)
        # batch_size counts masked predictions: copies, or every location of rows
        batch = self.batch_size if copies else max(1, self.batch_size // length)
        if self._distributed():
            histories = self._fit_distributed(models, seeds, tokens, batch, weights)
            return [model.cpu().double().eval() for model in models], histories
        self._say_engine(models[0], data, batch, copies)

        def fit_one(model: BidirectionalAttention, seed: int, threads: int | None):
            return train_mlm(
                model,
                data,
                epochs=self.epochs,
                max_steps=self.max_steps,
                batch_size=batch,
                lr=self.learning_rate,
                lr_schedule=self.lr_schedule,
                weight_decay=self.weight_decay,
                adam=self.adam,
                masking="copies" if copies else "all",
                context_mask_rate=float(self.context_mask_rate),
                position_weights=weights,
                validation=self.validation_fraction,
                patience=self.patience if self.validation_fraction else None,
                average_last=float(self.average_last),
                seed=seed,
                verbose=self.verbose,
                num_threads=threads,
                engine=self.engine,
            )

        # the fused engine's epochs run without the GIL and draw nothing from torch's
        # global generator: ensemble members can train at once, one thread each
        threads = _threads(self.n_jobs)
        workers = min(threads, len(models))
        concurrent = workers > 1 and self.engine != "torch" and fused_supported(models[0], length)
        if concurrent:
            with torch_threads(1), ThreadPoolExecutor(workers) as pool:
                histories = list(pool.map(fit_one, models, seeds, [1] * len(models)))
        else:
            histories = [fit_one(m, s, threads) for m, s in zip(models, seeds, strict=True)]
        # predict on the CPU in float64: results then do not depend on the batch size
        return [model.cpu().double().eval() for model in models], histories

    def _distributed(self) -> bool:
        """Whether training runs on the data-parallel trainer: several processes, a
        torchrun launch, or checkpoints asked for."""
        return self.nproc > 1 or self.checkpoint_dir is not None or _launched_by_torchrun()

    def _fit_distributed(self, models, seeds, tokens, batch, weights) -> list:
        """Each member trained by :func:`train_rows_distributed` (one after the other)."""
        refused = {
            "sample_weight or target_weight != 1": weights is not None
            and bool((weights != 1).any()),
            "validation_fraction > 0": self.validation_fraction > 0,
            "average_last > 0": self.average_last > 0,
            "lr_schedule != 'constant'": self.lr_schedule != "constant",
            "context_mask_rate > 0": self.context_mask_rate > 0,
            "engine='fused'": self.engine == "fused",
        }
        found = [name for name, bad in refused.items() if bad]
        if found:
            raise ValueError(
                f"the data-parallel trainer (nproc, checkpoint_dir, torchrun) does not take "
                f"{', '.join(found)}; train in one process for these"
            )
        if self.resume and self.checkpoint_dir is None:
            raise ValueError("resume=True needs a checkpoint_dir")
        if self.verbose > 0:  # with the trainer's own progress lines (stdout)
            print(
                f"{type(self).__name__}: training {len(models)} model(s) on the data-parallel "
                f"torch trainer ({self.device})",
                flush=True,
            )
        settings = {
            "epochs": self.epochs, "max_steps": self.max_steps, "batch_size": batch,
            "lr": self.learning_rate, "weight_decay": self.weight_decay,
            "masking": "copies" if self._copies() else "all", "nproc": self.nproc,
            "device": self.device, "num_threads": _threads(self.n_jobs),
            "checkpoint_every": self.checkpoint_every, "resume": self.resume,
            "verbose": self.verbose,
        }  # fmt: skip
        histories = []
        for k, (model, seed) in enumerate(zip(models, seeds, strict=True)):
            folder = self.checkpoint_dir
            if folder is not None and len(models) > 1:
                folder = Path(folder) / f"member_{k}"
            histories.append(
                train_rows_distributed(model, tokens, seed=seed, checkpoint_dir=folder, **settings)
            )
        return histories

    def _say_engine(self, model, data: torch.Tensor, batch: int, copies: bool) -> None:
        """Warn once when ``engine="auto"`` must train on the slower torch engine: why,
        and the time projected from a short timed probe."""
        why = fused_refusal(model, data.shape[1])
        device = next(model.parameters()).device
        if self.engine == "auto" and why is not None and device.type == "cpu":
            steps = self._planned_steps(len(data), data.shape[1], batch, copies)
            per_step = _seconds_per_step(model, data, batch, copies, _threads(self.n_jobs))
            projected = (
                "time unknown" if per_step is None
                else f"projected {_duration(per_step * steps)} for {steps:,} steps "
                f"(from {_PROBE_STEPS} timed steps)"
            )  # fmt: skip
            warnings.warn(
                f"engine='auto' trains on the slower torch engine, as the fused one cannot "
                f"take this model: {why}; {projected}. engine='torch' silences this",
                SlowEngineWarning,
                stacklevel=5,  # the caller of fit (through scikit-learn's _fit_context)
            )

    def _planned_steps(self, n_rows: int, length: int, batch: int, copies: bool) -> int:
        """The optimizer steps of all members' training, early stopping aside."""
        n_train = n_rows - round(self.validation_fraction * n_rows)
        items = max(1, n_train * length if copies else n_train)
        steps = self.epochs * math.ceil(items / min(batch, items))
        if self.max_steps is not None:
            steps = min(steps, self.max_steps)
        return steps * self.n_ensembles

    def _chunk_bar(self, chunks: Iterable, what: str, total: int | None) -> Iterable:
        """``chunks`` with a progress bar when ``verbose`` (the pass named by ``what``)."""
        passes = {"encoder": "1/2 encoder", "codes": "2/2 codes"}
        return tqdm(
            chunks, desc=f"chunks {passes[what]}", unit="chunk", total=total,
            disable=self.verbose <= 0, leave=False,
        )  # fmt: skip

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = True
        tags.input_tags.string = True
        return tags


class AttentionMoEClassifier(ClassifierMixin, _TableMLM):
    """Classifier that reads a row as a sentence of (column, value) words.

    One bidirectional attention model (one expert per column) is trained by
    masked-word prediction on every column and the target; the target is
    predicted by masking it. Missing or unseen values become the mask token, so
    rows with gaps still get a prediction. Numeric columns keep their order: a
    value between two knots is a mix of their words, a value outside the
    training range is clipped to its edge (:mod:`attnmoe.tabular.encoding`,
    docs/tabular.md). The defaults are the paper's model
    (one BERT block, 5 heads of size 4, embedding 20, feed-forward 5, dropout
    0.1, Adam 1e-3, 200 epochs, batches of 128 masked predictions).

    Parameters
    ----------
    block : {"bert", "pure"}
        Attention block form.
    n_heads, d_head, d_model, d_ff, n_layers, dropout
        Model sizes (``d_head`` None means ``d_model // n_heads``).
    top_k : int or None
        Sparse gating: each prediction uses only its ``top_k`` strongest experts
        (columns); None is dense.
    epochs : int
        Passes over the training rows; each pass masks every location once.
    max_steps : int or None
        A cap on the optimizer steps of each ensemble member's training: the
        budget of large tables. Training runs ``epochs`` passes or stops once it
        has taken ``max_steps`` steps, part-way through a pass if need be. The
        default (75,000) leaves tables up to 2,000 rows of 23 features (the
        paper's have 5: 18,800 steps of 200 epochs) at exactly their ``epochs``
        and caps the work of larger ones (a step is ``batch_size`` masked
        predictions, whatever the rows); None never caps (the paper's
        configuration, pinned by its benchmark). Early stopping
        (``validation_fraction``, ``patience``) still applies, per pass.
    batch_size : int
        Masked predictions per optimiser step.
    masking : {"copies", "all"}
        How the masked predictions are grouped into steps (``masking`` of
        :func:`attnmoe.training.train_mlm`). ``"copies"`` (the paper's Keras
        training): every (row, column) masked copy is shuffled across rows and
        columns, a step takes ``batch_size`` of them. ``"all"``: a step takes
        ``batch_size // n_columns`` rows with all their columns masked in turn.
        The same predictions per epoch either way; models with more than one
        layer always use ``"all"``.
    context_mask_rate : float
        With ``masking="copies"``: each masked copy also hides each of its other
        columns behind the mask token with this probability, drawn afresh every
        epoch. The model learns to predict from partial rows (as it must when
        cells are missing at predict time) and cannot lean on one of several
        correlated columns. 0 (the paper's training) hides nothing else. Each
        epoch's copies are written out: about ``17 * n_rows * n_columns**2`` bytes
        (the target counted as a column) per model training at once. Early
        stopping still validates on whole rows.
    independent_rows : float
        Adds this many unlabeled rows, as a share of the training rows, whose
        feature cells are drawn independently, each from its own column of the
        training rows (the product of the columns' distributions; seeded by
        ``random_state``), with the target masked: rows whose values do not go
        together as in the training rows; no target is learnt from them. 0 (the
        paper's training) adds none; training time grows in proportion.
    learning_rate, weight_decay : float
        Adam settings.
    lr_schedule : {"constant", "linear", "cosine"}
        How the learning rate moves over the epochs: held (``"constant"``, the
        paper's training) or lowered at each epoch's start from
        ``learning_rate`` toward 0 after the last epoch, in a straight line or
        half a cosine (see :func:`attnmoe.training.train_mlm`).
    adam : {"torch", "keras"}
        ``"torch"``: torch's Adam (epsilon 1e-8 on the bias-corrected second
        moment). ``"keras"``: Adam exactly as the paper's Keras code ran it
        (epsilon 1e-7 on the uncorrected second moment, loss averaged over all
        locations of each masked copy); see :func:`attnmoe.training.train_mlm`.
    n_bins : int
        Knots, at quantiles, of numeric columns other than whole numbers with
        few levels (the column's number of words).
    max_categories : int
        Whole-number columns with at most this many distinct values have a knot
        at each of them; with more they get ``n_bins`` quantile knots. 10 by
        default (smooth experts of many-level numbers, chosen on the real-table
        pool's training rows); the paper's benchmark keeps 50.
    target_weight : float
        Weight of the target location in the MLM loss (1 = every location equal).
    n_ensembles : int
        Independently seeded fits whose probabilities are averaged
        (:func:`attnmoe.explain.explain` explains each member: its ``member``
        column). Three by default, chosen on the real-table pool's training rows
        for steadier fits from seed to seed (``benchmarks/select_real_defaults.py``);
        1 is the paper's single model, at a third of the training work.
    validation_fraction : float
        Share of the training rows held out for early stopping (0 = none).
    patience : int
        Epochs without validation improvement before stopping.
    average_last : float
        Share of the epochs, the last ones, whose end-of-epoch weights are
        averaged into the fitted model (checkpoint / stochastic weight
        averaging): 0.5 of 200 epochs averages epochs 101-200. Costs nothing
        measurable; 0 (the paper's training) keeps the last weights. Cannot be
        combined with early stopping (``validation_fraction > 0``).
    init : {"keras", "torch"}
        Weight initialisation (Keras defaults reproduce the paper's model).
    random_state : int, RandomState or None
        Seeds everything: the same value gives the same model.
    n_jobs : int or None
        Threads while training (scikit-learn's name and meaning: None is 1, -1
        every CPU this process may use). With ``n_ensembles > 1`` and the fused
        engine, up to this many members train at once, one thread each (the same
        models as one after the other); otherwise a fit uses this many torch
        threads (one uses a core well).
    engine : {"auto", "torch", "fused"}
        Training engine (:func:`attnmoe.training.train_mlm`): ``"fused"`` is the
        compiled kernel for small one-layer models (same loss and gradients as
        ``"torch"``, several times faster); ``"auto"`` uses it when the model allows,
        else trains on ``"torch"`` with a :class:`SlowEngineWarning` that says why and
        the fit's time projected from a few timed steps (on the CPU only).
    device : str
        Where training runs: ``"cpu"``, or ``"cuda"`` / ``"cuda:1"`` for the torch
        engine on a GPU (the same model up to float rounding; dropout draws from
        the GPU's generator). The fitted models are kept on the CPU in float64 for
        prediction. ``ValueError`` when torch sees no such device.
    nproc : int
        Processes that train each member together (data-parallel, gloo on CPU,
        nccl on CUDA: :func:`attnmoe.training.distributed.tables.train_rows_distributed`).
        Above 1, under torchrun (every rank runs the same ``fit``), or with
        ``checkpoint_dir``, training runs on that trainer: the rows (or masked
        copies) in one seeded order, ``epochs`` passes of whole batches of
        ``batch_size`` capped at ``max_steps``, torch's engine; the same weights for
        any ``nproc`` up to float rounding (with dropout, in distribution). It
        does not take sample weights, ``target_weight``, early stopping,
        ``average_last`` or ``context_mask_rate`` (``ValueError``).
    checkpoint_dir, checkpoint_every, resume
        Checkpoints of the data-parallel trainer: every ``checkpoint_every`` steps
        and at the end into ``checkpoint_dir`` (``member_<k>/`` per ensemble member
        when there are several); ``resume`` continues from the newest one.
    verbose : int
        0 silent, 1 progress bars, named after the training engine (``MLM fused``,
        ``MLM torch``; the data-parallel trainer prints progress lines instead).

    Attributes
    ----------
    classes_ : ndarray
        Target labels.
    n_features_in_ : int
    feature_names_in_ : ndarray
        Column names, when fitted on a DataFrame.
    encoder_ : TableEncoder
        Value -> code mapping per column.
    models_ : list of BidirectionalAttention
        One per ensemble member.
    histories_ : list of TrainingHistory
        One per member (``DistributedHistory`` when trained by the data-parallel
        trainer).
    gate_baseline_ : dict
        Each column's (and head's) mean gate over the training rows
        (:func:`attnmoe.explain.usage.gate_baseline`): the baseline a prediction
        monitor measures drift against. Absent from models saved before it existed.

    Examples
    --------
    >>> from attnmoe.bench.datasets import load_auto_mpg
    >>> from attnmoe.tabular import AttentionMoEClassifier
    >>> data = load_auto_mpg()
    >>> clf = AttentionMoEClassifier(epochs=20, random_state=0).fit(data.X_train, data.y_train)
    >>> clf.predict(data.X_test).shape
    (140,)
    """

    _parameter_constraints: ClassVar[dict] = {
        **_TableMLM._parameter_constraints,
        "independent_rows": [_NON_NEGATIVE],
        "target_weight": [_NON_NEGATIVE],
    }

    def __init__(
        self,
        block: str = "bert",
        n_heads: int = 5,
        d_head: int | None = 4,
        d_model: int = 20,
        d_ff: int | None = 5,
        n_layers: int = 1,
        dropout: float = 0.1,
        top_k: int | None = None,
        epochs: int = 200,
        max_steps: int | None = MAX_STEPS,
        batch_size: int = 128,
        masking: TableMasking = "copies",
        context_mask_rate: float = 0.0,
        independent_rows: float = 0.0,
        learning_rate: float = 1e-3,
        lr_schedule: str = "constant",
        weight_decay: float = 0.0,
        adam: str = "torch",
        n_bins: int = 10,
        max_categories: int = MAX_CATEGORIES,
        target_weight: float = 1.0,
        n_ensembles: int = N_ENSEMBLES,
        validation_fraction: float = 0.0,
        patience: int = 10,
        average_last: float = 0.0,
        init: str = "keras",
        random_state=None,
        n_jobs: int | None = 1,
        engine: str = "auto",
        device: str = "cpu",
        nproc: int = 1,
        checkpoint_dir: str | None = None,
        checkpoint_every: int = 0,
        resume: bool = False,
        verbose: int = 0,
    ) -> None:
        self.block = block
        self.n_heads = n_heads
        self.d_head = d_head
        self.d_model = d_model
        self.d_ff = d_ff
        self.n_layers = n_layers
        self.dropout = dropout
        self.top_k = top_k
        self.epochs = epochs
        self.max_steps = max_steps
        self.batch_size = batch_size
        self.masking = masking
        self.context_mask_rate = context_mask_rate
        self.independent_rows = independent_rows
        self.learning_rate = learning_rate
        self.lr_schedule = lr_schedule
        self.weight_decay = weight_decay
        self.adam = adam
        self.n_bins = n_bins
        self.max_categories = max_categories
        self.target_weight = target_weight
        self.n_ensembles = n_ensembles
        self.validation_fraction = validation_fraction
        self.patience = patience
        self.average_last = average_last
        self.init = init
        self.random_state = random_state
        self.n_jobs = n_jobs
        self.engine = engine
        self.device = device
        self.nproc = nproc
        self.checkpoint_dir = checkpoint_dir
        self.checkpoint_every = checkpoint_every
        self.resume = resume
        self.verbose = verbose

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y, X_unlabeled=None, sample_weight=None) -> AttentionMoEClassifier:
        """Train on rows ``X`` and their labels ``y``, and on rows without a label.

        Parameters
        ----------
        X : DataFrame or array-like of shape (n_samples, n_features)
            Training rows; missing cells allowed (the mask token).
        y : array-like of shape (n_samples,)
            Labels, any hashable values, none missing.
        X_unlabeled : DataFrame or array-like of shape (n_unlabeled, n_features), optional
            Rows without a label, with the columns of ``X``: for example the rows
            you will predict, from a shifted population. They join the masked-word
            training with their target masked, so they teach the model how their
            columns go together but are never a target (semi-supervised, or
            transductive when they are the rows to predict). The column encodings
            (categories, numeric knots) are learnt on ``X`` and ``X_unlabeled``
            together; each column of ``X_unlabeled`` is read with the dtype of
            ``X``'s (categories of ``X`` first). Empty or None: no such rows.
        sample_weight : array-like of shape (n_samples,), optional
            A finite weight >= 0 per row of ``X`` (not all 0). It multiplies every
            masked prediction of the row in the MLM loss: its target's (the class
            prediction) and its columns'. The loss is a weighted mean, so an
            integer weight counts the row as that many copies of it, and a row
            weighted 0 trains nothing (its values still enter the column
            encodings, as ``X_unlabeled``'s do). The columns are weighted too
            because they are the same row's evidence: a row duplicated in the
            table would teach both. Rows of ``X_unlabeled`` and
            ``independent_rows`` weigh 1, so the scale of the weights sets how much
            the labelled rows count beside them. None or all ones: unweighted.
            Early stopping's validation loss is unweighted.

        Returns
        -------
        self : AttentionMoEClassifier

        Notes
        -----
        ``X_unlabeled`` is not aligned with the rows of ``X``: do not route it
        through cross-validation (``cross_validate(params=...)``,
        ``GridSearchCV.fit(**params)``), which would split it like ``X`` when it
        has as many rows, nor through a Pipeline, whose earlier steps would not
        transform it.
        """
        if y is None:
            raise ValueError(
                f"{type(self).__name__} requires y to be passed, but the target y is None"
            )
        frame = self._frame(X, reset=True)
        y = _target_labels(y)
        if len(y) != len(frame):
            raise ValueError(f"X has {len(frame)} rows but y has {len(y)}")
        if pd.isna(y).any():
            raise ValueError("y contains missing labels")
        _check_target_labels(y)
        self._check_combinations()
        row_weights = self._sample_weight(sample_weight, frame)
        table = self._with_unlabeled(frame, X_unlabeled)
        self.classes_, y_codes = _unique_labels(y)
        self.encoder_ = TableEncoder(self.n_bins, self.max_categories).fit(table)
        self.mask_id_ = max(self.encoder_.n_codes, len(self.classes_))
        codes = self.encoder_.encode(table, self.mask_id_, warn=False)
        # target last; unlabeled rows (after the labelled ones) have it masked
        targets = np.full(len(table), self.mask_id_)
        targets[: len(frame)] = y_codes
        tokens = np.column_stack([codes, targets])  # float64 where a code is fractional
        tokens, weights = self._training_rows(tokens, len(frame), row_weights)
        self.models_, self.histories_ = self._fit_models(tokens, self.mask_id_, weights)
        from ..explain.usage import gate_baseline  # deferred: explain reads this module

        training = torch.as_tensor(tokens[: len(frame)]).clone()
        training[:, -1] = self.mask_id_  # the target masked, as at prediction
        self.gate_baseline_ = gate_baseline(self, training)
        return self

    def _training_rows(
        self, tokens: np.ndarray, n_labelled: int, row_weights: np.ndarray | None
    ) -> tuple[np.ndarray, torch.Tensor | None]:
        """The rows to train on (``tokens`` and its ``independent_rows``) and their loss
        weights; ``tokens``' first ``n_labelled`` rows are the labelled ones."""
        n_extra = round(self.independent_rows * n_labelled)
        if n_extra:  # each column's cells drawn from the labelled rows, independently
            rng = check_random_state(self.random_state)
            picks = rng.randint(0, n_labelled, size=(n_extra, tokens.shape[1] - 1))
            extra = np.take_along_axis(tokens[:n_labelled, :-1], picks, axis=0)
            extra = np.column_stack([extra, np.full(n_extra, self.mask_id_)])
            tokens = np.vstack([tokens, extra])
        locations = np.ones(tokens.shape[1])
        locations[-1] = self.target_weight
        return tokens, self._loss_weights(row_weights, len(tokens), locations)

    @_fit_context(prefer_skip_nested_validation=True)
    def fit_chunks(self, chunks) -> AttentionMoEClassifier:
        """Train on a table given in chunks of rows, never held whole as a DataFrame.

        The chunks are read twice. The first pass learns the column encoder
        (:meth:`TableEncoder.fit_chunks <attnmoe.tabular.encoding.TableEncoder.fit_chunks>`:
        categories as a running set, numeric knots from a bounded sample of each
        column, seeded by a fixed seed, not ``random_state``) and the classes; the
        second writes every row's codes into one compact array
        (:class:`~attnmoe.tabular.streaming.CodeTable`: int16 ids where the vocabulary
        allows), on which the models train as :meth:`fit` trains them. The model
        then equals ``fit(pandas.concat(Xs), numpy.concatenate(ys))`` whenever no
        numeric column has more values than the encoder's sample holds
        (:data:`~attnmoe.tabular.encoding.KNOT_SAMPLE`); beyond, its knots are the
        sample's quantiles. Memory grows with the rows by the code array (two bytes
        per cell with few codes) and training's own arrays, not by the DataFrame.
        ``max_steps`` caps the training of a long table.

        Parameters
        ----------
        chunks : iterable of (X, y) pairs
            ``X`` a DataFrame or array-like of rows with the same columns in every
            chunk, ``y`` its labels (none missing). A re-iterable: a list, a reader
            whose ``iter()`` starts again at the first chunk, or a function that
            returns a fresh iterator; a one-shot iterator (a generator) is refused
            (``TypeError``). Both readings must give the same rows.

        Returns
        -------
        self : AttentionMoEClassifier

        Notes
        -----
        Not taken here: rows without a label (``X_unlabeled``) and sample weights.
        A separate method rather than chunks passed to :meth:`fit`, so that ``fit``
        keeps scikit-learn's contract (arrays and DataFrames only).
        """
        passes = chunk_passes(chunks)
        self._check_combinations()
        labels: list[np.ndarray] = []
        n_rows = 0

        def frames():  # the first pass: each chunk's rows, checked, and its labels
            nonlocal n_rows
            for k, (X, y) in enumerate(self._chunk_bar(passes(), "encoder", count_chunks(chunks))):
                frame = self._frame(X, reset=k == 0)
                labels.append(self._chunk_labels(y, len(frame), k))
                n_rows += len(frame)
                yield frame

        self.encoder_ = TableEncoder(self.n_bins, self.max_categories).fit_chunks(frames())
        self.classes_ = self._chunk_classes(labels)
        self.mask_id_ = max(self.encoder_.n_codes, len(self.classes_))
        table = CodeTable(n_rows, self.n_features_in_ + 1, self.mask_id_)
        for X, y in self._chunk_bar(passes(), "codes", len(labels)):
            frame = self._frame(X, reset=False)
            codes = self.encoder_.encode(frame, self.mask_id_, warn=False)
            y_codes = self._label_codes(_target_labels(y))
            table.append(np.column_stack([codes, y_codes]))
        tokens, weights = self._training_rows(table.result(), n_rows, None)
        self.models_, self.histories_ = self._fit_models(tokens, self.mask_id_, weights)
        from ..explain.usage import gate_baseline  # deferred: explain reads this module

        self.gate_baseline_ = gate_baseline(self, TargetMaskedRows(tokens, n_rows, self.mask_id_))
        return self

    @staticmethod
    def _chunk_labels(y, n_rows: int, chunk: int) -> np.ndarray:
        """The distinct labels of one chunk's ``y`` (checked as :meth:`fit` checks ``y``)."""
        if y is None:
            raise ValueError(f"chunk {chunk}: y is None; every chunk is a pair (X, y)")
        y = _target_labels(y)
        if len(y) != n_rows:
            raise ValueError(f"chunk {chunk}: X has {n_rows} rows but y has {len(y)}")
        if pd.isna(y).any():
            raise ValueError(f"chunk {chunk}: y contains missing labels")
        _check_target_labels(y)
        return _unique_labels(y)[0]

    @staticmethod
    def _chunk_classes(labels: list[np.ndarray]) -> np.ndarray:
        """The classes of all chunks' distinct labels, as :meth:`fit` orders them."""
        if len({part.dtype for part in labels}) > 1:  # numpy would turn 1 and "a" into text
            labels = [part.astype(object) for part in labels]
        distinct = np.concatenate(labels)
        _check_target_labels(distinct)
        return _unique_labels(distinct)[0]

    def _label_codes(self, y: np.ndarray) -> np.ndarray:
        """Each label's index in ``classes_`` (every label is one of them)."""
        classes = self.classes_
        if y.dtype == classes.dtype and y.dtype != object:  # classes_ is sorted
            index = np.clip(np.searchsorted(classes, y), 0, len(classes) - 1)
            if np.array_equal(classes[index], y):
                return index
        index = label_indices(classes, y)
        if (index < 0).any():  # a label the first reading did not have
            raise ValueError(
                f"the chunks' second reading has label {y[index < 0][0]!r}, which the first "
                "did not: they must give the same rows each time"
            )
        return index

    def _with_unlabeled(self, frame: pd.DataFrame, X_unlabeled) -> pd.DataFrame:
        """``frame`` with the rows of ``X_unlabeled`` below it, read with ``frame``'s dtypes."""
        if X_unlabeled is None or len(X_unlabeled) == 0:
            return frame
        try:
            unlabeled = self._frame(X_unlabeled, reset=False)  # the columns of X, checked
        except ValueError as err:
            for name in ("n_features_in_", "feature_names_in_"):  # not left half fitted
                if hasattr(self, name):
                    delattr(self, name)
            raise ValueError(f"X_unlabeled: {err}") from None
        unlabeled.columns = frame.columns  # by position (an array beside a DataFrame)
        parts = {}
        for column in frame.columns:
            both = pd.concat([frame[column], unlabeled[column]], ignore_index=True)
            # in X's dtype where that keeps every value (else pandas decides, e.g. gaps
            # in an int column); never lossily ("False" is not bool True, 2.7 not 2)
            kept = _recast(both.astype(object), frame[column].dtype)
            parts[column] = both if kept is None else kept
        return pd.DataFrame(parts, columns=frame.columns)

    def tokens(self, X) -> torch.Tensor:
        """Rows as token ids ``(n, n_features + 1)``, the target (last) masked.

        Missing or unseen values are the mask token (with a warning). This is the
        input of ``models_[k].masked_logits`` and of the experts view: int64, or
        float64 when a numeric value lies between two knots (a fractional code,
        docs/math.md).
        """
        check_is_fitted(self)
        frame = self._frame(X, reset=False)
        codes = self.encoder_.encode(frame, self.mask_id_)
        target = np.full((len(codes), 1), self.mask_id_, dtype=codes.dtype)
        return torch.as_tensor(np.hstack([codes, target]))

    @torch.no_grad()
    def predict_proba(self, X) -> np.ndarray:
        """Class probabilities ``(n, n_classes)``, the target masked.

        Dense one-layer members (the default model) are answered from their
        experts-form tables (:mod:`attnmoe.model.tables`: a compiled loop over the
        rows, each row alone); other members run their torch forward pass. Both give
        the members' float64 numbers, averaged over the ensemble.
        """
        tokens = self.tokens(X)
        tables = self._prediction_tables()
        if tables is not None:
            return tables.probabilities(tokens.numpy())
        target = tokens.shape[1] - 1
        n_classes = len(self.classes_)
        proba = np.zeros((len(tokens), n_classes))
        for model in self.models_:
            for first in range(0, len(tokens), _PREDICT_CHUNK):
                x = tokens[first : first + _PREDICT_CHUNK]
                logits = model.masked_logits(x, positions=target)[:, 0, :n_classes]
                proba[first : first + len(x)] += torch.softmax(logits, -1).double().numpy()
        return proba / len(self.models_)

    def _prediction_tables(self) -> ExpertTables | None:
        """The members' experts-form tables (None when a member is not covered), kept
        while the members' weights and configs stay as they were built from."""
        key = [_weights_key(model) for model in self.models_]
        cached = _TABLES.get(self)
        if cached is None or cached[0] != key:
            cached = (key, ExpertTables.of(self.models_, len(self.classes_)))
            _TABLES[self] = cached
        return cached[1]

    def predict(self, X) -> np.ndarray:
        """Most probable label per row."""
        best = self.predict_proba(X).argmax(1)
        return self.classes_[best]

    def score(self, X, y, sample_weight=None) -> float:
        """Mean accuracy of :meth:`predict` on ``(X, y)``; labels of any hashable type."""
        truth = _target_labels(y)
        if truth.dtype != object:
            return super().score(X, y, sample_weight=sample_weight)
        hits = [a == b for a, b in zip(self.predict(X), truth, strict=True)]
        return float(np.average(hits, weights=sample_weight))

    def save_pretrained(self, directory) -> Path:
        """Write the fitted classifier to ``directory`` (JSON + safetensors, no pickle).

        Layout: ``classifier.json`` (parameters, classes and their dtype, the
        column encodings, ``mask_id_``), one ``member_<k>/`` folder per
        ensemble member written by the model's own ``save_pretrained``, and
        ``manifest.json`` (every file's size and SHA-256, and the facts the
        files must agree on; see docs/model_files.md). The folder is written
        beside ``directory`` and renamed into place, so a crash never leaves a
        half-written model; an existing one is replaced.
        """
        check_is_fitted(self)
        return save_classifier(self, directory)

    @staticmethod
    def _upgrade_params(params: dict) -> dict:
        """``params`` as saved by an older version, in today's names.

        Classifiers saved before the knobs got one name each call the masking knob
        ``batching``, with ``"rows"`` for ``"all"``, and the threads knob
        ``n_threads`` (now scikit-learn's ``n_jobs``; the same count).
        """
        if "batching" in params:
            old = params.pop("batching")
            params["masking"] = "all" if old == "rows" else old
        if "n_threads" in params:
            params["n_jobs"] = params.pop("n_threads")
        return params

    @classmethod
    def from_pretrained(cls, directory) -> AttentionMoEClassifier:
        """Load a classifier written by :meth:`save_pretrained`.

        Every field of ``classifier.json`` is checked (types, ranges, required
        keys, members), the members against it, and every file against the
        manifest; weights that are NaN or infinite are refused. A directory
        saved before manifests existed loads with an ``UnverifiedModelWarning``.

        Raises
        ------
        ModelFileError
            A one-line message naming the file and the field at fault.
        """
        meta = read_classifier(directory, cls.__name__)
        params = cls._upgrade_params(meta["params"])
        clf = cls(**check_params(cls, params, Path(directory) / CLASSIFIER_NAME))
        return restore_classifier(clf, meta, directory)


class AttentionMoEImputer(TransformerMixin, _TableMLM):
    """Fill missing cells of any column with a masked-word model of the whole row.

    The model is trained by MLM on every column; a missing cell is the mask
    token and is filled with its most probable value (for a numeric column, the
    value at its most probable knot). Parameters as :class:`AttentionMoEClassifier`,
    but ``n_ensembles`` defaults to 1 and ``max_categories`` to 50 (a knot at every
    level of a whole-number column with up to 50, so that each level can be filled in;
    the classifier's three members and ten knots were chosen on classification
    accuracy).

    Examples
    --------
    >>> import numpy as np, pandas as pd
    >>> from attnmoe.tabular import AttentionMoEImputer
    >>> df = pd.DataFrame({"a": list("xyxy") * 25, "b": list("uvuv") * 25})
    >>> df.loc[0, "b"] = np.nan
    >>> AttentionMoEImputer(epochs=30, random_state=0).fit_transform(df).loc[0, "b"]
    'u'
    """

    def __init__(
        self,
        block: str = "bert",
        n_heads: int = 5,
        d_head: int | None = 4,
        d_model: int = 20,
        d_ff: int | None = 5,
        n_layers: int = 1,
        dropout: float = 0.1,
        top_k: int | None = None,
        epochs: int = 200,
        max_steps: int | None = MAX_STEPS,
        batch_size: int = 128,
        masking: TableMasking = "copies",
        context_mask_rate: float = 0.0,
        learning_rate: float = 1e-3,
        lr_schedule: str = "constant",
        weight_decay: float = 0.0,
        adam: str = "torch",
        n_bins: int = 10,
        max_categories: int = 50,
        n_ensembles: int = 1,
        validation_fraction: float = 0.0,
        patience: int = 10,
        average_last: float = 0.0,
        init: str = "keras",
        random_state=None,
        n_jobs: int | None = 1,
        engine: str = "auto",
        device: str = "cpu",
        nproc: int = 1,
        checkpoint_dir: str | None = None,
        checkpoint_every: int = 0,
        resume: bool = False,
        verbose: int = 0,
    ) -> None:
        self.block = block
        self.n_heads = n_heads
        self.d_head = d_head
        self.d_model = d_model
        self.d_ff = d_ff
        self.n_layers = n_layers
        self.dropout = dropout
        self.top_k = top_k
        self.epochs = epochs
        self.max_steps = max_steps
        self.batch_size = batch_size
        self.masking = masking
        self.context_mask_rate = context_mask_rate
        self.learning_rate = learning_rate
        self.lr_schedule = lr_schedule
        self.weight_decay = weight_decay
        self.adam = adam
        self.n_bins = n_bins
        self.max_categories = max_categories
        self.n_ensembles = n_ensembles
        self.validation_fraction = validation_fraction
        self.patience = patience
        self.average_last = average_last
        self.init = init
        self.random_state = random_state
        self.n_jobs = n_jobs
        self.engine = engine
        self.device = device
        self.nproc = nproc
        self.checkpoint_dir = checkpoint_dir
        self.checkpoint_every = checkpoint_every
        self.resume = resume
        self.verbose = verbose

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y=None, sample_weight=None) -> AttentionMoEImputer:
        """Train the row model on ``X`` (missing cells allowed).

        ``sample_weight`` (one finite weight >= 0 per row, not all 0) multiplies
        every masked prediction of the row in the MLM loss, as in
        :meth:`AttentionMoEClassifier.fit`: an integer weight counts the row as
        that many copies; None or all ones is unweighted.
        """
        frame = self._frame(X, reset=True)
        self._check_combinations()
        row_weights = self._sample_weight(sample_weight, frame)
        empty = [str(c) for c in frame.columns[frame.isna().all().to_numpy()]]
        if empty:  # no value to learn or to fill with
            raise ValueError(f"columns {empty} have no observed values; drop them before fitting")
        self.encoder_ = TableEncoder(self.n_bins, self.max_categories).fit(frame)
        self.mask_id_ = self.encoder_.n_codes
        tokens = self.encoder_.encode(frame, self.mask_id_, warn=False)
        weights = self._loss_weights(row_weights, len(tokens), np.ones(tokens.shape[1]))
        if row_weights is None:
            weights = None  # unweighted, as before sample weights existed
        self.models_, self.histories_ = self._fit_models(tokens, self.mask_id_, weights)
        return self

    @_fit_context(prefer_skip_nested_validation=True)
    def fit_chunks(self, chunks) -> AttentionMoEImputer:
        """Train the row model on a table given in chunks of rows, never held whole.

        As :meth:`AttentionMoEClassifier.fit_chunks`, with chunks of rows alone
        (DataFrames or array-likes with the same columns, missing cells allowed):
        read twice, the encoder learnt in one pass, the codes kept in one compact
        array. No sample weights.
        """
        passes = chunk_passes(chunks)
        self._check_combinations()
        n_rows = n_chunks = 0

        def frames():  # the first pass: each chunk's rows, checked
            nonlocal n_rows, n_chunks
            for k, X in enumerate(self._chunk_bar(passes(), "encoder", count_chunks(chunks))):
                frame = self._frame(X, reset=k == 0)
                n_rows, n_chunks = n_rows + len(frame), k + 1
                yield frame

        self.encoder_ = TableEncoder(self.n_bins, self.max_categories).fit_chunks(frames())
        empty = [c.name for c in self.encoder_.columns_ if c.n_codes == 0]
        if empty:  # no value to learn or to fill with
            raise ValueError(f"columns {empty} have no observed values; drop them before fitting")
        self.mask_id_ = self.encoder_.n_codes
        table = CodeTable(n_rows, self.n_features_in_, self.mask_id_)
        for X in self._chunk_bar(passes(), "codes", n_chunks):
            frame = self._frame(X, reset=False)
            table.append(self.encoder_.encode(frame, self.mask_id_, warn=False))
        self.models_, self.histories_ = self._fit_models(table.result(), self.mask_id_, None)
        return self

    @torch.no_grad()
    def predict_proba_columns(self, X) -> list[np.ndarray]:
        """Per column, ``(n, n_codes_of_column)`` probabilities of each value, the cell masked."""
        check_is_fitted(self)
        frame = self._frame(X, reset=False)
        tokens = torch.as_tensor(self.encoder_.encode(frame, self.mask_id_, warn=False))
        sizes = [c.n_codes for c in self.encoder_.columns_]
        out = [np.zeros((len(tokens), n)) for n in sizes]
        for model in self.models_:
            for first in range(0, len(tokens), _PREDICT_CHUNK):
                x = tokens[first : first + _PREDICT_CHUNK]
                logits = model.masked_logits(x)  # every column masked alone: (B, L, V)
                for j, n in enumerate(sizes):
                    p = torch.softmax(logits[:, j, :n], -1).double().numpy()
                    out[j][first : first + len(x)] += p
        return [p / len(self.models_) for p in out]

    def transform(self, X):
        """``X`` with every missing cell filled (same type as the input)."""
        check_is_fitted(self)
        frame = self._frame(X, reset=False)
        filled = frame.copy()
        missing = frame.isna().to_numpy()
        if missing.any():
            rows = np.flatnonzero(missing.any(1))
            probabilities = self.predict_proba_columns(frame.iloc[rows])
            for j in range(frame.shape[1]):
                holes = missing[rows, j]
                if holes.any():
                    best = probabilities[j][holes].argmax(1)
                    column = filled.columns[j]
                    filled[column] = _filled_column(
                        filled[column], rows[holes], self.encoder_.decode(j, best)
                    )
        if isinstance(X, pd.DataFrame):
            filled.index = X.index
            return filled
        result = filled.to_numpy()
        if all(pd.api.types.is_numeric_dtype(t) for t in filled.dtypes):
            result = result.astype(float)
        return result

    def get_feature_names_out(self, input_features=None) -> np.ndarray:
        """The output columns' names: the input's, one per column (sklearn's contract).

        ``input_features`` must equal ``feature_names_in_`` when the imputer was
        fitted on named columns (else ``ValueError``), and is used as given
        otherwise (one name per column); without it, ``feature_names_in_`` or
        ``x0, x1, ...``.
        """
        check_is_fitted(self)
        return _check_feature_names_in(self, input_features)


__all__ = [
    "AttentionMoEClassifier",
    "AttentionMoEImputer",
    "SlowEngineWarning",
    "TrainingHistory",
]
