"""minilm: a post-LN BERT with published weights, its WordPiece tokenizer, HF parity."""

import os
from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F

from fieldguide.data.wordpiece import encode, retokenize
from fieldguide.interop import export_weights, load_weights
from fieldguide.layers.attention import TransformerBlock
from fieldguide.models.pretrained import MINILM, minilm_state
from fieldguide.models.registry import create_model
from fieldguide.models.transformer import EncoderConfig, TransformerEncoder


def require_minilm() -> None:
    """Skip without the carrier package on a user's machine; in CI, fail instead."""
    if MINILM.installed():
        return
    hint = f"the MiniLM weights are not installed; {MINILM.install}"
    if os.environ.get("CI") == "true":
        pytest.fail(f"{hint} (scripts/starter-data.sh installs it in CI)")
    pytest.skip(hint)


def require_transformers():
    """Hugging Face transformers, a test-only dependency: skip without it, never in CI."""
    try:
        import transformers
    except ImportError:
        if os.environ.get("CI") == "true":
            pytest.fail("transformers is missing; `pip install -e .[test]` installs it")
        pytest.skip("transformers is not installed (a test-only dependency)")
    return transformers


@pytest.fixture(scope="module")
def minilm():
    require_minilm()
    return create_model("minilm").eval()


# -- the post-LN block ------------------------------------------------------------------------
def test_post_norm_block_is_the_post_ln_formula():
    torch.manual_seed(0)
    block = TransformerBlock(16, 2, post_norm=True, norm_eps=1e-12).eval()
    for norm in (block.attn_norm, block.mlp_norm):  # non-trivial gains, so order matters
        torch.nn.init.normal_(norm.weight, 1.0, 0.3)
        torch.nn.init.normal_(norm.bias, 0.0, 0.3)
    x = torch.randn(2, 5, 16)
    h = block.attn_norm(x + block.attn(x)[0])
    expected = block.mlp_norm(h + block.mlp(h))
    torch.testing.assert_close(block(x)[0], expected, rtol=0, atol=0)
    pre = TransformerBlock(16, 2).eval()
    pre.load_state_dict(block.state_dict())
    assert not torch.allclose(pre(x)[0], expected, atol=1e-3)  # the order is what differs


def test_post_ln_and_segments_are_the_encoders_alone():
    from fieldguide.models.transformer import TransformerConfig, TransformerDecoder

    with pytest.raises(ValueError, match="norm_position='pre' and token_types=0"):
        TransformerDecoder(TransformerConfig(hidden_dim=16, num_heads=2, norm_position="post"))
    with pytest.raises(ValueError, match="norm_position must be 'pre' or 'post'"):
        EncoderConfig(norm_position="middle")


# -- Hugging Face parity, through fieldguide.interop's BERT key map -----------------------------
def _tiny_bert(transformers):
    cfg = transformers.BertConfig(
        vocab_size=97,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        max_position_embeddings=40,
        type_vocab_size=2,
        layer_norm_eps=1e-12,
        hidden_act="gelu",
    )
    torch.manual_seed(3)
    hf = transformers.BertModel(cfg, add_pooling_layer=False).eval()
    for p in hf.parameters():  # random LayerNorm gains and biases too, not the ones/zeros init
        torch.nn.init.normal_(p, 0.0, 0.2)
    ours = TransformerEncoder(
        EncoderConfig(
            vocab_size=97,
            hidden_dim=32,
            num_layers=2,
            num_heads=4,
            mlp_ratio=2.0,
            max_len=40,
            norm_eps=1e-12,
            norm_position="post",
            token_types=2,
            tie_weights=False,
        )
    ).eval()
    return hf, ours


def test_hugging_face_bert_gives_our_token_states():
    transformers = require_transformers()
    hf, ours = _tiny_bert(transformers)
    report = load_weights(ours, hf.state_dict(), source="hf")
    assert report.kept == ("head.weight", "head.bias") and not report.unexpected
    ids = torch.randint(0, 97, (3, 11))
    mask = torch.ones(3, 11, dtype=torch.bool)
    mask[1, 7:] = False
    mask[2, 3:] = False
    with torch.no_grad():
        theirs = hf(input_ids=ids, attention_mask=mask.long()).last_hidden_state
        mine = ours.token_states(ids, mask)
    torch.testing.assert_close(mine[mask], theirs[mask], rtol=1e-5, atol=1e-5)
    # and the pooled features are the mean over real tokens of those states
    pooled = (theirs * mask[..., None]).sum(1) / mask.sum(1, keepdim=True)
    torch.testing.assert_close(ours.features(ids, mask), pooled, rtol=1e-5, atol=1e-5)


def test_bert_keys_round_trip_exactly():
    transformers = require_transformers()
    hf, ours = _tiny_bert(transformers)
    load_weights(ours, hf.state_dict(), source="hf")
    back = export_weights(ours, target="hf")
    assert set(back) == set(hf.state_dict())  # no head, no pooler: BertModel's keys exactly
    fresh = transformers.BertModel(hf.config, add_pooling_layer=False)
    fresh.load_state_dict(back, strict=True)
    for key, value in hf.state_dict().items():
        torch.testing.assert_close(fresh.state_dict()[key], value, rtol=0, atol=0)


def test_bert_state_with_other_layers_is_refused():
    transformers = require_transformers()
    hf, ours = _tiny_bert(transformers)
    one_layer = TransformerEncoder(replace(ours.config, num_layers=1))
    with pytest.raises(ValueError, match="with .*num_layers=2.* has .*num_layers=1"):
        load_weights(one_layer, hf.state_dict(), source="hf")
    state = dict(hf.state_dict())
    del state["encoder.layer.1.output.dense.weight"]
    with pytest.raises(
        ValueError, match=r"lacks 1 key\(s\) .*'encoder\.layer\.1\.output\.dense\.weight'"
    ):
        load_weights(ours, state, source="hf")


def test_the_published_file_loads_through_interop_with_its_pooler_ignored(minilm):
    scratch = create_model("minilm", pretrained=False)
    report = load_weights(scratch, minilm_state(), source="hf")
    assert report.loaded == 5 + 12 * 6 and report.missing == report.unexpected == ()
    assert set(report.ignored) == {
        "embeddings.position_ids",
        "pooler.dense.weight",
        "pooler.dense.bias",
    }
    assert report.kept == ("head.weight", "head.bias")
    own = minilm.state_dict()
    assert all(torch.equal(v, own[k]) for k, v in scratch.state_dict().items() if "head" not in k)


# -- the published model ----------------------------------------------------------------------
def test_minilm_gives_the_published_sentence_similarities(minilm):
    # sentence-transformers' documentation: all-MiniLM-L6-v2 scores these pairs 0.6660, 0.7553.
    pairs = [
        ("The weather is lovely today.", "It's so sunny outside!", 0.6660),
        ("A man is eating food.", "A man is eating a piece of bread.", 0.7553),
    ]
    for a, b, published in pairs:
        e = minilm.encode([a, b])
        assert abs(float(e[0] @ e[1]) - published) < 6e-5
    assert torch.allclose(e.norm(dim=1), torch.ones(2))


def test_minilm_embeddings_do_not_depend_on_batch_padding(minilm):
    texts = ["short", "a considerably longer sentence that needs many more word pieces"]
    together = minilm.encode(texts)
    alone = torch.cat([minilm.encode([t]) for t in texts])
    torch.testing.assert_close(together, alone, rtol=1e-5, atol=1e-5)


def test_minilm_keeps_the_published_sizes(minilm):
    assert minilm.num_parameters() == 22_713_216 - (384 * 384 + 384) + (384 * 2 + 2)
    with pytest.raises(ValueError, match="must keep the published sizes"):
        create_model("minilm", hidden_dim=192)
    with pytest.raises(ValueError, match="only with num_heads=12; got 6"):
        create_model("minilm", num_heads=6)  # the file cannot show it: refused, not wrong
    with pytest.raises(ValueError, match="only with norm_eps=1e-12"):
        create_model("minilm", norm_eps=1e-5)
    scratch = create_model("minilm", pretrained=False)  # any sizes without the weights
    assert not torch.equal(scratch.token_embedding.weight, minilm.token_embedding.weight)


def test_minilm_refuses_byte_tokens():
    require_minilm()
    from fieldguide.models.base import DataSpec
    from fieldguide.models.transformer import PretrainedEncoder

    config = create_model("minilm").config
    with pytest.raises(ValueError, match="30522-id WordPiece"):
        PretrainedEncoder.config_for_data(config, DataSpec((40,), 2, vocab_size=259))


# -- the tokenizer ----------------------------------------------------------------------------
def test_wordpiece_ids_lengths_and_cuts():
    require_minilm()
    ids, lengths, cut = encode(["Hello, World!", "the café is lovely " * 20], "minilm", 12)
    assert ids[0, :5].tolist() == [101, 7592, 1010, 2088, 999]  # [CLS] hello , world !
    assert ids[0, 5] == 102 and lengths.tolist() == [6, 12] and cut == 1
    assert ids[0, 6:].eq(0).all()  # [PAD] after the text
    assert ids[1, 0] == 101 and ids[1, 11] == 102  # a cut text still ends with [SEP]
    with pytest.raises(ValueError, match=r"max_len must be an integer in \[3, 512\]"):
        encode(["x"], "minilm", 1000)


def test_retokenize_keeps_labels_splits_and_records_the_tokenizer():
    require_minilm()
    from fieldguide.data.base import ClassificationData, Split
    from fieldguide.data.text import text_classification_data

    texts = ["good film", "bad film", "great", "awful acting", "fine", "dull"]
    y = torch.tensor([0, 1, 0, 1, 0, 1]).numpy()
    splits = tuple(torch.tensor(i).numpy() for i in ([0, 1, 2, 3], [4], [5]))
    data = text_classification_data(texts, y, ["pos", "neg"], splits, name="t", description="d")
    assert data.texts == {"train": texts[:4], "val": ["fine"], "test": ["dull"]}
    re = retokenize(data, "minilm")
    assert isinstance(re, ClassificationData) and isinstance(re.train, Split)
    assert torch.equal(re.train.y, data.train.y) and re.classes == data.classes
    assert re.preprocessing["tokenizer"] == "minilm" and re.preprocessing["vocab_size"] == 30522
    assert re.train.x.shape[1] == re.val.x.shape[1] == re.input_shape[0]
    want, lengths, _ = encode(texts[:4], "minilm")
    torch.testing.assert_close(re.train.x[:, : want.shape[1]], want)
    assert torch.equal(re.train.lengths, lengths)


def test_cosine_matches_functional_normalize(minilm):
    ids, lengths, _ = encode(["one sentence", "another one"], "minilm")
    mask = torch.arange(ids.shape[1])[None] < lengths[:, None]
    with torch.no_grad():
        direct = F.normalize(minilm.features(ids, mask), dim=-1)
    torch.testing.assert_close(minilm.encode(["one sentence", "another one"]), direct)


def test_a_minilm_run_on_a_text_folder_predicts_what_the_model_computes(tmp_path):
    require_minilm()
    from fieldguide.api import train
    from fieldguide.api.predict import load_run

    words = {"pos": ["a warm funny film", "superb acting"], "neg": ["dull plot", "awful film"]}
    for label, texts in words.items():
        (tmp_path / "reviews" / label).mkdir(parents=True)
        for i in range(10):
            text = f"{texts[i % 2]} number {i}"
            (tmp_path / "reviews" / label / f"{i}.txt").write_text(text)
    result = train(
        "minilm",
        str(tmp_path / "reviews"),
        runs_dir=tmp_path / "runs",
        progress="quiet",
        max_steps=2,
        batch_size=8,
    )
    run = load_run(result.run_dir)
    assert run.preprocessing["data"]["tokenizer"] == "minilm"
    new = ["what a warm and funny film", "an awful, dull plot"]
    predictions = run.predict(new)
    ids, lengths, _ = encode(new, "minilm")
    mask = torch.arange(ids.shape[1])[None] < lengths[:, None]
    with torch.no_grad():
        probs = run.model(ids, padding_mask=mask).softmax(-1)
    columns = predictions.columns
    got = [[row[columns.index(f"p({c})")] for c in ("neg", "pos")] for row in predictions.rows]
    torch.testing.assert_close(torch.tensor(got, dtype=torch.float32), probs, rtol=0, atol=1e-4)
