"""A CSV of texts and their labels: text classification on byte tokens, majority baseline."""

import pytest
import torch

from fieldguide.api import train
from fieldguide.data import load_data
from fieldguide.data.base import ClassificationData
from fieldguide.data.text import read_rotten_tomatoes
from fieldguide.data.tokenizer import ByteTokenizer
from fieldguide.tasks import make_task
from fieldguide.tasks.text_classification import TextClassificationTask
from tests.data.helpers import require_starter, write_rows


def synthetic_reviews(path, n=60):
    """Synthetic snippets (named as such): the label is in the words."""
    good = ["a warm and funny film", "sharp, moving and well acted", "the best film this year"]
    bad = ["a dull and tired mess", "slow, flat and far too long", "the worst film this year"]
    rows = [
        [f"{(good if i % 2 else bad)[i % 3]} number {i}", "good" if i % 2 else "bad"]
        for i in range(n)
    ]
    return write_rows(path, ["text", "label"], rows)


def test_a_csv_of_texts_and_labels_is_text_classification(tmp_path):
    data = load_data(str(synthetic_reviews(tmp_path / "reviews.csv")))
    assert isinstance(data, ClassificationData) and data.modality == "text"
    assert data.classes == ["bad", "good"] and data.preprocessing["text_column"] == "text"
    assert isinstance(make_task(data), TextClassificationTask)
    first = data.train.x[0, : int(data.train.lengths[0])]
    assert ByteTokenizer().decode(first.tolist()).endswith(tuple(f"number {i}" for i in range(60)))


def test_the_real_reviews_encode_as_the_starter_does(tmp_path):
    require_starter("rotten-tomatoes")
    texts, labels = read_rotten_tomatoes()
    path = write_rows(
        tmp_path / "rt.csv", ["review", "label"], list(zip(texts[:500], labels[:500], strict=True))
    )
    data = load_data(str(path))
    ids, lengths = ByteTokenizer().batch_encode(texts[:500], 256)
    every = torch.cat([data.train.x, data.val.x, data.test.x])
    assert data.modality == "text" and every.shape[1] == ids.shape[1]
    assert sorted(map(tuple, every.tolist())) == sorted(map(tuple, ids.tolist()))


def test_empty_texts_are_one_sentence_and_mixed_tables_stay_tables(tmp_path):
    rows = (
        [["a long enough text here", "x"]] * 10
        + [["", "y"]]
        + [[f"more words in text {i}", "y"] for i in range(12)]
    )
    path = write_rows(tmp_path / "gap.csv", ["text", "label"], rows)
    with pytest.raises(ValueError, match="row 12 has an empty text in column 'text'"):
        load_data(str(path))
    table = write_rows(tmp_path / "table.csv", ["age", "label"], [[i, i % 2] for i in range(40)])
    assert load_data(str(table)).modality == "tabular"


def test_the_majority_class_is_the_baseline_beside_a_classifier(tmp_path):
    data = load_data(str(synthetic_reviews(tmp_path / "reviews.csv")))
    task = make_task(data)
    majority = int(torch.bincount(data.train.y).argmax())
    expected = (data.test.y == majority).float().mean().item()
    assert task.baselines("test")["majority class of train"]["accuracy"] == pytest.approx(expected)
    result = train(
        "bert-tiny",
        str(tmp_path / "reviews.csv"),
        runs_dir=tmp_path / "runs",
        progress="quiet",
        max_steps=3,
    )
    report = (result.run_dir / "report.md").read_text()
    assert "| majority class of train |" in report and "'text' is free text" in report
