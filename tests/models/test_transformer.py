"""What defines the Transformers: causality, the KV cache, padding changes nothing, decoding."""

import math
from dataclasses import dataclass

import pytest
import torch
from safetensors.torch import load_file, save_file

from fieldguide import create_model
from fieldguide.models.base import DataSpec
from fieldguide.models.transformer import (
    BOS,
    EOS,
    PAD,
    EncoderConfig,
    EncoderDecoder,
    TransformerConfig,
    TransformerDecoder,
    TransformerEncoder,
    sample_next_token,
)

SMALL = {"hidden_dim": 32, "num_layers": 2, "num_heads": 4, "max_len": 40}
VARIANTS = [
    {},
    {"positions": "rotary", "mlp": "swiglu", "bias": False},
    {"tie_weights": False},
]


def _gpt(seed: int = 0, **overrides) -> TransformerDecoder:
    torch.manual_seed(seed)
    return create_model("gpt-tiny", **(SMALL | overrides)).eval()


def _bert(seed: int = 0, **overrides) -> TransformerEncoder:
    torch.manual_seed(seed)
    return create_model("bert-tiny", **(SMALL | overrides)).eval()


def _t5(seed: int = 0, **overrides) -> EncoderDecoder:
    torch.manual_seed(seed)
    return create_model("t5-tiny", **(SMALL | overrides)).eval()


def _ids(*shape: int, seed: int = 1, high: int = 256) -> torch.Tensor:
    torch.manual_seed(seed)
    return torch.randint(0, high, shape)


# ---------------------------------------------------------------------------------------------
# Sizes.
# ---------------------------------------------------------------------------------------------


def test_gpt2_small_has_gpt2s_parameter_count():
    with torch.device("meta"):  # the count needs shapes, not 124M initialised numbers
        model = create_model("gpt2-small")
    assert model.num_parameters() == 124_439_808
    c = model.config
    assert (c.vocab_size, c.max_len, c.hidden_dim, c.num_layers, c.num_heads) == (
        50257,
        1024,
        768,
        12,
        12,
    )
    assert not hasattr(model, "head"), "the output projection is the token embedding"


def test_gpt_mini_parameter_count():
    with torch.device("meta"):
        assert create_model("gpt-mini").num_parameters() == 10_845_312


def test_untied_weights_add_one_output_matrix():
    tied, untied = _gpt(), _gpt(tie_weights=False)
    assert untied.num_parameters() - tied.num_parameters() == 259 * 32


def test_tied_weights_survive_a_safetensors_round_trip(tmp_path):
    model = _gpt()
    x = _ids(2, 10)
    save_file(model.state_dict(), str(tmp_path / "m.safetensors"))  # no shared tensors in it
    fresh = _gpt(seed=5)
    fresh.load_state_dict(load_file(str(tmp_path / "m.safetensors")))
    with torch.no_grad():
        torch.testing.assert_close(fresh(x), model(x), atol=0, rtol=0)
        # and the output projection still is the (loaded) input embedding
        fresh.token_embedding.weight.mul_(2)
        assert not torch.allclose(fresh(x), model(x))


def test_no_weight_decay_names_the_embedding_tables():
    assert _gpt().no_weight_decay() == {"token_embedding.weight", "position_embedding.weight"}
    assert _t5().no_weight_decay() == {"token_embedding.weight"}  # rotary: no tables
    assert _t5(positions="learned").no_weight_decay() == {
        "token_embedding.weight",
        "encoder_positions.weight",
        "decoder_positions.weight",
    }


# ---------------------------------------------------------------------------------------------
# Decoder: causality, cache, streaming.
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("variant", VARIANTS)
def test_decoder_is_causal_changing_later_tokens_changes_no_earlier_logit(variant):
    model = _gpt(**variant)
    x = _ids(2, 12)
    with torch.no_grad():
        logits = model(x)
        for t in (0, 5, 10):
            other = x.clone()
            other[:, t + 1 :] = _ids(2, 11 - t, seed=t + 7)
            changed = model(other)
            torch.testing.assert_close(changed[:, : t + 1], logits[:, : t + 1], atol=0, rtol=0)
            assert (changed[:, t + 1 :] - logits[:, t + 1 :]).abs().max() > 1e-4


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("chunks", [[12], [4, 8], [5, 1, 6]])
def test_cached_prefill_in_chunks_equals_the_full_forward(variant, chunks):
    model = _gpt(**variant)
    x = _ids(3, 12)
    with torch.no_grad():
        full = model(x)
        state, outs, start = None, [], 0
        for size in chunks:
            logits, state = model._run(x[:, start : start + size], state)
            outs.append(logits)
            start += size
    torch.testing.assert_close(torch.cat(outs, 1), full, atol=1e-5, rtol=1e-5)
    assert state.length == 12


@pytest.mark.parametrize("variant", VARIANTS)
def test_step_equals_the_full_forward(variant):
    model = _gpt(**variant)
    x = _ids(3, 10)
    with torch.no_grad():
        full = model(x)
        state = model.initial_state(3)
        steps = []
        for x_t in x.unbind(1):
            logits, state = model.step(x_t, state)
            steps.append(logits)
    torch.testing.assert_close(torch.stack(steps, 1), full, atol=1e-5, rtol=1e-5)


def test_right_padding_changes_no_real_logit_of_a_decoder():
    model = _gpt()
    x = _ids(2, 9)
    padded = torch.cat([x, torch.full((2, 4), PAD)], 1)
    with torch.no_grad():
        torch.testing.assert_close(model(padded)[:, :9], model(x), atol=1e-6, rtol=1e-5)


def test_learned_positions_refuse_steps_past_max_len():
    model = _gpt(max_len=4)
    with pytest.raises(ValueError, match=r"gpt-tiny expects token ids x of at most max_len=4"):
        model(_ids(1, 5))
    state = model.initial_state(1)
    for _ in range(4):
        _, state = model.step(torch.tensor([1]), state)
    with pytest.raises(ValueError, match="max_len=4 tokens, but step needs 5"):
        model.step(torch.tensor([1]), state)
    with pytest.raises(ValueError, match="generate needs 6"):
        model.generate(_ids(1, 3), max_new_tokens=4)
    # Rotary positions have no table, so no limit.
    rotary = _gpt(max_len=4, positions="rotary")
    assert rotary(_ids(1, 9)).shape == (1, 9, 259)


# ---------------------------------------------------------------------------------------------
# Generation and sampling.
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("variant", VARIANTS)
def test_cached_greedy_generation_equals_uncached(variant):
    model = _gpt(**variant)
    prompt = _ids(3, 5)
    cached = model.generate(prompt, max_new_tokens=12, temperature=0.0)
    uncached = model.generate(prompt, max_new_tokens=12, temperature=0.0, use_cache=False)
    assert cached.shape == (3, 17)
    assert torch.equal(cached[:, :5], prompt)
    assert torch.equal(cached, uncached)
    # Greedy really is the argmax of the full forward at every step.
    with torch.no_grad():
        assert torch.equal(model(cached[:, :-1])[:, 4:].argmax(-1), cached[:, 5:])


def test_cached_sampling_equals_uncached_with_the_same_generator():
    model = _gpt()
    prompt = _ids(2, 3)
    runs = [
        model.generate(
            prompt,
            max_new_tokens=10,
            temperature=1.5,
            top_k=20,
            top_p=0.9,
            use_cache=use_cache,
            generator=torch.Generator().manual_seed(11),
        )
        for use_cache in (True, False, True)
    ]
    assert torch.equal(runs[0], runs[1]) and torch.equal(runs[0], runs[2])
    other = model.generate(prompt, 10, temperature=1.5, generator=torch.Generator().manual_seed(12))
    assert not torch.equal(other, runs[0])


def test_top_k_draws_only_the_k_most_likely_ids():
    logits = torch.tensor([[0.0, 3.0, 1.0, 2.5, -1.0, 2.0]]).expand(4000, 6)
    ids = sample_next_token(logits, top_k=3, generator=torch.Generator().manual_seed(0))
    assert set(ids.tolist()) == {1, 3, 5}


def test_top_p_draws_only_the_nucleus():
    probs = torch.tensor([0.05, 0.5, 0.15, 0.3])
    logits = probs.log()[None].expand(4000, 4)
    # Ranked: 0.5, 0.3 (cumulative 0.8 reaches 0.75), then 0.15 and 0.05 are cut.
    ids = sample_next_token(logits, top_p=0.75, generator=torch.Generator().manual_seed(0))
    assert set(ids.tolist()) == {1, 3}
    ids = sample_next_token(logits, top_p=0.9, generator=torch.Generator().manual_seed(0))
    assert set(ids.tolist()) == {1, 2, 3}
    # top_p smaller than the most likely id's share still keeps that id.
    ids = sample_next_token(logits, top_p=0.1, generator=torch.Generator().manual_seed(0))
    assert set(ids.tolist()) == {1}
    # top_k then top_p: the nucleus of the two best.
    ids = sample_next_token(logits, top_k=2, top_p=0.5, generator=torch.Generator().manual_seed(0))
    assert set(ids.tolist()) == {1}


def test_sampling_is_reproducible_with_a_generator_and_greedy_at_temperature_zero():
    logits = torch.randn(64, 50)
    first = sample_next_token(logits, generator=torch.Generator().manual_seed(3))
    again = sample_next_token(logits, generator=torch.Generator().manual_seed(3))
    other = sample_next_token(logits, generator=torch.Generator().manual_seed(4))
    assert torch.equal(first, again) and not torch.equal(first, other)
    assert torch.equal(sample_next_token(logits, temperature=0.0), logits.argmax(-1))
    for bad in ({"temperature": -1.0}, {"top_k": 0}, {"top_p": 0.0}, {"top_p": 1.5}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            sample_next_token(logits, **bad)


def test_stop_token_ends_each_sequence_and_generation():
    model = _gpt()
    prompt = _ids(2, 4)
    free = model.generate(prompt, max_new_tokens=10, temperature=0.0)
    stop = int(free[0, 6])  # the third new token of sequence 0
    stopped = model.generate(prompt, max_new_tokens=10, temperature=0.0, stop_token=stop)
    first_stop = [
        int((row[4:] == stop).nonzero()[0]) if (row[4:] == stop).any() else 10 for row in free
    ]
    assert stopped.shape[1] == 4 + min(max(first_stop) + 1, 10)
    for row, (f, s) in enumerate(zip(first_stop, stopped, strict=True)):
        n = min(f + 1, 10)
        assert torch.equal(s[: 4 + n], free[row, : 4 + n]), "the same tokens up to the stop"
        assert (s[4 + n :] == stop).all(), "a stopped sequence repeats the stop token"


# ---------------------------------------------------------------------------------------------
# Encoder: padding changes nothing real; heads.
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("head", ["sequence", "token", "mlm"])
@pytest.mark.parametrize("variant", VARIANTS)
def test_encoder_padding_changes_no_real_output(head, variant):
    model = _bert(head=head, out_dim=3, **variant)
    lengths = [9, 4, 6]
    x = _ids(3, 9)
    mask = torch.arange(9)[None, :] < torch.tensor(lengths)[:, None]
    other = x.masked_fill(~mask, PAD)
    other[1, 5] = 7  # whatever fills the padding
    with torch.no_grad():
        out = model(x, padding_mask=mask)
        torch.testing.assert_close(model(other, padding_mask=mask), out, atol=0, rtol=0)
        for b, n in enumerate(lengths):
            alone = model(x[b : b + 1, :n])[0]  # no padding at all
            if head == "sequence":
                torch.testing.assert_close(out[b], alone, atol=1e-5, rtol=1e-5)
            else:
                torch.testing.assert_close(out[b, :n], alone, atol=1e-5, rtol=1e-5)
                assert torch.equal(out[b, n:], torch.zeros_like(out[b, n:]))


def test_encoder_heads_and_their_shapes():
    x = _ids(2, 7)
    assert _bert(head="sequence", out_dim=5)(x).shape == (2, 5)
    assert _bert(head="token", out_dim=5)(x).shape == (2, 7, 5)
    mlm = _bert(head="mlm")
    assert mlm(x).shape == (2, 7, 259)
    assert not hasattr(mlm, "head"), "tied: the masked-LM logits use the token embedding"
    assert _bert(head="mlm", tie_weights=False).head.out_features == 259


def test_encoder_is_bidirectional():
    model = _bert(head="token")
    x = _ids(1, 8)
    other = x.clone()
    other[0, 7] = (x[0, 7] + 1) % 256
    with torch.no_grad():
        assert (model(other)[0, 0] - model(x)[0, 0]).abs().max() > 0


# ---------------------------------------------------------------------------------------------
# Encoder-decoder: teacher forcing equals stepping; greedy; beam search.
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("variant", VARIANTS)
def test_teacher_forced_logits_equal_step_by_step_decoding(variant):
    model = _t5(**variant)
    src, tgt = _ids(3, 11), _ids(3, 7, seed=2)
    src_mask = torch.arange(11)[None, :] < torch.tensor([[11], [5], [8]])
    with torch.no_grad():
        forced = model(src, tgt, src_padding_mask=src_mask)
        state = model.initial_state(src, src_mask)
        steps = []
        for y_t in tgt.unbind(1):
            logits, state = model.step(y_t, state)
            steps.append(logits)
    torch.testing.assert_close(torch.stack(steps, 1), forced, atol=1e-5, rtol=1e-5)


def test_source_padding_changes_no_decoder_logit():
    model = _t5()
    src, tgt = _ids(1, 6), _ids(1, 5, seed=2)
    padded = torch.cat([src, torch.full((1, 3), PAD)], 1)
    mask = torch.arange(9)[None, :] < 6
    with torch.no_grad():
        torch.testing.assert_close(
            model(padded, tgt, src_padding_mask=mask), model(src, tgt), atol=1e-5, rtol=1e-5
        )


def test_target_padding_mask_changes_no_real_logit():
    model = _t5()
    src, tgt = _ids(2, 6), _ids(2, 8, seed=2)
    mask = torch.arange(8)[None, :] < torch.tensor([[8], [5]])
    with torch.no_grad():
        out = model(src, tgt, tgt_padding_mask=mask)
        plain = model(src, tgt)
    torch.testing.assert_close(out[1, :5], plain[1, :5], atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(out[0], plain[0], atol=1e-6, rtol=1e-5)


def test_greedy_decodes_the_argmax_of_teacher_forcing():
    model = _t5()
    src = _ids(3, 6)
    out = model.greedy(src, max_len=8, bos=BOS, eos=EOS)
    assert out.shape[0] == 3 and out.shape[1] <= 9 and (out[:, 0] == BOS).all()
    with torch.no_grad():
        forced = model(src, out[:, :-1])
    expected = forced.argmax(-1)
    for b in range(3):
        row = out[b, 1:]
        n = int((row == EOS).nonzero()[0]) + 1 if (row == EOS).any() else len(row)
        assert torch.equal(row[:n], expected[b, :n])


def test_beam_search_of_width_one_is_greedy():
    model = _t5(positions="learned")
    src = _ids(4, 7)
    greedy = model.greedy(src, max_len=10, bos=BOS, eos=EOS)
    beam, scores = model.beam_search(src, beam_size=1, max_len=10, bos=BOS, eos=EOS)
    assert torch.equal(beam, greedy)
    assert scores.shape == (4,) and torch.isfinite(scores).all()


def test_beam_search_scores_are_length_normalised_log_probabilities():
    model = _t5()
    src = _ids(2, 5)
    ids, scores = model.beam_search(
        src, beam_size=3, max_len=6, bos=BOS, eos=EOS, length_penalty=0.7
    )
    with torch.no_grad():
        logp = model(src, ids[:, :-1]).log_softmax(-1).gather(-1, ids[:, 1:, None])[..., 0]
    for b in range(2):
        row = ids[b, 1:]
        n = int((row == EOS).nonzero()[0]) + 1 if (row == EOS).any() else len(row)
        expected = logp[b, :n].sum() / n**0.7
        assert scores[b].item() == pytest.approx(expected.item(), abs=1e-4)


@dataclass(frozen=True)
class _Prefix:
    """A scripted model's state: the target ids fed so far, (B, L)."""

    ids: torch.Tensor

    def select(self, index):
        return _Prefix(self.ids[index])


class _Scripted(EncoderDecoder):
    """An EncoderDecoder whose next-token probabilities are a table of the whole prefix.

    Tokens: 0 BOS, 1 EOS, 2 "a", 3 "b". A prefix missing from the table ends: EOS 0.97.
    """

    def __init__(self, table: dict[tuple[int, ...], list[float]]) -> None:
        super().__init__(TransformerConfig(vocab_size=4, hidden_dim=8, num_layers=1, num_heads=2))
        self.table = table

    def initial_state(self, src, src_padding_mask=None):
        return _Prefix(torch.empty(src.shape[0], 0, dtype=torch.long))

    def step(self, y_t, state):
        ids = torch.cat([state.ids, y_t[:, None]], 1)
        rows = [self.table.get(tuple(r), [0.0, 0.97, 0.015, 0.015]) for r in ids.tolist()]
        return torch.tensor(rows).clamp(min=1e-12).log(), _Prefix(ids)


def test_beam_search_finds_a_more_probable_sequence_than_greedy():
    # After BOS: a 0.6, b 0.4. After "a": a, b, EOS 1/3 each; after "b": EOS 0.9. Greedy
    # commits to "a" and ends at 0.6 / 3 = 0.2; the beam keeps "b" and finds "b EOS", 0.36.
    model = _Scripted(
        {
            (0,): [0.0, 0.0, 0.6, 0.4],
            (0, 2): [0.0, 1 / 3, 1 / 3, 1 / 3],
            (0, 3): [0.0, 0.9, 0.05, 0.05],
        }
    ).eval()
    src = torch.zeros(1, 3, dtype=torch.long)
    greedy = model.greedy(src, max_len=4, bos=0, eos=1)
    beam, score = model.beam_search(src, beam_size=2, max_len=4, bos=0, eos=1, length_penalty=0.0)
    assert greedy[0].tolist() == [0, 2, 1], "greedy takes the likelier first token (ties: EOS)"
    assert beam[0, :3].tolist() == [0, 3, 1] and (beam[0, 3:] == 1).all()
    assert score.item() == pytest.approx(math.log(0.4 * 0.9), abs=1e-5)
    assert score.item() > math.log(0.6 / 3)


def test_beam_search_keeps_a_finished_hypothesis_finished_when_beams_swap():
    # Step 2 leaves "a a" (0.49) in slot 0 and the finished "b EOS" (0.405) in slot 1; step 3
    # ranks "b EOS" first, so the hypotheses swap slots. "a a a" must still pay for its EOS
    # (0.1): its true score log(0.0245)/4 loses to log(0.405)/2 under length_penalty 1.
    model = _Scripted(
        {
            (0,): [0.0, 0.05, 0.5, 0.45],
            (0, 2): [0.0, 0.01, 0.98, 0.01],
            (0, 3): [0.0, 0.9, 0.05, 0.05],
            (0, 2, 2): [0.0, 0.2, 0.5, 0.3],
            (0, 2, 2, 2): [0.0, 0.1, 0.45, 0.45],
        }
    ).eval()
    src = torch.zeros(1, 3, dtype=torch.long)
    beam, score = model.beam_search(src, beam_size=2, max_len=4, bos=0, eos=1, length_penalty=1.0)
    assert beam[0, :3].tolist() == [0, 3, 1]
    assert (beam[0, 2:] == 1).all(), "a finished hypothesis repeats EOS"
    assert score.item() == pytest.approx(math.log(0.405) / 2, abs=1e-5)


# ---------------------------------------------------------------------------------------------
# Inputs refused, configs checked, configs for data.
# ---------------------------------------------------------------------------------------------


def test_token_ids_are_checked_at_the_boundary():
    model = _gpt()
    with pytest.raises(
        TypeError, match=r"gpt-tiny expects token ids x as an int64 tensor; got dtype torch.float32"
    ):
        model(torch.zeros(2, 3))
    with pytest.raises(
        ValueError, match=r"gpt-tiny expects token ids x in \[0, 259\); got ids from 0 to 259"
    ):
        model(torch.tensor([[0, 259]]))
    with pytest.raises(ValueError, match=r"x of shape \(B, T\); got \(3,\)"):
        model(torch.tensor([1, 2, 3]))
    with pytest.raises(ValueError, match=r"x_t of shape \(B,\); got \(1, 1\)"):
        model.step(torch.tensor([[1]]), model.initial_state(1))
    with pytest.raises(ValueError, match="state for batch size 2; got one for 1"):
        model.step(torch.tensor([1, 2]), model.initial_state(1))
    with pytest.raises(TypeError, match="padding_mask as a bool tensor of shape \\(2, 3\\)"):
        _bert()(_ids(2, 3), padding_mask=torch.ones(2, 3))
    with pytest.raises(ValueError, match="t5-tiny expects tgt_in with the batch size of src"):
        _t5()(_ids(2, 3), _ids(3, 3))
    with pytest.raises(ValueError, match="prompt_ids of at least one token"):
        _gpt().generate(torch.zeros(2, 0, dtype=torch.long), 3)
    with pytest.raises(ValueError, match="beam_size must be in"):
        _t5().beam_search(_ids(1, 3), beam_size=0, max_len=3)


@pytest.mark.parametrize(
    ("fields", "match"),
    [
        ({"hidden_dim": 30, "num_heads": 4}, "divisible by num_heads"),
        ({"hidden_dim": 12, "num_heads": 4, "positions": "rotary"}, "even head width"),
        ({"mlp": "relu"}, "mlp must be"),
        ({"positions": "sinusoidal"}, "positions must be"),
        ({"dropout": 1.0}, "dropout must be"),
        ({"num_layers": 0}, "num_layers must be at least 1"),
    ],
)
def test_config_checks(fields, match):
    with pytest.raises(ValueError, match=match):
        TransformerConfig(**fields)


def test_encoder_config_checks_its_head():
    with pytest.raises(ValueError, match="EncoderConfig.head must be"):
        EncoderConfig(head="cls")
    with pytest.raises(ValueError, match="out_dim must be at least 1"):
        EncoderConfig(out_dim=0)


LM8 = DataSpec((8,), 259, output="per-step", vocab_size=259)


def test_config_for_data_sizes_positions_and_outputs():
    config = TransformerDecoder.config_for_data(
        TransformerConfig(max_len=64), DataSpec((128,), 300, output="per-step", vocab_size=300)
    )
    assert (config.max_len, config.vocab_size) == (128, 300)
    assert TransformerDecoder.config_for_data(TransformerConfig(max_len=64), LM8).max_len == 64
    encoder = TransformerEncoder.config_for_data(
        EncoderConfig(head="token"), DataSpec((32,), 7, vocab_size=259)
    )
    assert (encoder.out_dim, encoder.vocab_size, encoder.head) == (7, 259, "sequence")
    tagger = TransformerEncoder.config_for_data(
        EncoderConfig(), DataSpec((32,), 5, output="per-step", vocab_size=259)
    )
    assert (tagger.head, tagger.out_dim) == ("token", 5)
    with pytest.raises(ValueError, match="gives one output per step; this task needs one per ex"):
        TransformerDecoder.config_for_data(TransformerConfig(), DataSpec((8,), 2, vocab_size=259))
    mlm = TransformerEncoder.config_for_data(
        EncoderConfig(head="mlm"), DataSpec((32,), 300, output="per-step", vocab_size=300)
    )
    assert mlm.vocab_size == 300
    with pytest.raises(ValueError, match=r"reads token-pairs whose examples have shape \(T,\)"):
        EncoderDecoder.config_for_data(TransformerConfig(), DataSpec((8, 3), 5, vocab_size=5))
