import dataclasses
import datetime
import re
import stat
from collections import Counter

import pytest
import torch

from fieldguide.data import Seq2SeqData, TextData, load_data, starters
from fieldguide.data.base import Seq2SeqSplit
from fieldguide.data.text import (
    DATE_STYLES,
    MONTHS,
    WEEKDAYS,
    load_dates,
    make_date_pairs,
    read_kjv,
    read_rotten_tomatoes,
)
from fieldguide.data.tokenizer import PAD, VOCAB_SIZE, ByteTokenizer
from tests.data.helpers import load_starter

TOKENIZER = ByteTokenizer()


# -- kjv --------------------------------------------------------------------------------------
def test_kjv_sizes_and_fixed_split():
    data = load_starter("kjv")
    assert isinstance(data, TextData) and data.modality == "text" and not data.synthetic
    assert data.name == "kjv" and data.vocab_size == VOCAB_SIZE
    sizes = data.split_sizes()
    assert sum(sizes.values()) == 4_298_239
    # last 10 % test, the 5 % before it validation, rounded
    assert sizes == {"train": 3_653_503, "val": 214_912, "test": 429_824}
    assert data.train.dtype == torch.int64 and data.train.ndim == 1
    assert TOKENIZER.decode(data.train[:80]).startswith(
        "\nGenesis 1\n\n  1 In the beginning God created the heaven and the earth."
    )
    assert TOKENIZER.decode(data.test[-30:]).endswith("be with you all. Amen.\n")
    # The three parts are consecutive: their concatenation is the whole text.
    whole = torch.cat([data.train, data.val, data.test])
    assert TOKENIZER.decode(whole) == read_kjv()
    # The split does not depend on the seed or the fractions (a documented fixed cut).
    other = load_data("kjv", seed=3, val_fraction=0.2, test_fraction=0.3)
    assert other.split_sizes() == sizes


def test_kjv_missing_names_the_apt_command(monkeypatch):
    absent = dataclasses.replace(starters.STARTERS["kjv"], files=("/nonexistent/bible",))
    monkeypatch.setitem(starters.STARTERS, "kjv", absent)
    with pytest.raises(ValueError, match="install it with: apt-get install -y bible-kjv"):
        load_data("kjv")
    with pytest.raises(ValueError, match="needs bible-kjv, which is not installed"):
        read_kjv()


def fake_bible(tmp_path, monkeypatch, body):
    script = tmp_path / "bible"
    script.write_text("#!/bin/sh\n" + body + "\n")
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    entry = dataclasses.replace(starters.STARTERS["kjv"], files=(str(script),))
    monkeypatch.setitem(starters.STARTERS, "kjv", entry)


def test_kjv_program_failure_and_timeout_are_one_sentence(tmp_path, monkeypatch):
    fake_bible(tmp_path, monkeypatch, "echo 'cannot open data file' >&2; exit 3")
    with pytest.raises(ValueError, match="exited with code 3 \\(cannot open data file\\)"):
        read_kjv()
    fake_bible(tmp_path, monkeypatch, "sleep 5")
    with pytest.raises(ValueError, match="did not finish within 0.2 s"):
        read_kjv(timeout=0.2)


def test_text_data_checks_its_ids():
    ids = torch.arange(10)
    with pytest.raises(ValueError, match="expects val as int64 token ids of shape \\(N,\\)"):
        TextData("t", ids, ids.float(), ids, vocab_size=259, description="")
    with pytest.raises(ValueError, match="ids in \\[0, vocab_size=5\\); got ids 0..9"):
        TextData("t", ids, ids, ids, vocab_size=5, description="")
    with pytest.raises(ValueError, match="at least 2 tokens in test"):
        TextData("t", ids, ids, ids[:1], vocab_size=259, description="")


# -- rotten-tomatoes --------------------------------------------------------------------------
@pytest.fixture(scope="module")
def rotten_tomatoes():
    return load_starter("rotten-tomatoes")


def test_rotten_tomatoes_counts_and_padding(rotten_tomatoes):
    data = rotten_tomatoes
    assert data.modality == "text" and data.classes == ["fresh", "rotten"]
    assert data.input_shape == (256,) and not data.synthetic
    y = torch.cat([data.train.y, data.val.y, data.test.y])
    assert len(y) == 12_808 and torch.bincount(y).tolist() == [7_403, 5_405]
    assert (len(data.train), len(data.val), len(data.test)) == (8_966, 1_921, 1_921)
    assert data.preprocessing["truncated"] == 5
    rows = Counter()
    for split in (data.train, data.val, data.test):
        assert split.x.dtype == torch.int64 and split.x.shape[1] == 256
        assert split.lengths is not None and int(split.lengths.min()) >= 1
        real = torch.arange(256)[None, :] < split.lengths[:, None]
        assert bool((split.x[~real] == PAD).all()) and bool((split.x[real] < 256).all())
        triples = zip(split.x, split.lengths, split.y, strict=True)
        rows.update((tuple(r[:n].tolist()), int(c)) for r, n, c in triples)
    # The splits hold every snippet of the corpus exactly once (as often as it occurs), its
    # first 256 bytes, with its label.
    texts, labels = read_rotten_tomatoes()
    expected = Counter(
        (tuple(TOKENIZER.encode(t)[:256]), ["fresh", "rotten"].index(c))
        for t, c in zip(texts, labels, strict=True)
    )
    assert rows == expected
    # Stratified: each split keeps the class shares to within a snippet or two.
    for split in (data.val, data.test):
        assert abs(float(split.y.float().mean()) - 5_405 / 12_808) < 2e-3


def test_rotten_tomatoes_split_is_drawn_by_seed(rotten_tomatoes):
    again, other = load_data("rotten-tomatoes", seed=0), load_data("rotten-tomatoes", seed=1)
    assert torch.equal(again.test.x, rotten_tomatoes.test.x)
    assert not torch.equal(other.test.x, rotten_tomatoes.test.x)


# -- dates (synthetic) ------------------------------------------------------------------------
MONTH = {m.lower(): i + 1 for i, m in enumerate(MONTHS)} | {
    m[:3].lower(): i + 1 for i, m in enumerate(MONTHS)
}


def parse_date(source: str) -> datetime.date:
    """An independent reader of every source style, for checking the pairs."""
    if m := re.fullmatch(r"(\d{2})/(\d{2})/(\d{4})", source):  # month first
        return datetime.date(int(m[3]), int(m[1]), int(m[2]))
    if m := re.fullmatch(r"(\d{1,2})\.(\d{1,2})\.(\d{4})", source):  # day first
        return datetime.date(int(m[3]), int(m[2]), int(m[1]))
    weekday = None
    if m := re.fullmatch(r"([A-Z][a-z]+), (.*)", source):
        weekday, source = m[1], m[2]
    if m := re.fullmatch(r"([A-Za-z]+) (\d{1,2}),? (\d{4})", source):
        day = datetime.date(int(m[3]), MONTH[m[1].lower()], int(m[2]))
    elif m := re.fullmatch(r"(\d{1,2}) ([A-Za-z]+) (\d{4})", source):
        day = datetime.date(int(m[3]), MONTH[m[2].lower()], int(m[1]))
    else:
        raise AssertionError(f"unreadable source {source!r}")
    if weekday is not None:  # the weekday, in full or its first three letters, must be right
        assert WEEKDAYS[day.weekday()].startswith(weekday), source
    return day


def test_every_style_names_one_date():
    days = [datetime.date(2000, 1, 1) + datetime.timedelta(n) for n in range(366 + 365)]
    sources = [style(d) for d in days for style in DATE_STYLES.values()]
    assert len(set(sources)) == len(sources)  # no two (date, style) give the same string
    assert all(parse_date(style(d)) == d for d in days for style in DATE_STYLES.values())
    assert [style(datetime.date(1998, 3, 5)) for style in DATE_STYLES.values()] == [
        "March 5, 1998",
        "5 March 1998",
        "Thursday, March 5, 1998",
        "Thu, Mar 5, 1998",
        "05 MAR 1998",
        "03/05/1998",
        "5.3.1998",
        "march 5 1998",
    ]


def test_date_pairs_are_real_dates_and_the_target_follows_from_the_source():
    pairs = make_date_pairs(20_000, seed=0)
    assert len({s for s, _ in pairs}) == 20_000  # no source twice
    for source, target in pairs:
        day = datetime.date.fromisoformat(target)  # a valid calendar date
        assert parse_date(source) == day, source
        assert datetime.date(1900, 1, 1) <= day <= datetime.date(2099, 12, 31)
    # Leap days are among the dates, and the years span the range.
    assert any(t.endswith("-02-29") for _, t in pairs)
    assert {t[:2] for _, t in pairs} == {"19", "20"}


def test_date_pairs_are_deterministic_by_seed():
    assert make_date_pairs(50, seed=4) == make_date_pairs(50, seed=4)
    assert make_date_pairs(50, seed=4) != make_date_pairs(50, seed=5)
    with pytest.raises(ValueError, match="num_examples in \\[1, 584,392\\]"):
        make_date_pairs(0)


def test_dates_starter_is_synthetic_split_and_padded():
    data = load_data("dates", seed=2)
    assert isinstance(data, Seq2SeqData) and data.modality == "seq2seq" and data.synthetic
    assert "synthetic" in data.description and data.vocab_size == VOCAB_SIZE
    assert data.split_sizes() == {"train": 14_000, "val": 3_000, "test": 3_000}
    seen = set()
    for split in (data.train, data.val, data.test):
        assert split.tgt.shape[1] == 10 and split.src.shape[1] <= 29
        sources = [TOKENIZER.decode(row) for row in split.src]
        targets = [TOKENIZER.decode(row) for row in split.tgt]
        for s, t in zip(sources, targets, strict=True):
            assert parse_date(s).isoformat() == t
        assert not seen & set(sources)  # no source in two splits
        seen |= set(sources)
    # Padding is PAD after each row's last real id, never inside it.
    real = data.train.src != PAD
    assert bool((real.int().diff(dim=1) <= 0).all())
    again = load_dates(seed=2)
    assert torch.equal(again.test.src, data.test.src) and torch.equal(again.val.tgt, data.val.tgt)
    assert not torch.equal(load_dates(seed=3).test.src[:, :6], data.test.src[:, :6])


def test_seq2seq_data_checks_its_splits():
    ids = torch.zeros(4, 3, dtype=torch.int64)
    good = Seq2SeqSplit(ids, ids)
    with pytest.raises(ValueError, match="one target per source in val; got 4 sources and 2"):
        Seq2SeqData("d", good, Seq2SeqSplit(ids, ids[:2]), good, 259, "")
    with pytest.raises(ValueError, match="expects test.tgt as int64 ids of shape \\(N, length\\)"):
        Seq2SeqData("d", good, good, Seq2SeqSplit(ids, ids[0]), 259, "")
