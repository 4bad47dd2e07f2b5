"""Classical baselines as registered models (models/classical.py).

Each fitted model's torch forward must give what scikit-learn's own predictor gives on the same
rows; a run of one writes a run folder whose weights rebuild the same model; the loop's recipe
options are refused by name.
"""

import numpy as np
import pytest
import torch
from sklearn.datasets import load_diabetes, load_wine

from fieldguide.api.generate import load_run_model
from fieldguide.api.run import train
from fieldguide.data.base import ClassificationData, RegressionData, Split
from fieldguide.models import create_model, get_entry, list_models
from fieldguide.tasks.classification import ClassificationTask
from fieldguide.tasks.regression import RegressionTask

torch.set_num_threads(1)


def _splits(x, y, seed=0):
    order = np.random.default_rng(seed).permutation(len(x))
    n_val = n_test = len(x) // 5
    parts = {
        "test": order[:n_test],
        "val": order[n_test : n_test + n_val],
        "train": order[n_test + n_val :],
    }
    return {k: (torch.as_tensor(x[v], dtype=torch.float32), y[v]) for k, v in parts.items()}


def wine_task(classes=(0, 1, 2), drop_from_train=None):
    x, y = load_wine(return_X_y=True)
    keep = np.isin(y, classes)
    x, y = (x[keep] - x[keep].mean(0)) / x[keep].std(0), y[keep]
    y = np.searchsorted(np.array(classes), y)
    parts = _splits(x, y)
    if drop_from_train is not None:  # a class the training split never shows
        xt, yt = parts["train"]
        parts["train"] = (xt[yt != drop_from_train], yt[yt != drop_from_train])
    data = ClassificationData(
        name="wine",
        modality="tabular",
        train=Split(parts["train"][0], torch.as_tensor(parts["train"][1])),
        val=Split(parts["val"][0], torch.as_tensor(parts["val"][1])),
        test=Split(parts["test"][0], torch.as_tensor(parts["test"][1])),
        classes=[f"c{c}" for c in classes],
        input_shape=(x.shape[1],),
        description="scikit-learn wine",
    )
    return ClassificationTask(data)


def diabetes_task():
    x, y = load_diabetes(return_X_y=True)
    parts = _splits(x.astype(np.float32), y)
    data = RegressionData(
        name="diabetes",
        train=Split(parts["train"][0], torch.as_tensor(parts["train"][1], dtype=torch.float32)),
        val=Split(parts["val"][0], torch.as_tensor(parts["val"][1], dtype=torch.float32)),
        test=Split(parts["test"][0], torch.as_tensor(parts["test"][1], dtype=torch.float32)),
        target="progression",
        input_shape=(x.shape[1],),
        description="scikit-learn diabetes",
    )
    return RegressionTask(data)


def fitted(task, name, **overrides):
    model = task.build_model(name, **overrides)
    model.fit(task, seed=0)
    return model.eval()


def sklearn_estimator_of(task, model):
    """The scikit-learn estimator the model was fitted from, refitted identically."""
    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor

    c = model.config
    x = task.batch("train", torch.arange(task.split_size("train")))[0].double().numpy()
    y = task.batch("train", torch.arange(task.split_size("train")))[1].numpy()
    xv = task.batch("val", torch.arange(task.split_size("val")))[0].double().numpy()
    yv = task.batch("val", torch.arange(task.split_size("val")))[1].numpy()
    kind = (
        HistGradientBoostingRegressor
        if isinstance(task, RegressionTask)
        else (HistGradientBoostingClassifier)
    )
    return kind(
        max_iter=c.max_iter,
        learning_rate=c.learning_rate,
        max_leaf_nodes=c.max_leaf_nodes,
        min_samples_leaf=c.min_samples_leaf,
        early_stopping=True,
        n_iter_no_change=c.patience,
        scoring="loss",
        random_state=0,
    ).fit(x, y, X_val=xv, y_val=yv)


@pytest.mark.parametrize("classes", [(0, 1, 2), (0, 2)])
def test_gbdt_forward_gives_sklearns_probabilities(classes):
    task = wine_task(classes)
    model = fitted(task, "gbdt", min_samples_leaf=5)
    est = sklearn_estimator_of(task, model)
    x = task.batch("test", torch.arange(task.split_size("test")))[0]
    ours = model(x).softmax(-1).double().numpy()
    np.testing.assert_allclose(ours, est.predict_proba(x.double().numpy()), atol=1e-6)
    assert model.config.trees == sum(len(r) for r in est._predictors)


def test_gbdt_regression_gives_sklearns_predictions_and_missing_values_follow_the_split():
    task = diabetes_task()
    model = fitted(task, "gbdt")
    x = task.batch("test", torch.arange(task.split_size("test")))[0]
    from sklearn.ensemble import HistGradientBoostingRegressor

    c = model.config
    xt = task.batch("train", torch.arange(task.split_size("train")))
    xv = task.batch("val", torch.arange(task.split_size("val")))
    est = HistGradientBoostingRegressor(
        max_iter=c.max_iter, early_stopping=True, n_iter_no_change=c.patience, random_state=0
    ).fit(xt[0].double().numpy(), xt[1].numpy(), X_val=xv[0].double().numpy(), y_val=xv[1])
    np.testing.assert_allclose(model(x)[:, 0].numpy(), est.predict(x.double().numpy()), atol=1e-5)
    holes = x.clone()
    holes[::3, 2] = float("nan")  # missing cells go where the fitted split sends them
    np.testing.assert_allclose(
        model(holes)[:, 0].numpy(), est.predict(holes.double().numpy()), atol=1e-5
    )


def test_linear_gives_sklearns_logistic_regression_and_picks_c_on_validation():
    from sklearn.linear_model import LogisticRegression

    task = wine_task()
    model = fitted(task, "linear", C=0.1)
    xt, yt = task.batch("train", torch.arange(task.split_size("train")))
    est = LogisticRegression(C=0.1, max_iter=2000).fit(xt.double().numpy(), yt.numpy())
    x = task.batch("test", torch.arange(task.split_size("test")))[0]
    np.testing.assert_allclose(
        model(x).softmax(-1).double().numpy(), est.predict_proba(x.double().numpy()), atol=1e-5
    )
    notes = task.build_model("linear").fit(task)
    assert "chosen on validation" in notes[0]


def test_a_class_missing_from_training_gets_no_probability_but_finite_loss():
    task = wine_task(drop_from_train=1)
    for name in ("gbdt", "linear"):
        model = fitted(task, name, **({"min_samples_leaf": 5} if name == "gbdt" else {}))
        probs = task.predict(model, "test")
        assert probs.shape[1] == 3
        assert float(probs[:, 1].max()) < 1e-9
        assert np.isfinite(task.evaluate(model, "test")["test/loss"])


def test_knn_votes_equal_sklearns_neighbours():
    from sklearn.neighbors import KNeighborsClassifier

    task = wine_task()
    model = fitted(task, "knn", k=5)
    xt, yt = task.batch("train", torch.arange(task.split_size("train")))
    est = KNeighborsClassifier(5).fit(xt.numpy(), yt.numpy())
    x = task.batch("test", torch.arange(task.split_size("test")))[0]
    np.testing.assert_allclose(
        model(x).exp().clamp_min(0).numpy().round(6),
        np.maximum(est.predict_proba(x.numpy()), 1e-6).round(6),
    )


def test_classical_models_are_batch_independent_and_weights_rebuild_them():
    task = wine_task()
    x = task.batch("test", torch.arange(task.split_size("test")))[0]
    for name in ("gbdt", "linear", "knn"):
        model = fitted(task, name)
        whole = model(x)
        one_by_one = torch.cat([model(x[i : i + 1]) for i in range(len(x))])
        torch.testing.assert_close(whole, one_by_one)
        again = create_model(name, **vars(model.config))
        again.load_state_dict(model.state_dict())
        torch.testing.assert_close(again(x), whole)


def test_list_models_keeps_networks_apart_from_classical_baselines():
    assert "gbdt" not in list_models()
    assert {"gbdt", "linear", "knn", "tfidf-logreg", "seasonal-naive"} <= set(
        list_models("classical")
    )
    assert set(list_models(classical=True)) == set(list_models()) | set(list_models("classical"))
    assert get_entry("gbdt").family == "classical"


def _wine_csv(tmp_path):
    x, y = load_wine(return_X_y=True)
    lines = [",".join([*(f"f{i}" for i in range(x.shape[1])), "label"])]
    lines += [",".join([*(f"{v:g}" for v in row), f"w{c}"]) for row, c in zip(x, y, strict=True)]
    path = tmp_path / "wine.csv"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_a_gbdt_run_writes_a_run_folder_whose_model_predicts_as_scored(tmp_path):
    path = _wine_csv(tmp_path)
    result = train("gbdt", str(path), runs_dir=tmp_path / "runs", progress="quiet")
    run = result.run_dir
    for name in ("config.toml", "model.safetensors", "report.md", "preprocessing.json"):
        assert (run / name).is_file(), name
    report = (run / "report.md").read_text()
    assert "fitted in one pass" in report and "gradient-boosted trees (gbdt)" in report
    model = load_run_model(run)
    from fieldguide.api.predict import load_run

    loaded = load_run(run)
    prepared = loaded.prepare(str(path))
    logits = loaded.outputs(prepared)
    torch.testing.assert_close(logits, model(prepared.inputs["x"]))
    x, y = load_wine(return_X_y=True)
    assert float((logits.argmax(1).numpy() == y).mean()) > 0.9  # the whole file, mostly seen


def test_loop_options_resume_and_several_processes_are_refused_by_name(tmp_path):
    path = _wine_csv(tmp_path)
    with pytest.raises(ValueError, match="--epochs, --lr do not apply"):
        train("gbdt", str(path), runs_dir=tmp_path / "runs", epochs=3, lr=0.1, progress="quiet")
    with pytest.raises(ValueError, match="drop --nproc 2"):
        train("linear", str(path), runs_dir=tmp_path / "runs", nproc=2, progress="quiet")
    assert not (tmp_path / "runs").exists()  # refused before anything was written


def test_seasonal_naive_run_scores_exactly_the_seasonal_naive_baseline(tmp_path):
    result = train("seasonal-naive", "sunspots", runs_dir=tmp_path / "runs", progress="quiet")
    assert result.test_metrics["test/snaive_ratio"] == pytest.approx(1.0, abs=1e-6)


def _text_task():
    from fieldguide.data.text import text_classification_data
    from fieldguide.tasks.text_classification import TextClassificationTask

    rng = np.random.default_rng(0)
    good, bad, both = ["good", "great", "fine"], ["bad", "awful", "poor"], ["film", "plot", "cast"]
    texts, labels = [], []
    for _ in range(240):  # synthetic reviews: sentiment words with 20 % label noise
        label = int(rng.integers(2))
        words = list(rng.choice((good, bad)[label] + both, size=int(rng.integers(2, 7))))
        texts.append(" ".join(words))
        labels.append(label if rng.random() > 0.2 else 1 - label)
    order = np.arange(240)
    data = text_classification_data(
        texts,
        np.array(labels),
        ["pos", "neg"],
        (order[:160], order[160:200], order[200:]),
        name="synthetic-reviews",
        description="synthetic reviews",
    )
    return TextClassificationTask(data)


def test_tfidf_logreg_equals_sklearn_on_its_features_and_ignores_padding():
    from sklearn.linear_model import LogisticRegression

    task = _text_task()
    model = fitted(task, "tfidf-logreg", C=3.0, ngram_max=3)
    n = task.split_size("test")
    ids, mask, _ = task.batch("test", torch.arange(n))
    csr = model._csr(task, "test", model.keys, model.idf)
    train = model._csr(task, "train", model.keys, model.idf)
    est = LogisticRegression(C=3.0, max_iter=2000, random_state=0)
    est.fit(train, task.labels("train").numpy())
    ours = model(ids, padding_mask=mask).softmax(-1).double().numpy()
    np.testing.assert_allclose(ours, est.predict_proba(csr), atol=1e-5)
    assert np.allclose(np.asarray(csr.multiply(csr).sum(1)).ravel(), 1.0)  # unit rows
    padded = torch.cat([ids, torch.full((n, 9), 256)], 1)  # more padding changes nothing
    padded_mask = torch.cat([mask, torch.zeros(n, 9, dtype=torch.bool)], 1)
    torch.testing.assert_close(model(padded, padding_mask=padded_mask), model(ids, mask))


def test_tfidf_logreg_refuses_n_grams_that_overflow_its_keys():
    task = _text_task()
    with pytest.raises(ValueError, match="ngram_max=9"):
        task.build_model("tfidf-logreg", ngram_max=9)


def test_cross_validation_picks_linear_for_a_linear_rule_and_trees_for_xor():
    from fieldguide.models.classical import cross_validated_pick

    rng = np.random.default_rng(0)

    def task_of(x, y):
        parts = _splits(x, y)
        data = ClassificationData(
            name="synthetic",
            modality="tabular",
            **{k: Split(v[0], torch.as_tensor(v[1])) for k, v in parts.items()},
            classes=["a", "b"],
            input_shape=(x.shape[1],),
            description="synthetic",
            synthetic=True,
        )
        return ClassificationTask(data)

    x = rng.normal(size=(300, 8))
    linear_rule = (x @ rng.normal(size=8) + 0.3 * rng.normal(size=300) > 0).astype(int)
    pick, scores = cross_validated_pick(task_of(x, linear_rule))
    assert pick == "linear" and scores["linear"] > scores["gbdt"]
    xor = ((x[:, 0] > 0) ^ (x[:, 1] > 0)).astype(int)
    pick, scores = cross_validated_pick(task_of(x, xor))
    assert pick == "gbdt" and scores["gbdt"] > scores["linear"] + 0.2
    with pytest.raises(ValueError, match="candidate 'knn'"):
        cross_validated_pick(task_of(x, xor), ("gbdt", "knn"))


def test_spectral_embedding_is_orthonormal_sign_fixed_and_permutation_equivariant():
    from fieldguide.models.classical import spectral_embedding

    g = torch.Generator().manual_seed(0)
    n = 30
    edges = torch.randint(0, n, (2, 120), generator=g)
    weight = torch.rand(120, generator=g) + 0.1  # random weights: no symmetric nodes
    u = spectral_embedding(n, edges, weight, 8)
    torch.testing.assert_close(u.T @ u, torch.eye(8, dtype=torch.float64), atol=1e-8, rtol=0)
    assert bool((u.gather(0, u.abs().argmax(0, keepdim=True)) > 0).all())
    perm = torch.randperm(n, generator=g)
    inverse = torch.empty_like(perm)
    inverse[perm] = torch.arange(n)
    moved = spectral_embedding(n, inverse[edges], weight, 8)  # node i is now inverse[i]
    torch.testing.assert_close(moved[inverse], u, atol=1e-8, rtol=0)


def test_spectral_logreg_run_on_a_graph_equals_sklearn_on_its_features(tmp_path):
    from sklearn.linear_model import LogisticRegression

    from fieldguide.data import load_data
    from fieldguide.tasks import make_task

    task = make_task(load_data("karate"))
    model = fitted(task, "spectral-logreg", C=1.0, dim=4)
    g = task.graph
    weight = task.edge_weight if task.edge_weight.numel() else None
    feats = model.features(g.x, g.edge_index, weight).numpy()
    train_nodes = task.nodes["train"].numpy()
    est = LogisticRegression(C=1.0, max_iter=2000).fit(feats[train_nodes], g.y[train_nodes])
    ours = model(g.x, g.edge_index, weight).softmax(-1).double().numpy()
    np.testing.assert_allclose(ours, est.predict_proba(feats), atol=1e-6)
    result = train("spectral-logreg", "karate", runs_dir=tmp_path / "runs", progress="quiet")
    again = load_run_model(result.run_dir)  # its weights, rebuilt: it scores what the run did
    probs = task.predict(again, "test")
    assert (
        abs(
            float((probs.argmax(1) == task.labels("test")).float().mean())
            - result.test_metrics["test/accuracy"]
        )
        < 1e-6
    )


def test_spectral_logreg_refuses_fanouts_yet_is_the_baseline_of_a_sampled_gnn_run(tmp_path):
    from fieldguide.api.config import DataConfig

    with pytest.raises(ValueError, match="--fanouts"):
        train(
            "spectral-logreg",
            "karate",
            data_config=DataConfig(fanouts="5,5"),
            runs_dir=tmp_path / "r1",
            progress="quiet",
        )
    assert not (tmp_path / "r1").exists()
    result = train(
        "graphsage",
        "karate",
        data_config=DataConfig(fanouts="5,5"),
        runs_dir=tmp_path / "r2",
        progress="quiet",
        epochs=2,
    )
    assert "spectral embedding + logistic regression" in (result.run_dir / "report.md").read_text()
