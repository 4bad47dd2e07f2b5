"""Text classification reports TF-IDF + logistic regression beside the network, same split."""

import numpy as np

from fieldguide.data.text import text_classification_data
from fieldguide.tasks.text_classification import TextClassificationTask


def _data(flip_test: bool = False):
    rng = np.random.default_rng(0)
    words = ["film", "plot", "cast", "scene", "story", "actor"]
    texts, y = [], []
    for i in range(120):
        label = i % 2
        cue = ["wonderful", "superb"][i % 3 % 2] if label == 0 else ["dreadful", "boring"][i % 2]
        filler = " ".join(rng.choice(words, 4))
        texts.append(f"{filler} {cue} {filler}")
        y.append(label)
    y = np.array(y)
    test = np.arange(100, 120)
    if flip_test:  # the test labels contradict the words: a real fit must score 0
        y[test] = 1 - y[test]
    splits = (np.arange(0, 80), np.arange(80, 100), test)
    return text_classification_data(texts, y, ["pos", "neg"], splits, name="t", description="d")


def test_tfidf_baseline_reads_the_words():
    task = TextClassificationTask(_data())
    base = task.baselines("test")
    assert base["TF-IDF + logistic regression"]["accuracy"] == 1.0
    assert base["majority class of train"]["accuracy"] == 0.5
    flipped = TextClassificationTask(_data(flip_test=True)).baselines("test")
    assert flipped["TF-IDF + logistic regression"]["accuracy"] == 0.0  # fitted on train only


def test_shortest_first_evaluation_equals_evaluation_in_order(monkeypatch):
    import torch

    task = TextClassificationTask(_data())
    torch.manual_seed(0)
    model = task.build_model("bert-tiny")
    sorted_first = task.predict(model, "train", batch_size=16)
    assert not torch.equal(task.eval_order("train"), torch.arange(80))  # a real reordering
    monkeypatch.setattr(task, "eval_order", lambda split: None)  # the split's own order
    in_order = task.predict(model, "train", batch_size=16)
    torch.testing.assert_close(sorted_first, in_order, rtol=1e-5, atol=1e-6)
