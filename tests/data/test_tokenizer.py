import pytest
import torch

from fieldguide.data.tokenizer import BOS, EOS, PAD, VOCAB_SIZE, ByteTokenizer, pad_batch

TEXTS = ["In the beginning", "", "crème brûlée", "naïve — 東京 🎬", "a\nb\tc"]


def test_constants_follow_the_bytes():
    assert (PAD, BOS, EOS, VOCAB_SIZE) == (256, 257, 258, 259)
    tok = ByteTokenizer()
    assert (tok.pad, tok.bos, tok.eos, tok.vocab_size) == (PAD, BOS, EOS, VOCAB_SIZE)


@pytest.mark.parametrize("text", TEXTS)
def test_round_trip_including_non_ascii(text):
    tok = ByteTokenizer()
    ids = tok.encode(text)
    assert ids == list(text.encode("utf-8")) and all(0 <= i < 256 for i in ids)
    assert tok.decode(ids) == text
    wrapped = tok.encode(text, add_bos=True, add_eos=True)
    assert wrapped[0] == BOS and wrapped[-1] == EOS and wrapped[1:-1] == ids
    assert tok.decode(wrapped) == text  # specials are skipped
    assert tok.decode(torch.tensor(wrapped + [PAD, PAD])) == text
    assert tok.encode_tensor(text).tolist() == ids and tok.encode_tensor(text).dtype == torch.int64


def test_non_ascii_takes_several_bytes_and_bad_utf8_is_replaced():
    tok = ByteTokenizer()
    assert len(tok.encode("é")) == 2 and len(tok.encode("東")) == 3 and len(tok.encode("🎬")) == 4
    # A cut through a multi-byte character decodes to U+FFFD instead of failing.
    assert tok.decode(tok.encode("é")[:1] + tok.encode("a")) == "\ufffda"


def test_batch_encode_pads_and_counts():
    tok = ByteTokenizer()
    ids, lengths = tok.batch_encode(["ab", "é", ""], add_eos=True)
    assert ids.dtype == torch.int64 and ids.shape == (3, 3)
    assert ids.tolist() == [[97, 98, EOS], [0xC3, 0xA9, EOS], [EOS, PAD, PAD]]
    assert lengths.tolist() == [3, 3, 1]
    cut, cut_lengths = tok.batch_encode(["abcdef", "xy"], max_len=4, add_bos=True)
    assert cut.tolist() == [[BOS, 97, 98, 99], [BOS, 120, 121, PAD]]
    assert cut_lengths.tolist() == [4, 3]
    assert [tok.decode(row) for row in cut] == ["abc", "xy"]


def test_pad_batch_to_a_given_width():
    ids, lengths = pad_batch([[1, 2], [3]], width=4)
    assert ids.tolist() == [[1, 2, PAD, PAD], [3, PAD, PAD, PAD]] and lengths.tolist() == [2, 1]
    with pytest.raises(ValueError, match="row of 2 ids for width 1"):
        pad_batch([[1, 2]], width=1)


def test_bad_input_is_one_sentence():
    tok = ByteTokenizer()
    with pytest.raises(TypeError, match="expects text as a str; got bytes"):
        tok.encode(b"abc")
    with pytest.raises(ValueError, match=r"ids in \[0, 259\); got 300"):
        tok.decode([97, 300])
    with pytest.raises(ValueError, match="one sequence of ids, shape \\(T,\\); got \\(2, 2\\)"):
        tok.decode(torch.zeros(2, 2, dtype=torch.int64))
    with pytest.raises(TypeError, match="a list of texts; got one str"):
        tok.batch_encode("abc")
    with pytest.raises(ValueError, match="max_len >= 1; got 0"):
        tok.batch_encode(["abc"], max_len=0)
