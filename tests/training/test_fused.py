"""The fused training kernel: the same loss and gradients as the torch reference."""

import numpy as np
import pytest
import torch

from attnmoe import AttentionConfig, BidirectionalAttention, mlm_loss, train_mlm
from attnmoe.training.fused import (
    MAX_TABLE_PATH_PAIRS,
    DropoutStream,
    FusedAdam,
    FusedMLM,
    fused_mlm_step,
    fused_path,
    fused_supported,
)


def _tabular_model(block="bert", dropout=0.0, seed=0, **overrides):
    config = dict(vocab_size=10, max_len=6, d_model=20, n_heads=5, d_head=4, d_ff=5, block=block)
    config.update(overrides)
    torch.manual_seed(seed)
    cfg = AttentionConfig(dropout=dropout, layer_norm_eps=1e-6, **config)
    return BidirectionalAttention(cfg).double()


def _reference(model, x, weights):
    model.zero_grad(set_to_none=True)
    loss = mlm_loss(model, x, position_weights=weights)
    loss.backward()
    return loss.item(), {n: p.grad.clone() for n, p in model.named_parameters()}


def _fractional(x: torch.Tensor, seed: int) -> torch.Tensor:
    """``x`` as float64 codes: most words below 9 get a random fraction (a fractional
    code must stay below mask_id - 1 = 9); the mask (10) and the last word stay whole."""
    generator = torch.Generator().manual_seed(seed)
    fraction = torch.rand(x.shape, generator=generator, dtype=torch.float64)
    fraction[torch.rand(x.shape, generator=generator) < 0.3] = 0.0
    return torch.where(x < 9, x + fraction, x.double())


@pytest.mark.parametrize("block", ["bert", "pure"])
@pytest.mark.parametrize("threads", [1, 3])
@pytest.mark.parametrize("codes", ["ids", "fractional"])
def test_loss_and_every_gradient_equal_the_reference(block, threads, codes):
    model = _tabular_model(block)
    generator = torch.Generator().manual_seed(1)
    x = torch.randint(0, 11, (40, 6), generator=generator)  # id 10 is the mask: missing values
    weights = torch.rand(6, generator=generator, dtype=torch.float64) + 0.5
    if codes == "fractional":
        x = _fractional(x, seed=1)
    expected_loss, expected = _reference(model, x, weights)

    model.zero_grad(set_to_none=True)
    loss = fused_mlm_step(model, x, weights, num_threads=threads)

    assert abs(loss.item() - expected_loss) < 1e-10
    for name, param in model.named_parameters():
        assert torch.allclose(param.grad, expected[name], atol=1e-10, rtol=0), name


def test_step_overwrites_gradients_and_accepts_smaller_batches():
    model = _tabular_model()
    x = torch.randint(0, 10, (30, 6), generator=torch.Generator().manual_seed(2))
    fused = FusedMLM(model, length=6, max_rows=30)
    fused.step(x)
    fused.step(x[:7])  # a short last batch
    _, expected = _reference(model, x[:7], None)
    for name, param in model.named_parameters():
        assert torch.allclose(param.grad, expected[name], atol=1e-10, rtol=0), name
    with pytest.raises(ValueError, match="exceeds"):
        fused.step(torch.zeros(31, 6, dtype=torch.long))
    with pytest.raises(ValueError, match="nothing to predict"):
        fused.step(torch.full((3, 6), 10))


def test_dropout_stream_is_seeded_and_drops_at_the_rate():
    first, second, other = (np.empty((50_000, 2, 10), np.float32) for _ in range(3))
    DropoutStream(7).fill(first, 0.1)
    DropoutStream(7).fill(second, 0.1)
    DropoutStream(8).fill(other, 0.1)
    assert np.array_equal(first, second)
    assert not np.array_equal(first, other)
    dropped = (first == 0).mean()
    assert abs(dropped - 0.1) < 4 * np.sqrt(0.1 * 0.9 / first.size)
    kept = first[first != 0]
    assert np.allclose(kept, 1 / (1 - 6554 / 65536))  # p rounded to 2**-16, mean kept at 1
    assert np.all(np.isin(np.unique(first), [0, kept[0]]))


def test_training_with_dropout_is_reproducible_and_needs_a_stream():
    x = torch.randint(0, 10, (60, 6), generator=torch.Generator().manual_seed(3))
    runs = []
    for _ in range(2):
        model = _tabular_model(dropout=0.1).float()
        history = train_mlm(model, x, epochs=3, batch_size=16, seed=5, verbose=0, engine="fused")
        runs.append((history.train_loss, model.output.weight.detach().clone()))
    assert runs[0][0] == runs[1][0]
    assert torch.equal(runs[0][1], runs[1][1])
    with pytest.raises(ValueError, match="DropoutStream"):
        FusedMLM(_tabular_model(dropout=0.1), 6, 60).step(x)


def _assert_engines_agree(x, epochs, **train_kwargs):
    """Train the same model with both engines: the same trajectory, not bit for bit
    (only Adam's implementation differs, torch's for-loop vs the compiled one)."""
    weights = torch.linspace(0.5, 2.0, 6, dtype=torch.float64)
    histories, outputs = [], []
    for engine in ("torch", "fused"):
        model = _tabular_model(seed=9)
        history = train_mlm(
            model, x, epochs=epochs, position_weights=weights, seed=1, verbose=0, engine=engine,
            **train_kwargs,
        )  # fmt: skip
        # copies leave out the pairs whose target is the mask token (nothing to predict)
        copies = train_kwargs.get("masking") == "copies"
        counted = int((x != model.config.mask_id).sum()) if copies else x.numel()
        assert history.masked_predictions == epochs * counted
        histories.append(np.array(history.train_loss))
        outputs.append(model.output.weight.detach())
    assert np.allclose(histories[0], histories[1], rtol=1e-6, atol=0)
    assert torch.allclose(outputs[0], outputs[1], atol=1e-6, rtol=0)


def test_fused_training_follows_the_torch_engine():
    x = torch.randint(0, 10, (64, 6), generator=torch.Generator().manual_seed(4))
    _assert_engines_agree(x, epochs=4, batch_size=16)


def test_engine_choice_and_clear_errors():
    tabular = _tabular_model()
    assert fused_supported(tabular)
    assert not fused_supported(_tabular_model(n_layers=2))
    assert not fused_supported(_tabular_model(top_k=2))
    text_sized = BidirectionalAttention(AttentionConfig(vocab_size=5000, max_len=16, d_model=128))
    assert not fused_supported(text_sized)  # torch's BLAS path is faster there
    x = torch.randint(0, 10, (20, 6))
    with pytest.raises(ValueError, match="engine='fused' needs"):
        train_mlm(_tabular_model(n_layers=2), x, epochs=1, verbose=0, engine="fused")
    with pytest.raises(ValueError, match="engine must be"):
        train_mlm(tabular, x, epochs=1, verbose=0, engine="jit")
    with pytest.raises(ValueError, match="not supported"):
        FusedMLM(_tabular_model(n_layers=2), 6, 20)


def test_compiled_epochs_equal_python_steps_with_torch_adam():
    # train_epoch (one thread, Adam compiled) against step() + torch's Adam, same batches
    x = torch.randint(0, 11, (50, 6), generator=torch.Generator().manual_seed(6))
    order = torch.randperm(50, generator=torch.Generator().manual_seed(7))
    compiled, reference = _tabular_model(seed=3), _tabular_model(seed=3)
    fused = FusedMLM(compiled, 6, 16)
    adam = FusedAdam(fused, lr=1e-2, weight_decay=1e-3)
    epochs = [fused.train_epoch(x.numpy(), order.numpy(), 16, adam) for _ in range(2)]
    losses = np.concatenate(epochs)
    assert adam.steps == 8
    stepper = FusedMLM(reference, 6, 16)
    optimizer = torch.optim.Adam(reference.parameters(), lr=1e-2, weight_decay=1e-3)
    expected = []
    for _ in range(2):
        for first in range(0, 50, 16):
            expected.append(stepper.step(x[order[first : first + 16]]))
            optimizer.step()
    assert np.allclose(losses, expected, rtol=1e-9, atol=0)
    for (name, a), b in zip(compiled.named_parameters(), reference.parameters(), strict=True):
        assert torch.allclose(a, b, atol=1e-9, rtol=0), name


def test_compiled_epochs_refuse_bad_input_and_stop_at_empty_batches():
    model = _tabular_model()
    fused = FusedMLM(model, 6, 8)
    adam = FusedAdam(fused)
    x = np.random.default_rng(0).integers(0, 10, (16, 6))
    with pytest.raises(ValueError, match="per_step"):
        fused.train_epoch(x, np.arange(16), 9, adam)
    with pytest.raises(ValueError, match=r"\(N, 6\)"):
        fused.train_epoch(x[:, :5], np.arange(16), 8, adam)
    x[8:] = 10  # the second batch is all mask tokens
    before = model.output.weight.detach().clone()
    with pytest.raises(ValueError, match="nothing to predict"):
        fused.train_epoch(x, np.arange(16), 8, adam)
    assert adam.steps == 1  # the first batch was applied, then it stopped
    assert not torch.equal(model.output.weight, before)
    with pytest.raises(ValueError, match="one thread"):
        FusedMLM(model, 6, 8, num_threads=2).train_epoch(x, np.arange(16), 8, adam)


def test_one_and_two_threads_train_the_same_model():
    x = torch.randint(0, 10, (64, 6), generator=torch.Generator().manual_seed(8))
    weights = []
    for threads in (1, 2):
        model = _tabular_model(seed=4)
        train_mlm(model, x, epochs=3, batch_size=16, seed=2, verbose=0, engine="fused",
                  num_threads=threads)  # fmt: skip
        weights.append(model.output.weight.detach())
    assert torch.allclose(weights[0], weights[1], atol=1e-9, rtol=0)


def test_masked_copies_follow_the_torch_engine():
    # batches of masked copies shuffled across sentences and locations (the paper's
    # Keras training): the fused epochs against autograd over the same copies
    x = torch.randint(0, 11, (40, 6), generator=torch.Generator().manual_seed(9))
    _assert_engines_agree(x, epochs=3, batch_size=50, masking="copies")


def test_masked_copies_are_the_all_locations_loss_when_one_batch_holds_them_all():
    x = torch.randint(0, 11, (12, 6), generator=torch.Generator().manual_seed(10))
    a, b = _tabular_model(seed=6), _tabular_model(seed=6)
    train_mlm(a, x, epochs=1, batch_size=12, masking="all", verbose=0, engine="fused", lr=1e-2)
    train_mlm(b, x, epochs=1, batch_size=72, masking="copies", verbose=0, engine="fused", lr=1e-2)
    for p, q in zip(a.parameters(), b.parameters(), strict=True):
        assert torch.allclose(p, q, atol=1e-12, rtol=0)
    with pytest.raises(ValueError, match="copies"):
        train_mlm(_tabular_model(n_layers=2), x, epochs=1, masking="copies", verbose=0)


def test_keras_adam_flavour_is_kerass_update_and_engines_agree():
    from attnmoe.training.adam import KerasEpsilon as _KerasEpsilon

    # Keras: m, v as torch; w -= lr * sqrt(1 - b2^t) / (1 - b1^t) * m / (sqrt(v) + eps)
    rng = np.random.default_rng(0)
    grads = rng.normal(scale=[1e-7, 1e-5, 1.0], size=(30, 3))  # near eps and far from it
    lr, b1, b2, eps = 1e-2, 0.9, 0.999, 1e-7
    w, m, v = np.ones(3), np.zeros(3), np.zeros(3)
    param = torch.nn.Parameter(torch.ones(3, dtype=torch.float64))
    keras_like = _KerasEpsilon(torch.optim.Adam([param], lr=lr, betas=(b1, b2), eps=eps))
    plain = torch.nn.Parameter(torch.ones(3, dtype=torch.float64))
    torch_adam = torch.optim.Adam([plain], lr=lr, betas=(b1, b2), eps=eps)
    for t, g in enumerate(grads, start=1):
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        w = w - lr * np.sqrt(1 - b2**t) / (1 - b1**t) * m / (np.sqrt(v) + eps)
        for p, opt in ((param, keras_like), (plain, torch_adam)):
            p.grad = torch.as_tensor(g)
            opt.step()
    np.testing.assert_allclose(param.detach().numpy(), w, rtol=0, atol=1e-12)
    assert not np.allclose(plain.detach().numpy(), w, rtol=0, atol=1e-6)  # torch's differs

    # the compiled Adam with eps_hat steps the same way, inside whole epochs
    x = torch.randint(0, 10, (64, 6), generator=torch.Generator().manual_seed(5))
    _assert_engines_agree(x, epochs=3, batch_size=16, adam="keras")
    outputs = []
    for flavour in ("torch", "keras"):  # and the flavours differ by more than that tolerance
        model = _tabular_model(seed=9)
        train_mlm(model, x, epochs=3, batch_size=16, seed=1, verbose=0, engine="fused",
                  adam=flavour)  # fmt: skip
        outputs.append(model.output.weight.detach())
    assert (outputs[0] - outputs[1]).abs().max() > 1e-5
    with pytest.raises(ValueError, match="adam must be"):
        train_mlm(_tabular_model(), x, epochs=1, verbose=0, adam="sgd")


def test_hidden_context_copies_keep_their_targets():
    from attnmoe.training import hide_context

    x = np.random.default_rng(11).integers(0, 10, (30, 6))
    x[0, 2] = 10  # a missing value stays missing in every copy
    assert np.array_equal(hide_context(x, 0.0, 10, np.random.default_rng(0)), np.repeat(x, 6, 0))
    copies = hide_context(x, 0.4, 10, np.random.default_rng(0))  # (N * L, L)
    assert copies.shape == (180, 6)
    targets = copies[np.arange(180), np.tile(np.arange(6), 30)]
    assert np.array_equal(targets, x.ravel())  # copy s * L + i keeps location i of s
    assert (copies[:6, 2] == 10).all()
    hidden = (copies != np.repeat(x, 6, 0)).sum() / (180 * 5)  # of the other locations
    assert 0.3 < hidden < 0.5
    again = hide_context(x, 0.4, 10, np.random.default_rng(0))
    assert np.array_equal(copies, again)  # seeded


def test_hidden_context_trains_the_same_in_both_engines():
    # the compiled epochs read every copy's own (partly hidden) input: the same
    # trajectory as autograd over those copies, and not the trajectory without hiding
    x = torch.randint(0, 10, (40, 6), generator=torch.Generator().manual_seed(12))
    x[::7, 2] = 10  # missing values: seen as the mask, never predicted
    _assert_engines_agree(x, epochs=3, batch_size=50, masking="copies", context_mask_rate=0.3)
    plain, hidden = _tabular_model(seed=9), _tabular_model(seed=9)
    for model, rate in ((plain, 0.0), (hidden, 0.3)):
        train_mlm(model, x, epochs=3, batch_size=50, masking="copies", seed=1, verbose=0,
                  context_mask_rate=rate)  # fmt: skip
    assert (plain.output.weight - hidden.output.weight).abs().max() > 1e-4
    with pytest.raises(ValueError, match="needs masking='copies'"):
        train_mlm(_tabular_model(), x, epochs=1, verbose=0, context_mask_rate=0.2)
    with pytest.raises(ValueError, match=r"in \[0, 1\)"):
        train_mlm(_tabular_model(), x, epochs=1, verbose=0, masking="copies", context_mask_rate=1)
    fused = FusedMLM(_tabular_model(), 6, 8)
    with pytest.raises(ValueError, match="copies=True"):
        fused.train_epoch(x.numpy(), np.arange(40), 8, FusedAdam(fused), expanded=True)
    with pytest.raises(ValueError, match="6 per sentence"):
        fused.train_epoch(x.numpy()[:39], np.arange(39), 8, FusedAdam(fused), True, expanded=True)


@pytest.mark.parametrize("codes", ["ids", "fractional"])
def test_gates_far_below_the_tables_best_match_the_reference(codes):
    # large gate weights: a sentence whose every score lies far below the batch's best
    # takes the kernel's own-max fallback (exp(score - table max) would underflow)
    model = _tabular_model(seed=13)
    with torch.no_grad():
        for layer in (model.layers[0].attention.query, model.layers[0].attention.key):
            layer.weight.mul_(12.0)
    x = torch.randint(0, 10, (12, 6), generator=torch.Generator().manual_seed(14))
    if codes == "fractional":
        x = _fractional(x, seed=15)
    expected_loss, expected = _reference(model, x, None)
    assert np.isfinite(expected_loss)
    model.zero_grad(set_to_none=True)
    loss = fused_mlm_step(model, x)
    assert abs(loss.item() - expected_loss) < 1e-10 * max(1.0, abs(expected_loss))
    for name, param in model.named_parameters():
        scale = max(1.0, float(expected[name].abs().max()))
        assert torch.allclose(param.grad, expected[name], atol=1e-10 * scale, rtol=0), name


def test_whole_float_codes_train_exactly_as_word_ids():
    x = torch.randint(0, 11, (40, 6), generator=torch.Generator().manual_seed(16))
    for kwargs in (dict(masking="all", batch_size=8), dict(masking="copies", batch_size=50)):
        outputs = []
        for codes in (x, x.double(), x.float()):
            model = _tabular_model(seed=17)
            history = train_mlm(model, codes, epochs=2, seed=1, verbose=0, engine="fused",
                                **kwargs)  # fmt: skip
            outputs.append((history.train_loss, [p.detach().clone() for p in model.parameters()]))
        for losses, params in outputs[1:]:
            assert losses == outputs[0][0]
            assert all(torch.equal(a, b) for a, b in zip(params, outputs[0][1], strict=True))


def test_fractional_codes_train_in_the_fused_engine_as_in_the_torch_engine():
    x = _fractional(torch.randint(0, 11, (40, 6), generator=torch.Generator().manual_seed(18)), 19)
    assert fused_supported(_tabular_model())  # the same answer for every codes matrix
    for kwargs in (
        dict(batch_size=16),
        dict(batch_size=50, masking="copies"),
        dict(batch_size=50, masking="copies", context_mask_rate=0.3),
        dict(batch_size=16, adam="keras"),
    ):
        _assert_engines_agree(x, epochs=3, **kwargs)
    auto, fused = _tabular_model(seed=20), _tabular_model(seed=20)
    for model, engine in ((auto, "auto"), (fused, "fused")):  # auto keeps the fast path
        train_mlm(model, x, epochs=1, batch_size=16, seed=2, verbose=0, engine=engine)
    assert torch.equal(auto.output.weight, fused.output.weight)


def test_compiled_epochs_mixing_word_id_and_fractional_batches_equal_python_steps():
    # one epoch whose batches are some all-whole, some fractional: each takes its own
    # kernel path, and the sequence equals step() + torch's Adam on the same batches
    x = torch.randint(0, 11, (48, 6), generator=torch.Generator().manual_seed(21)).double()
    x[16:32] = _fractional(x[16:32].long(), seed=22)  # the second batch only
    compiled, reference = _tabular_model(seed=23), _tabular_model(seed=23)
    _epoch_equals_steps(FusedMLM(compiled, 6, 16), compiled, reference, x, 6, 16)


def test_float32_models_take_fractional_codes_to_float32_rounding():
    # the estimator trains float32 models; codes may come as float64 or float32
    x = _fractional(torch.randint(0, 11, (40, 6), generator=torch.Generator().manual_seed(24)), 25)
    for codes in (x, x.float()):
        model = _tabular_model(seed=26).float()
        expected_loss, expected = _reference(model, codes, None)
        model.zero_grad(set_to_none=True)
        assert abs(fused_mlm_step(model, codes).item() - expected_loss) < 1e-5
        for name, param in model.named_parameters():
            assert torch.allclose(param.grad, expected[name], atol=1e-6, rtol=0), name


# -- wide tables: the tokens path (issue 24) ----------------------------------------

#: (locations, words): the paper's size, 22 columns with one of 46 values (and the
#: target), and 64 columns of 256 values
WIDTHS = [(6, 10), (23, 46), (65, 256)]


def _wide(length: int, vocab: int, seed: int = 0, **overrides) -> BidirectionalAttention:
    return _tabular_model(seed=seed, vocab_size=vocab, max_len=length, **overrides)


def _codes(n: int, length: int, vocab: int, seed: int, fractional: bool) -> torch.Tensor:
    """Random rows with missing values (the mask id, ``vocab``); with ``fractional``,
    most codes below ``vocab - 1`` get a fraction (floor + 1 must stay below the mask)."""
    generator = torch.Generator().manual_seed(seed)
    x = torch.randint(0, vocab + 1, (n, length), generator=generator)
    if not fractional:
        return x
    fraction = torch.rand(x.shape, generator=generator, dtype=torch.float64)
    fraction[torch.rand(x.shape, generator=generator) < 0.3] = 0.0
    return torch.where(x < vocab - 1, x + fraction, x.double())


@pytest.mark.parametrize("path", ["tables", "tokens"])
@pytest.mark.parametrize(("length", "vocab"), WIDTHS)
@pytest.mark.parametrize("codes", ["ids", "fractional"])
@pytest.mark.parametrize("weighted", [False, True])
def test_both_paths_equal_the_reference_at_every_width(path, length, vocab, codes, weighted):
    model = _wide(length, vocab, block="bert" if weighted else "pure")
    x = _codes(9, length, vocab, seed=length + vocab, fractional=codes == "fractional")
    generator = torch.Generator().manual_seed(3)
    weights = torch.rand(length, generator=generator, dtype=torch.float64) + 0.5
    weights = weights if weighted else None
    expected_loss, expected = _reference(model, x, weights)
    for threads in (1, 3):
        model.zero_grad(set_to_none=True)
        loss = fused_mlm_step(model, x, weights, num_threads=threads, path=path)
        assert abs(loss.item() - expected_loss) < 1e-10
        for name, param in model.named_parameters():
            assert torch.allclose(param.grad, expected[name], atol=1e-10, rtol=0), name


@pytest.mark.parametrize("codes", ["ids", "fractional"])
def test_the_tokens_path_takes_large_gates_exactly(codes):
    # each prediction's softmax is shifted by its own max: no underflow to fall back from
    model = _wide(23, 46, seed=13)
    with torch.no_grad():
        for layer in (model.layers[0].attention.query, model.layers[0].attention.key):
            layer.weight.mul_(12.0)
    x = _codes(6, 23, 46, seed=14, fractional=codes == "fractional")
    expected_loss, expected = _reference(model, x, None)
    model.zero_grad(set_to_none=True)
    loss = fused_mlm_step(model, x, path="tokens")
    assert abs(loss.item() - expected_loss) < 1e-10 * max(1.0, abs(expected_loss))
    for name, param in model.named_parameters():
        scale = max(1.0, float(expected[name].abs().max()))
        assert torch.allclose(param.grad, expected[name], atol=1e-10 * scale, rtol=0), name


def test_the_path_follows_the_pairs_and_wide_tables_are_fused():
    paths = {(length, vocab): fused_path(_wide(length, vocab)) for length, vocab in WIDTHS}
    assert paths == {(6, 10): "tables", (23, 46): "tokens", (65, 256): "tokens"}
    assert fused_path(_wide(10, MAX_TABLE_PATH_PAIRS // 10 - 1)) == "tables"  # 10 x 30 pairs
    assert fused_path(_wide(10, MAX_TABLE_PATH_PAIRS // 10)) == "tokens"
    assert fused_path(_wide(65, 50), length=3) == "tables"  # short sentences: 3 x 51 pairs
    assert fused_supported(_wide(65, 256))
    assert fused_supported(_wide(65, 5000))  # the tokens path's cost follows the batch
    wide = FusedMLM(_wide(65, 256), 65, 4)
    assert wide.path == "tokens"
    assert wide.tables[6].size == 0  # no (location, word) tables are built
    assert FusedMLM(_wide(65, 256), 65, 4, path="tables").path == "tables"
    with pytest.raises(ValueError, match="path must be"):
        FusedMLM(_wide(6, 10), 6, 4, path="rows")


def _engines_agree_wide(x, length, vocab, epochs, **train_kwargs):
    """_assert_engines_agree on a wide model (the tokens path)."""
    weights = torch.linspace(0.5, 2.0, length, dtype=torch.float64)
    runs = []
    for engine in ("torch", "fused"):
        model = _wide(length, vocab, seed=9)
        history = train_mlm(
            model, x, epochs=epochs, position_weights=weights, seed=1, verbose=0, engine=engine,
            **train_kwargs,
        )  # fmt: skip
        runs.append((np.array(history.train_loss), model.output.weight.detach()))
    assert np.allclose(runs[0][0], runs[1][0], rtol=1e-6, atol=0)
    assert torch.allclose(runs[0][1], runs[1][1], atol=1e-6, rtol=0)


@pytest.mark.parametrize("codes", ["ids", "fractional"])
def test_the_tokens_path_trains_as_the_torch_engine(codes):
    length, vocab = 23, 46
    x = _codes(24, length, vocab, seed=31, fractional=codes == "fractional")
    assert fused_path(_wide(length, vocab)) == "tokens"
    for kwargs in (
        dict(batch_size=8),
        dict(batch_size=40, masking="copies"),
        dict(batch_size=40, masking="copies", context_mask_rate=0.3),  # context hidden
        dict(batch_size=8, num_threads=2),  # steps on two threads, torch's Adam
    ):
        _engines_agree_wide(x, length, vocab, epochs=2, **kwargs)


def test_the_tokens_path_trains_a_table_of_64_columns_of_256_values():
    x = _codes(6, 65, 256, seed=32, fractional=False)
    _engines_agree_wide(x, 65, 256, epochs=1, batch_size=100, masking="copies")


def test_tokens_path_epochs_mixing_word_id_and_fractional_batches_equal_python_steps():
    # train_epoch's tokens path (Adam compiled) against step() + torch's Adam
    length, vocab = 23, 46
    x = _codes(24, length, vocab, seed=33, fractional=False).double()
    x[8:16] = _codes(8, length, vocab, seed=34, fractional=True)  # the second batch only
    compiled, reference = _wide(length, vocab, seed=23), _wide(length, vocab, seed=23)
    fused = FusedMLM(compiled, length, 8)
    assert fused.path == "tokens"
    _epoch_equals_steps(fused, compiled, reference, x, length, 8)


def test_the_tokens_path_in_float32_matches_to_float32_rounding():
    x = _codes(8, 23, 46, seed=35, fractional=True)
    for codes in (x, x.float()):
        model = _wide(23, 46, seed=26).float()
        expected_loss, expected = _reference(model, codes, None)
        model.zero_grad(set_to_none=True)
        assert abs(fused_mlm_step(model, codes, path="tokens").item() - expected_loss) < 1e-5
        for name, param in model.named_parameters():
            assert torch.allclose(param.grad, expected[name], atol=1e-6, rtol=0), name


def test_the_kernels_blas_runs_on_one_thread_while_any_fused_work_runs():
    from threadpoolctl import threadpool_info

    from attnmoe.training.fused import engine

    def blas_threads():
        found = threadpool_info()
        return {i["filepath"]: i["num_threads"] for i in found if i["user_api"] == "blas"}

    fused_mlm_step(_tabular_model(), torch.randint(0, 10, (4, 6)))  # loads the kernels' BLAS
    before = blas_threads()
    with engine._one_blas_thread():
        with engine._one_blas_thread():  # e.g. ensemble members training at once
            inside = blas_threads()
        still = blas_threads()  # one user left: still one thread
    assert before and set(inside.values()) == {1}
    assert still == inside
    assert blas_threads() == before  # restored after the last


def _epoch_equals_steps(fused, compiled, reference, x, length, batch):
    """One fused epoch over ``x`` in order equals torch's steps, batch by batch: the
    losses to 1e-9 and every parameter after it to 1e-9."""
    adam = FusedAdam(fused, lr=1e-2)
    losses = fused.train_epoch(x.numpy(), np.arange(len(x)), batch, adam)
    stepper = FusedMLM(reference, length, batch)
    optimizer = torch.optim.Adam(reference.parameters(), lr=1e-2)
    expected = []
    for first in range(0, len(x), batch):
        model_loss = mlm_loss(reference, x[first : first + batch])
        expected.append(stepper.step(x[first : first + batch]))
        assert abs(expected[-1] - model_loss.item()) < 1e-10
        optimizer.step()
    assert np.allclose(losses, expected, rtol=1e-9, atol=0)
    for (name, a), b in zip(compiled.named_parameters(), reference.parameters(), strict=True):
        assert torch.allclose(a, b, atol=1e-9, rtol=0), name
