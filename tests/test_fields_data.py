import json
import math
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch

from fieldguide.data.base import stratified_split
from fieldguide.data.fields import (
    ADULT_CATEGORICAL,
    ADULT_DENSE,
    ADULT_FILE,
    adult_table,
    fit_fields,
    load_adult,
    load_fields_csv,
    transform_fields,
)
from fieldguide.data.hashing import stable_hash
from tests.widedeep import require_widedeep

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def adult():
    require_widedeep(ADULT_FILE)
    return load_adult()


@pytest.fixture(scope="module")
def table():
    require_widedeep(ADULT_FILE)
    return adult_table()


def assert_padding_last(ids):
    """Along the bag axis, once an id is 0 every later id is 0, and the first id is real."""
    real = ids != 0
    assert bool(real[..., 0].all())
    assert bool((real[..., 1:] <= real[..., :-1]).all())


# --- stable_hash -----------------------------------------------------------------------------


def test_stable_hash_is_the_same_in_another_process():
    values = [f"value-{i}" for i in range(200)] + ["", "Zürich", "native-country"]
    here = stable_hash(values, 97, salt="city").tolist()
    code = (
        "import json, sys; from fieldguide.data.hashing import stable_hash; "
        "print(json.dumps(stable_hash(json.loads(sys.stdin.read()), 97, salt='city').tolist()))"
    )
    for seed in ("0", "12345"):
        env = {**os.environ, "PYTHONHASHSEED": seed, "PYTHONPATH": str(REPO)}
        out = subprocess.run(
            [sys.executable, "-c", code],
            input=json.dumps(values),
            capture_output=True,
            text=True,
            env=env,
            cwd=REPO,
            check=True,
        )
        assert json.loads(out.stdout) == here
    # Pinned: a change of the hash would silently re-map every trained model's buckets.
    assert stable_hash(["a", "b", "c"], 1000).tolist() == [242, 68, 317]
    assert stable_hash(["Paris"], 1000, salt="city").tolist() == [757]
    assert all(0 <= v < 97 for v in here)


def test_stable_hash_is_roughly_uniform():
    buckets = 20
    ids = stable_hash([f"user-{i}" for i in range(10_000)], buckets, salt="user")
    counts = np.bincount(ids, minlength=buckets)
    expected = 10_000 / buckets
    chi_square = float(((counts - expected) ** 2 / expected).sum())
    assert chi_square < 50.0  # 19 degrees of freedom: the 99.95 % quantile is about 45


def test_stable_hash_salts_give_different_assignments():
    values = [f"v{i}" for i in range(2000)]
    a, b = stable_hash(values, 1000, salt="a"), stable_hash(values, 1000, salt="b")
    assert (a == b).mean() < 0.01
    assert (stable_hash(values, 1000, salt="a") == a).all()
    assert stable_hash([], 5).shape == (0,) and stable_hash(["x"], 1).tolist() == [0]


def test_stable_hash_refusals():
    with pytest.raises(ValueError, match="buckets of at least 1"):
        stable_hash(["a"], 0)
    with pytest.raises(TypeError, match=r"values\[1\] is int"):
        stable_hash(["a", 7], 10)
    with pytest.raises(TypeError, match="values as a sequence of str"):
        stable_hash("abc", 10)


# --- fit_fields and transform_fields -----------------------------------------------------------


def small_fit(**kwargs):
    columns = {"tags": ["a|b", "a", "a|c", "b|a"], "x": ["1", "2", "3", ""]}
    return fit_fields(columns, ["tags"], ["x"], min_count=2, **kwargs)


def test_fit_fields_vocabulary_buckets_and_bags():
    prep = small_fit()
    spec = prep["fields"]["tags"]
    # a in 4 rows, b in 2: ids 2 and 3; c is rare: the one hash bucket, id 4.
    assert spec["vocabulary"] == {"a": 2, "b": 3}
    assert (spec["missing_id"], spec["first_bucket"], spec["hash_buckets"]) == (1, 4, 1)
    assert spec["cardinality"] == 5 and prep["bag_length"] == 2
    notes = {}
    rows = {"tags": ["a|b", "a", "a|c", "b | a", "", "zzz", "a|b|c", "a|a|b"], "x": [""] * 8}
    dense, ids, weights = transform_fields(rows, prep, notes=notes)
    assert weights is None and ids.dtype == torch.int64 and ids.shape == (8, 1, 2)
    assert ids[:, 0].tolist() == [[2, 3], [2, 0], [2, 4], [3, 2], [1, 0], [4, 0], [2, 3], [2, 3]]
    assert notes["truncated_bags"] == {"tags": 1}
    assert notes["missing_cells"] == {"tags": 1} and notes["filled_with_median"] == {"x": 8}
    assert_padding_last(ids)


def test_dense_takes_the_train_median_then_standardises():
    prep = small_fit()
    stats = prep["dense"]["x"]
    # Train cells 1, 2, 3 and a missing one: median 2; imputed [1, 2, 3, 2].
    assert stats["median"] == 2.0 and stats["mean"] == 2.0
    assert stats["std"] == pytest.approx(math.sqrt(0.5))
    dense, _, _ = transform_fields({"tags": ["a", "a"], "x": ["", "3"]}, prep)
    assert dense.dtype == torch.float32
    assert dense[:, 0].tolist() == pytest.approx([0.0, 1 / math.sqrt(0.5)])


def test_unseen_values_hash_deterministically_into_buckets():
    rare = [f"r{i}" for i in range(30)]  # each once: 30 rare values, 30 buckets
    prep = fit_fields({"city": ["Paris"] * 20 + rare}, ["city"], [], min_count=5)
    spec = prep["fields"]["city"]
    assert spec["vocabulary"] == {"Paris": 2} and spec["hash_buckets"] == 30
    new = ["Atlantis", "El Dorado", "Paris"]
    _, ids, _ = transform_fields({"city": new}, prep)
    expected = (spec["first_bucket"] + stable_hash(new[:2], 30, salt="city")).tolist()
    assert ids[:2, 0, 0].tolist() == expected and ids[2, 0, 0] == 2
    assert all(spec["first_bucket"] <= i < spec["cardinality"] for i in expected)
    _, again, _ = transform_fields({"city": new}, json.loads(json.dumps(prep)))
    assert torch.equal(ids, again)


def test_missing_cells_get_the_missing_id_never_padding():
    prep = fit_fields({"c": ["x"] * 10 + ["y"] * 10}, ["c"], [], min_count=1)
    _, ids, _ = transform_fields({"c": ["", None, float("nan"), " ", "|", "x"]}, prep)
    assert ids[:, 0, 0].tolist() == [1, 1, 1, 1, 1, 2]
    assert_padding_last(ids)


def test_bags_given_as_lists_and_the_bag_cap():
    prep = fit_fields({"t": [["a", "b", "c"], ["a"]]}, ["t"], [], min_count=1, max_bag=2)
    assert prep["bag_length"] == 2
    _, ids, _ = transform_fields({"t": [["a", "b", "c"], "a|c", ["c"]]}, prep)
    assert ids[:, 0].tolist() == [[2, 3], [2, 4], [4, 0]]


def test_fit_and_transform_refusals():
    with pytest.raises(ValueError, match=r"needs columns \['y'\]"):
        fit_fields({"x": ["a"]}, ["y"], [])
    with pytest.raises(ValueError, match="at least one categorical column"):
        fit_fields({"x": ["1"]}, [], ["x"])
    with pytest.raises(ValueError, match=r"each column once.*\['x'\]"):
        fit_fields({"x": ["1"]}, ["x"], ["x"])
    with pytest.raises(ValueError, match="columns of one length"):
        fit_fields({"a": ["1", "2"], "b": ["1"]}, ["a"], ["b"])
    with pytest.raises(ValueError, match="min_count as an int of at least 1"):
        fit_fields({"a": ["1"]}, ["a"], [], min_count=0)
    prep = small_fit()
    with pytest.raises(ValueError, match=r"row 1 has 'abc' in dense column 'x'"):
        transform_fields({"tags": ["a", "b"], "x": ["1", "abc"]}, prep)
    with pytest.raises(ValueError, match="the dict fit_fields returns"):
        transform_fields({"tags": ["a"]}, {"vocabulary": {}})


# --- Adult -------------------------------------------------------------------------------------


def test_adult_sizes_and_positive_rate(adult):
    assert (len(adult.train), len(adult.val), len(adult.test)) == (34190, 7326, 7326)
    assert adult.classes == ["<=50K", ">50K"] and adult.num_classes == 2
    assert adult.field_names == list(ADULT_CATEGORICAL) and adult.dense_names == list(ADULT_DENSE)
    assert adult.input_shape == (6,) and adult.bag_length == 1 and adult.modality == "fields"
    y = torch.cat([adult.train.y, adult.val.y, adult.test.y])
    assert len(y) == 48842 and int(y.sum()) == 11687
    for split in (adult.train, adult.val, adult.test):  # stratified: 23.9 % in each
        assert split.y.float().mean().item() == pytest.approx(0.2393, abs=0.0005)
    assert "48,842 rows" in adult.description and "23.9 % positive" in adult.description
    assert adult.train.ids.shape == (34190, 8, 1) and adult.train.weights is None
    for f, rows in enumerate(adult.cardinalities):
        assert int(adult.train.ids[:, f].max()) < rows
    assert_padding_last(adult.train.ids)
    json.dumps(adult.preprocessing)  # JSON-friendly


def test_adult_table_has_the_same_disjoint_split(adult, table):
    index = [table[s]["index"] for s in ("train", "val", "test")]
    assert sum(map(len, index)) == 48842 and len(np.unique(np.concatenate(index))) == 48842
    assert [len(i) for i in index] == [len(adult.train), len(adult.val), len(adult.test)]
    for key in ("train", "val", "test"):
        assert np.array_equal(table[key]["y"], getattr(adult, key).y.numpy())
        # The same rows: standardised raw ages equal the fields view's dense age.
        stats = adult.preprocessing["dense"]["age"]
        age = (table[key]["x"][:, 0] - stats["mean"]) / stats["std"]
        assert np.allclose(age, getattr(adult, key).dense[:, 0].numpy(), atol=1e-5)
    assert table["feature_names"][0] == "age" and table["categorical_features"].sum() == 8
    assert table["categories"]["gender"] == ["Female", "Male"]
    workclass = table["feature_names"].index("workclass")
    raw = table["columns"]["workclass"][table["train"]["index"]]
    assert np.isnan(table["train"]["x"][raw == "?", workclass]).all()


def test_adult_statistics_come_from_train_only(adult, table):
    dense = adult.train.dense
    assert dense.mean(0).abs().max().item() < 1e-4
    assert dense.std(0).sub(1).abs().max().item() < 1e-3
    assert adult.val.dense.mean(0).abs().max().item() > 1e-4  # not refitted on validation
    train = table["train"]["index"]
    for f, name in enumerate(ADULT_CATEGORICAL):
        spec = adult.preprocessing["fields"][name]
        counts = Counter(v for v in table["columns"][name][train] if v != "?")
        assert set(spec["vocabulary"]) == {v for v, c in counts.items() if c >= 10}
        # A value of the validation rows that train lacks (or holds rarely) is hashed.
        val_raw = table["columns"][name][table["val"]["index"]]
        val_ids = adult.val.ids[:, f, 0].numpy()
        for value in set(val_raw) - set(spec["vocabulary"]) - {"?"}:
            assert (val_ids[val_raw == value] >= spec["first_bucket"]).all()
        assert (val_ids[val_raw == "?"] == 1).all()


def test_adult_transform_of_raw_train_rows_equals_the_train_tensors(adult, table):
    train = table["train"]["index"]
    columns = {name: values[train] for name, values in table["columns"].items()}
    prep = json.loads(json.dumps(adult.preprocessing))  # as saved in a run folder
    dense, ids, weights = transform_fields(columns, prep)
    assert torch.equal(ids, adult.train.ids)
    assert torch.equal(dense, adult.train.dense)
    assert weights is None


def test_adult_refuses_options_it_does_not_take():
    with pytest.raises(ValueError, match="labels_per_class=20"):
        load_adult(labels_per_class=20)
    with pytest.raises(TypeError, match="seed as an int"):
        load_adult(seed="0")


# --- CSV -------------------------------------------------------------------------------------


def write_csv(path, header, rows):
    lines = [",".join(header)] + [",".join(map(str, row)) for row in rows]
    path.write_text("\n".join(lines) + "\n")
    return path


def click_log(path, n=40):
    """A click log: a multi-hot tags column, a city, a numeric price with gaps, and click."""
    rows = []
    for i in range(n):
        tags = ["news|sport", "sport", "news|tech|sport", "", "tech"][i % 5]
        city = ["Paris", "Lyon", "Nice", f"town{i}"][i % 4]
        price = "" if i % 7 == 3 else str(10 + i % 9)
        rows.append([tags, city, price, int(i % 3 == 0)])
    return write_csv(path, ["tags", "city", "price", "click"], rows)


def test_csv_multi_hot_bags_and_columns(tmp_path):
    path = click_log(tmp_path / "Click Log.csv")
    data = load_fields_csv(path, min_count=2)
    assert data.name == "click-log" and data.classes == ["0", "1"]
    assert data.preprocessing["target"] == "click"  # guessed from the click names
    assert data.field_names == ["tags", "city"] and data.dense_names == ["price"]
    assert data.bag_length == 3 and len(data.train) + len(data.val) + len(data.test) == 40
    vocab = data.preprocessing["fields"]["tags"]["vocabulary"]
    assert set(vocab) == {"news", "sport", "tech"}
    ids = torch.cat([data.train.ids, data.val.ids, data.test.ids])
    assert_padding_last(ids)
    decoded = {tuple(row) for row in ids[:, 0].tolist()}
    expected = {
        (vocab["news"], vocab["sport"], 0),
        (vocab["sport"], 0, 0),
        (vocab["news"], vocab["tech"], vocab["sport"]),
        (1, 0, 0),  # the empty cell: the missing id
        (vocab["tech"], 0, 0),
    }
    assert decoded == expected
    city = data.preprocessing["fields"]["city"]
    assert set(city["vocabulary"]) == {"Paris", "Lyon", "Nice"}
    # The ten towns, each in one row, are rare: all ten rows hold hash-bucket ids.
    assert int((ids[:, 1, 0] >= city["first_bucket"]).sum()) == 10
    assert int(ids[:, 1, 0].max()) < data.cardinalities[1] == city["cardinality"]


def test_csv_transform_of_train_rows_equals_the_split(tmp_path):
    path = click_log(tmp_path / "log.csv")
    data = load_fields_csv(path, min_count=2, seed=3)
    text = path.read_text().splitlines()
    header, rows = text[0].split(","), [line.split(",") for line in text[1:]]
    y = np.array([int(r[3]) for r in rows])
    train, _, _ = stratified_split(y, 3, 0.15, 0.15, class_names=data.classes)
    columns = {name: [rows[i][j] for i in train] for j, name in enumerate(header)}
    notes = {}
    dense, ids, _ = transform_fields(columns, data.preprocessing, notes=notes)
    assert torch.equal(ids, data.train.ids) and torch.equal(dense, data.train.dense)
    assert torch.equal(torch.from_numpy(y[train]), data.train.y)
    assert notes["ignored_columns"] == ["click"]
    # Unseen towns hash into the city buckets, the same way each time.
    spec = data.preprocessing["fields"]["city"]
    _, new, _ = transform_fields(
        {"tags": ["news"], "city": ["Atlantis"], "price": [""]}, data.preprocessing
    )
    bucket = spec["first_bucket"] + int(stable_hash(["Atlantis"], spec["hash_buckets"], "city")[0])
    assert int(new[0, 1, 0]) == bucket


def test_csv_column_choice(tmp_path):
    path = write_csv(
        tmp_path / "t.csv",
        ["zip", "colour", "n", "empty", "label"],
        [[75000 + i % 4, ["red", "blue"][i % 2], i, "", ["no", "yes"][i % 2]] for i in range(30)],
    )
    auto = load_fields_csv(path)
    assert auto.field_names == ["colour"] and auto.dense_names == ["zip", "n"]
    assert auto.classes == ["no", "yes"]
    assert auto.preprocessing["dropped_empty_columns"] == ["empty"]
    codes = load_fields_csv(path, categorical=["zip", "colour"])  # the rest is dense
    assert codes.field_names == ["zip", "colour"] and codes.dense_names == ["n"]
    only = load_fields_csv(path, dense=["n"])
    assert only.field_names == ["zip", "colour"]


def test_csv_refusals(tmp_path):
    three = write_csv(tmp_path / "three.csv", ["c", "y"], [["a", k % 3] for k in range(30)])
    with pytest.raises(ValueError, match=r"3 classes \('0', '1', '2'\).*fieldguide train mlp"):
        load_fields_csv(three)
    path = click_log(tmp_path / "log.csv")
    with pytest.raises(ValueError, match=r"column 'cty' \(did you mean 'city'\?\).*'tags'"):
        load_fields_csv(path, categorical=["cty"])
    with pytest.raises(ValueError, match="the target 'click' among the dense columns"):
        load_fields_csv(path, dense=["click"])
    bad = path.read_text().splitlines()
    bad[4] = "tech,Paris,cheap,0"  # line 5 of the file
    bad_path = tmp_path / "bad.csv"
    bad_path.write_text("\n".join(bad) + "\n")
    with pytest.raises(ValueError, match=r"bad.csv row 5 has 'cheap' in dense column 'price'"):
        load_fields_csv(bad_path, categorical=["tags", "city"])
    with pytest.raises(ValueError, match=r"bad.csv row 5 has 'cheap' in numeric column 'price'"):
        load_fields_csv(bad_path)  # inferred: mostly numbers, so a typo
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with pytest.raises(ValueError, match="empty.csv is empty"):
        load_fields_csv(empty)
    numbers = write_csv(tmp_path / "num.csv", ["a", "y"], [[k, k % 2] for k in range(20)])
    with pytest.raises(ValueError, match="at least one categorical column.*train mlp"):
        load_fields_csv(numbers)
    with pytest.raises(ValueError, match="no single column named target"):
        load_fields_csv(write_csv(tmp_path / "n.csv", ["a", "b"], [["x", 1]] * 10))
