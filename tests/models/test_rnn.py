"""What defines the RNN family: torch's cells, padding changes nothing, causality, streaming."""

import re
from dataclasses import replace

import pytest
import torch
from torch import nn

from fieldguide import create_model
from fieldguide.models.base import DataSpec
from fieldguide.models.rnn import RNN, RNNConfig
from tests.test_model_contract import check_causal

CELLS = ["rnn", "gru", "lstm"]
TORCH_CELLS = {"rnn": nn.RNNCell, "gru": nn.GRUCell, "lstm": nn.LSTMCell}
GATES = {"rnn": 1, "gru": 3, "lstm": 4}


def _rnn(cell: str = "gru", seed: int = 0, **overrides) -> RNN:
    config = {"in_channels": 3, "hidden_dim": 8, "num_layers": 2, "out_dim": 2}
    torch.manual_seed(seed)
    return create_model(cell, cell=cell, **(config | overrides)).eval()


def _twin(model: RNN, **overrides) -> RNN:
    """The same weights under another config (pool, dropout): the head and cells are shared."""
    twin = RNN(replace(model.config, **overrides))
    twin.load_state_dict(model.state_dict())
    twin.name = model.name
    return twin.eval()


def _padded_batch(lengths: list[int], channels: int = 3, seed: int = 1):
    """Sequences right-padded with large garbage, so any leak of padding shows."""
    torch.manual_seed(seed)
    t = max(lengths)
    x = torch.randn(len(lengths), t, channels)
    lengths = torch.tensor(lengths)
    padding = torch.arange(t)[None, :] >= lengths[:, None]  # (B, T)
    x[padding] = 100 * torch.randn(int(padding.sum()), channels)
    return x, lengths


# ---------------------------------------------------------------------------------------------
# Structure and parity with torch's cells.
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("cell", "module"), [("rnn", nn.RNN), ("gru", nn.GRU), ("lstm", nn.LSTM)])
@pytest.mark.parametrize("bidirectional", [False, True])
def test_fused_module_and_head_width(cell, module, bidirectional):
    model = _rnn(cell, bidirectional=bidirectional, hidden_dim=8, num_layers=3)
    assert type(model.recurrent) is module
    assert model.recurrent.batch_first
    assert (model.recurrent.num_layers, model.recurrent.bidirectional) == (3, bidirectional)
    assert model.head.in_features == (16 if bidirectional else 8)
    assert model.head.out_features == 2
    y = model(torch.randn(4, 5, 3))
    assert y.shape == (4, 5, 2)


def _cells_with_copied_weights(model: RNN) -> list[nn.Module]:
    """torch's single-step cells, one per layer, holding the model's weights."""
    cells = []
    for layer in range(model.config.num_layers):
        in_dim = model.config.in_channels if layer == 0 else model.config.hidden_dim
        cell = TORCH_CELLS[model.config.cell](in_dim, model.config.hidden_dim)
        for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
            getattr(cell, name).data.copy_(getattr(model.recurrent, f"{name}_l{layer}"))
        cells.append(cell)
    return cells


@pytest.mark.parametrize("cell", CELLS)
def test_step_and_forward_equal_a_loop_over_torch_cells(cell):
    model = _rnn(cell, num_layers=3)
    # Perturb the biases, which init zeroes, so the copy of every tensor is exercised.
    with torch.no_grad():
        for name, p in model.recurrent.named_parameters():
            if name.startswith("bias"):
                p.add_(0.1 * torch.randn_like(p))
    cells = _cells_with_copied_weights(model)
    x = torch.randn(4, 6, 3)
    h = [torch.zeros(4, 8) for _ in cells]
    c = [torch.zeros(4, 8) for _ in cells]
    expected = []
    with torch.no_grad():
        for x_t in x.unbind(1):
            inp = x_t
            for i, torch_cell in enumerate(cells):
                if cell == "lstm":
                    h[i], c[i] = torch_cell(inp, (h[i], c[i]))
                else:
                    h[i] = torch_cell(inp, h[i])
                inp = h[i]
            expected.append(model.head(inp))
        expected = torch.stack(expected, 1)  # (B, T, out_dim)
        state = model.initial_state(4)
        steps = []
        for x_t in x.unbind(1):
            y_t, state = model.step(x_t, state)
            steps.append(y_t)
        torch.testing.assert_close(torch.stack(steps, 1), expected, atol=1e-6, rtol=1e-5)
        torch.testing.assert_close(model(x), expected, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("cell", CELLS)
def test_pooled_outputs_equal_gathering_the_per_step_outputs(cell):
    per_step = _rnn(cell)
    x, lengths = _padded_batch([6, 2, 4])
    with torch.no_grad():
        y = per_step(x, lengths)  # (B, T, out_dim)
        last = _twin(per_step, pool="last")(x, lengths)
        mean = _twin(per_step, pool="mean")(x, lengths)
    for b, n in enumerate(lengths.tolist()):
        torch.testing.assert_close(last[b], y[b, n - 1], atol=1e-6, rtol=1e-5)
        # The head is linear, so the head of the mean state is the mean of the outputs.
        torch.testing.assert_close(mean[b], y[b, :n].mean(0), atol=1e-6, rtol=1e-5)


# ---------------------------------------------------------------------------------------------
# Padding: real steps never see it, in either direction.
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("cell", ["gru", "lstm"])
@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("pool", ["none", "last", "mean"])
def test_padding_changes_no_real_output(cell, bidirectional, pool):
    model = _rnn(cell, bidirectional=bidirectional, pool=pool)
    lengths_list = [7, 3, 5, 1]
    x, lengths = _padded_batch(lengths_list)
    other = x.clone()
    padding = torch.arange(7)[None, :] >= lengths[:, None]
    other[padding] = torch.randn(int(padding.sum()), 3) * 1e3  # different garbage
    with torch.no_grad():
        y = model(x, lengths)
        torch.testing.assert_close(model(other, lengths), y, atol=0, rtol=0)
        for b, n in enumerate(lengths_list):
            alone = model(x[b : b + 1, :n])[0]  # no padding, no lengths
            if pool == "none":
                torch.testing.assert_close(y[b, :n], alone, atol=1e-6, rtol=1e-5)
                assert torch.equal(y[b, n:], torch.zeros(7 - n, 2)), "padded outputs are zero"
            else:
                torch.testing.assert_close(y[b], alone, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("pool", ["none", "last", "mean"])
def test_int32_lengths_give_the_same_outputs(pool):
    model = _rnn("lstm", bidirectional=True, pool=pool)
    x, lengths = _padded_batch([5, 2, 4])
    with torch.no_grad():
        expected = model(x, lengths)
        torch.testing.assert_close(model(x, lengths.int()), expected, atol=0, rtol=0)


@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_without_packing_the_backward_direction_would_read_the_padding(cell):
    # What packing prevents: fed the padded batch with no lengths, the backward direction
    # starts in the garbage and every real step changes.
    model = _rnn(cell, bidirectional=True)
    x, lengths = _padded_batch([7, 3])
    with torch.no_grad():
        packed = model(x, lengths)[1, :3]
        unpacked = model(x)[1, :3]
    assert (packed - unpacked).abs().min() > 1e-3


@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_bidirectional_last_is_forward_at_last_real_step_and_backward_at_step_zero(cell):
    model = _rnn(cell, bidirectional=True, pool="last", num_layers=2)
    x, lengths = _padded_batch([6, 2, 4])
    d = model.config.hidden_dim
    with torch.no_grad():
        pooled = model(x, lengths)
        packed = nn.utils.rnn.pack_padded_sequence(
            x, lengths, batch_first=True, enforce_sorted=False
        )
        _, h_n = model.recurrent(packed)
        h_n = h_n[0] if cell == "lstm" else h_n  # (num_layers * 2, B, hidden_dim)
        for b, n in enumerate(lengths.tolist()):
            h = model.recurrent(x[b : b + 1, :n])[0][0]  # (n, 2 * hidden_dim), sequence alone
            by_hand = model.head(torch.cat([h[n - 1, :d], h[0, d:]]))
            torch.testing.assert_close(pooled[b], by_hand, atol=1e-6, rtol=1e-5)
            # torch's own final states of the top layer agree: forward, then backward.
            final = model.head(torch.cat([h_n[-2, b], h_n[-1, b]]))
            torch.testing.assert_close(pooled[b], final, atol=1e-6, rtol=1e-5)
            # Taking both directions at the last real step would be another (wrong) answer.
            assert not torch.allclose(pooled[b], model.head(h[n - 1]), atol=1e-4)


# ---------------------------------------------------------------------------------------------
# Causality and streaming.
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("cell", CELLS)
def test_unidirectional_is_causal_with_lengths(cell):
    model = _rnn(cell)
    assert model.invariants == frozenset({"causal", "streamable"})
    x, lengths = _padded_batch([6, 4])
    x.requires_grad_(True)
    y = model(x, lengths)
    for t in range(6):
        (grad,) = torch.autograd.grad(y[:, t].sum(), x, retain_graph=True)
        assert torch.count_nonzero(grad[:, t + 1 :]) == 0, f"step {t} sees the future"
        real = t < lengths  # (B,)
        assert (grad[real, t].abs().sum(-1) > 0).all(), f"step {t} ignores x[t]"
        assert torch.count_nonzero(grad[~real]) == 0, "a padded output depends on the input"


def test_bidirectional_is_not_causal_and_declares_nothing():
    model = _rnn("gru", bidirectional=True)
    assert model.invariants == frozenset()
    x = torch.randn(2, 5, 3, requires_grad=True)
    (grad,) = torch.autograd.grad(model(x)[:, 0].sum(), x)
    assert torch.count_nonzero(grad[:, 1:]) > 0
    # The contract's checker would catch it, had the model declared `causal`.
    with pytest.raises(AssertionError, match="sees the future"):
        check_causal("gru-bi", model)


def test_pooled_models_do_not_declare_per_step_invariants():
    assert _rnn("lstm", pool="last").invariants == frozenset()
    assert _rnn("lstm", pool="mean").invariants == frozenset()


@pytest.mark.parametrize("cell", CELLS)
def test_step_equals_forward_at_batch_five(cell):
    model = _rnn(cell, num_layers=3, hidden_dim=16)
    x = torch.randn(5, 9, 3)
    with torch.no_grad():
        full = model(x)
        state = model.initial_state(5)
        steps = []
        for x_t in x.unbind(1):
            y_t, state = model.step(x_t, state)
            steps.append(y_t)
    torch.testing.assert_close(torch.stack(steps, 1), full, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("cell", CELLS)
def test_step_with_pool_last_gives_the_pooled_output_of_each_prefix(cell):
    model = _rnn(cell, pool="last")
    x = torch.randn(3, 5, 3)
    with torch.no_grad():
        state = model.initial_state(3)
        for t, x_t in enumerate(x.unbind(1)):
            y_t, state = model.step(x_t, state)
            torch.testing.assert_close(y_t, model(x[:, : t + 1]), atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("cell", CELLS)
def test_initial_state_is_zero_with_the_model_dtype(cell):
    model = _rnn(cell, num_layers=3).double()
    state = model.initial_state(4)
    parts = state if cell == "lstm" else (state,)
    assert len(parts) == (2 if cell == "lstm" else 1)
    for part in parts:
        assert part.shape == (3, 4, 8) and part.dtype == torch.float64
        assert not part.any()
    y_t, _ = model.step(torch.randn(4, 3, dtype=torch.float64), state)
    assert y_t.shape == (4, 2) and y_t.dtype == torch.float64


def test_bidirectional_model_cannot_stream():
    model = _rnn("gru", bidirectional=True)
    with pytest.raises(NotImplementedError, match="bidirectional and cannot stream"):
        model.initial_state(2)
    with pytest.raises(NotImplementedError, match="bidirectional=False"):
        model.step(torch.randn(2, 3), torch.zeros(4, 2, 8))


def test_mean_pooled_model_cannot_stream():
    model = _rnn("gru", pool="mean")
    with pytest.raises(ValueError, match="pool='mean'"):
        model.step(torch.randn(2, 3), model.initial_state(2))


def test_step_rejects_a_state_of_another_batch_size():
    model = _rnn("gru")
    message = "gru expects recurrent state of shape (2, 3, 8); got (2, 4, 8)."
    with pytest.raises(ValueError, match=re.escape(message)):
        model.step(torch.randn(3, 3), model.initial_state(4))


# ---------------------------------------------------------------------------------------------
# Initialisation.
# ---------------------------------------------------------------------------------------------


def _gate_blocks(weight: torch.Tensor, hidden_dim: int) -> list[torch.Tensor]:
    return list(weight.detach().split(hidden_dim, dim=0))


@pytest.mark.parametrize("cell", CELLS)
def test_recurrent_weights_are_orthogonal_per_gate(cell):
    model = _rnn(cell, bidirectional=True, num_layers=2, hidden_dim=16)
    names = [n for n, _ in model.recurrent.named_parameters() if n.startswith("weight_hh")]
    assert len(names) == 4  # two layers, two directions
    eye = torch.eye(16)
    for name in names:
        blocks = _gate_blocks(getattr(model.recurrent, name), 16)
        assert len(blocks) == GATES[cell]
        for w in blocks:
            torch.testing.assert_close(w @ w.T, eye, atol=1e-5, rtol=0)
    # torch's default uniform init is not orthogonal, so the check above can fail.
    plain = nn.GRU(3, 16).weight_hh_l0.detach()[:16]
    assert not torch.allclose(plain @ plain.T, eye, atol=1e-2)


@pytest.mark.parametrize("cell", CELLS)
def test_input_weights_are_xavier_per_gate(cell):
    model = _rnn(cell, in_channels=48, hidden_dim=16, num_layers=2)
    bounds = {0: (6 / (48 + 16)) ** 0.5, 1: (6 / (16 + 16)) ** 0.5}
    for layer, bound in bounds.items():
        for w in _gate_blocks(getattr(model.recurrent, f"weight_ih_l{layer}"), 16):
            assert w.abs().max() <= bound
            assert w.abs().max() > 0.8 * bound  # uniform over the whole Xavier range


@pytest.mark.parametrize("cell", CELLS)
def test_biases_are_zero_but_the_lstm_forget_gate_sums_to_one(cell):
    model = _rnn(cell, bidirectional=True, hidden_dim=8)
    h = 8
    biases = dict(model.recurrent.named_parameters())
    for layer in range(2):
        for suffix in ("", "_reverse"):
            bias_ih = biases[f"bias_ih_l{layer}{suffix}"].detach()
            bias_hh = biases[f"bias_hh_l{layer}{suffix}"].detach()
            assert not bias_hh.any()
            if cell != "lstm":
                assert not bias_ih.any()
                continue
            # Gates (input, forget, cell, output): only the forget block of bias_ih is 1.
            assert torch.equal((bias_ih + bias_hh)[h : 2 * h], torch.ones(h))
            assert not bias_ih[:h].any() and not bias_ih[2 * h :].any()


# ---------------------------------------------------------------------------------------------
# Dropout and data.
# ---------------------------------------------------------------------------------------------


def test_dropout_acts_between_layers_in_train_mode_only():
    model = _rnn("lstm", dropout=0.5, hidden_dim=32)
    plain = _twin(model, dropout=0.0)
    x = torch.randn(4, 6, 3)
    with torch.no_grad():
        model.train()
        assert not torch.allclose(model(x), model(x))
        model.eval()
        torch.testing.assert_close(model(x), plain(x), atol=0, rtol=0)


def test_config_for_data_takes_channels_and_outputs():
    config = RNN.config_for_data(RNNConfig(pool="last"), DataSpec((50, 7), 4))
    assert (config.in_channels, config.out_dim, config.pool) == (7, 4, "last")
    with pytest.raises(ValueError, match=r"\(T, C\)"):
        RNN.config_for_data(RNNConfig(), DataSpec((7,), 4))


# ---------------------------------------------------------------------------------------------
# Bad input and bad configs: one sentence each.
# ---------------------------------------------------------------------------------------------


def test_wrong_feature_count_names_the_expected_channels():
    model = _rnn("gru")
    message = "gru expects sequences x of shape (B, T, 3); got (2, 7, 4)."
    with pytest.raises(ValueError, match=re.escape(message)):
        model(torch.randn(2, 7, 4))


@pytest.mark.parametrize(
    ("lengths", "error", "match"),
    [
        (torch.tensor([7, 9]), ValueError, "length of 9 but x has only T=7"),
        (torch.tensor([7, 0]), ValueError, "every length >= 1; got 0"),
        (torch.tensor([7, 5, 3]), ValueError, re.escape("lengths of shape (2,); got (3,)")),
        (torch.tensor([[7, 5]]), ValueError, re.escape("lengths of shape (2,); got (1, 2)")),
        (torch.tensor([7.0, 5.0]), TypeError, "integer tensor of shape \\(2,\\); got dtype"),
        ([7, 5], TypeError, "integer tensor of shape \\(2,\\); got list"),
    ],
)
def test_bad_lengths_are_one_sentence(lengths, error, match):
    model = _rnn("lstm", bidirectional=True)
    with pytest.raises(error, match=match) as excinfo:
        model(torch.randn(2, 7, 3), lengths)
    assert str(excinfo.value).startswith("lstm ")
    assert str(excinfo.value).count(". ") == 0, "one sentence"


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        ({"cell": "rnnn"}, "RNNConfig.cell must be 'rnn', 'gru' or 'lstm', got 'rnnn'"),
        ({"in_channels": 0}, "RNNConfig.in_channels must be at least 1, got 0"),
        ({"hidden_dim": 0}, "RNNConfig.hidden_dim must be at least 1"),
        ({"num_layers": 0}, "RNNConfig.num_layers must be at least 1"),
        ({"out_dim": -1}, "RNNConfig.out_dim must be at least 1, got -1"),
        ({"dropout": 1.0}, r"RNNConfig.dropout must be in \[0, 1\), got 1.0"),
        ({"dropout": 0.1, "num_layers": 1}, "needs num_layers >= 2; got dropout=0.1"),
        ({"pool": "max"}, "RNNConfig.pool must be 'none', 'last' or 'mean', got 'max'"),
    ],
)
def test_config_validation_names_the_field(overrides, match):
    with pytest.raises(ValueError, match=match):
        RNNConfig(**overrides)


def test_create_model_rejects_an_unknown_cell_by_type():
    with pytest.raises(TypeError, match="cell"):
        create_model("gru", cell="transformer")
