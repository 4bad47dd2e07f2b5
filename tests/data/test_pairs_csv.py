"""A CSV of source and target text columns: seq2seq on byte tokens."""

import csv

import pytest
import torch

from fieldguide.api import train
from fieldguide.data import load_data
from fieldguide.data.base import Seq2SeqData
from fieldguide.data.pairs_csv import MAX_BYTES, find_pair
from fieldguide.data.text import make_date_pairs
from fieldguide.data.tokenizer import ByteTokenizer
from fieldguide.tasks import make_task
from fieldguide.tasks.seq2seq import Seq2SeqTask


def write_rows(path, header, rows):
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
    return str(path)


def synthetic_date_pairs(path, n=200, header=("source", "target")):
    """SYNTHETIC pairs from `make_date_pairs` (a date in one of 8 styles -> ISO), as a CSV."""
    return write_rows(path, header, make_date_pairs(n, seed=3))


def decoded(ids):
    tokenizer = ByteTokenizer()
    return [tokenizer.decode(row) for row in ids]


def all_pairs(data):
    return sorted(
        (s, t)
        for split in ("train", "val", "test")
        for s, t in zip(
            decoded(getattr(data, split).src), decoded(getattr(data, split).tgt), strict=True
        )
    )


def test_synthetic_date_pairs_round_trip_as_seq2seq(tmp_path):
    path = synthetic_date_pairs(tmp_path / "pairs.csv")
    data = load_data(path, seed=1)
    assert isinstance(data, Seq2SeqData) and data.name == "pairs"
    assert data.split_sizes() == {"train": 140, "val": 30, "test": 30}
    assert all_pairs(data) == sorted(make_date_pairs(200, seed=3))
    assert data.preprocessing["source_column"] == "source"
    assert data.preprocessing["truncated"] == {"source": 0, "target": 0}
    assert isinstance(make_task(data), Seq2SeqTask)
    sources = [set(decoded(getattr(data, s).src)) for s in ("train", "val", "test")]
    assert not (sources[0] & sources[1] or sources[0] & sources[2] or sources[1] & sources[2])
    # The same seed gives the same split; the task option keeps a table a table.
    assert torch.equal(load_data(path, seed=1).val.src, data.val.src)


@pytest.mark.parametrize(
    "header",
    [
        ("Input", "Output"),
        ("src", "tgt"),
        ("QUESTION", "answer"),
        ("prompt", "response"),
        ("answer", "question"),
    ],
)
def test_every_pair_of_names_is_found_in_either_order(tmp_path, header):
    data = load_data(synthetic_date_pairs(tmp_path / "p.csv", n=40, header=header))
    target = header[0] if header[0] == "answer" else header[1]
    assert data.preprocessing["target_column"] == target


def test_target_names_the_target_beside_one_other_text_column(tmp_path):
    path = synthetic_date_pairs(tmp_path / "dates.csv", n=40, header=("written", "iso"))
    data = load_data(path, target="iso")
    assert isinstance(data, Seq2SeqData) and data.preprocessing["source_column"] == "written"
    swapped = load_data(path, target="written")
    assert set(decoded(swapped.train.src)) <= {iso for _, iso in make_date_pairs(40, seed=3)}


def test_tables_and_labelled_texts_stay_what_they_were(tmp_path):
    # A text and its label (few distinct values) under a source/target header is text
    # classification; a numeric pair is a table; a label column beside a pair makes a table.
    texts = [[f"a text with words number {i}", "yes" if i % 2 else "no"] for i in range(40)]
    labelled = load_data(write_rows(tmp_path / "l.csv", ["source", "target"], texts))
    assert labelled.modality == "text"
    numbers = [[i, i % 3] for i in range(40)]
    assert load_data(write_rows(tmp_path / "n.csv", ["source", "target"], numbers)).modality == (
        "tabular"
    )
    header = ["input", "output", "label"]
    assert find_pair(header, [["a b", "c d", "x"]], None) is None
    # --task keeps its meaning: asked for classification, the tabular reader takes the dates
    # as 60 classes of one sample each.
    path = synthetic_date_pairs(tmp_path / "pairs.csv", n=60)
    with pytest.raises(ValueError, match=r"class '\d{4}-\d\d-\d\d' has 1 sample"):
        load_data(path, task="classification")


def test_long_cells_are_cut_and_counted(tmp_path):
    rows = [
        [f"question {i} " + "é" * 200, f"answer {i}" + "x" * (300 if i < 3 else 0)]
        for i in range(20)
    ]
    data = load_data(write_rows(tmp_path / "long.csv", ["question", "answer"], rows))
    assert data.preprocessing["truncated"] == {"question": 20, "answer": 3}
    widths = [getattr(data, s).src.shape[1] for s in ("train", "val", "test")]
    assert max(widths) == MAX_BYTES
    make_task(data)  # the task takes the cut pairs


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        (
            [["a b", "c d"]] * 5 + [["", "e f"]] + [[f"g {i}", f"h {i}"] for i in range(10)],
            r"long\.csv row 7 has an empty cell in column 'input'",
        ),
        (
            [[f"g {i}", f"h {i}"] for i in range(10)] + [["a b", ""]],
            r"row 12 has an empty cell in column 'output'",
        ),
        (
            [[f"g {i}", f"h {i}"] for i in range(2)],
            r"long\.csv has 2 distinct sources in 'input', too few to split",
        ),
        (
            [["same", f"h {i}"] for i in range(30)],
            r"has 1 distinct source in 'input'",
        ),
    ],
)
def test_bad_pairs_are_one_sentence(tmp_path, rows, message):
    path = write_rows(tmp_path / "long.csv", ["input", "output"], rows)
    with pytest.raises(ValueError, match=message):
        load_data(path)


def test_a_third_column_is_refused_by_name(tmp_path):
    rows = [[f"g {i}", f"h {i}", f"note {i}"] for i in range(20)]
    path = write_rows(tmp_path / "three.csv", ["prompt", "response", "notes"], rows)
    with pytest.raises(ValueError, match=r"third column 'notes' beside the pair 'prompt'"):
        load_data(path)
    # An empty trailing column (a comma at the end of every line) is no third column.
    empty = write_rows(
        tmp_path / "trail.csv", ["prompt", "response", ""], [r[:2] + [""] for r in rows]
    )
    assert isinstance(load_data(empty), Seq2SeqData)


def test_season_is_refused_for_pairs(tmp_path):
    with pytest.raises(ValueError, match="holds text pairs, not a time series"):
        load_data(synthetic_date_pairs(tmp_path / "p.csv", n=40), season=7)


def test_t5_tiny_trains_on_a_pairs_csv(tmp_path):
    path = synthetic_date_pairs(tmp_path / "pairs.csv", n=80)
    result = train("t5-tiny", path, runs_dir=tmp_path / "runs", progress="quiet", max_steps=3)
    assert result.status == "finished" and "test/exact_match" in result.test_metrics
