import numpy as np
import pytest
import torch

from fieldguide.data import load_data
from fieldguide.data.tabular import _categorical, _numeric, load_csv
from fieldguide.train.config import OptionError


def _csv(tmp_path, text, name="table.csv"):
    path = tmp_path / name
    path.write_text(text)
    return path


def _table(n_per_class=10, classes=("no", "yes")):
    """A CSV with a numeric, a numeric-with-gaps and a categorical column, and a label."""
    lines = ["age,income,colour,label"]
    for k, cls in enumerate(classes):
        for i in range(n_per_class):
            income = "" if i == 3 else str(1000 * (i + 1) + k)
            colour = ["red", "green", "blue"][i % 3]
            lines.append(f"{20 + i + 10 * k},{income},{colour},{cls}")
    return "\n".join(lines) + "\n"


def _all_rows(data):
    x = torch.cat([data.train.x, data.val.x, data.test.x])
    y = torch.cat([data.train.y, data.val.y, data.test.y])
    return x, y


def test_csv_happy_path(tmp_path):
    data = load_data(str(_csv(tmp_path, _table(), name="Loans 2024.csv")))
    assert data.name == "loans-2024" and data.modality == "tabular"
    assert data.classes == ["no", "yes"]
    assert data.feature_names == ["age", "income", "colour=blue", "colour=green", "colour=red"]
    assert data.input_shape == (5,)
    assert (len(data.train), len(data.val), len(data.test)) == (14, 3, 3)
    x, y = _all_rows(data)
    assert x.dtype == torch.float32 and y.dtype == torch.int64
    assert not torch.isnan(x).any()
    # Numeric columns are z-scored with train statistics.
    assert torch.allclose(data.train.x[:, :2].mean(0), torch.zeros(2), atol=1e-5)
    assert torch.allclose(data.train.x[:, :2].std(0, correction=0), torch.ones(2), atol=1e-4)
    # One-hot columns hold exactly one 1 per row (every colour occurs in train here).
    onehot = x[:, 2:]
    assert torch.equal(onehot.sum(1), torch.ones(20))
    assert data.preprocessing["target"] == "label"
    assert set(data.preprocessing["numeric"]) == {"age", "income"}
    assert data.preprocessing["categorical"]["colour"] == ["blue", "green", "red"]


def test_missing_numeric_values_get_the_train_median(tmp_path):
    data = load_csv(_csv(tmp_path, _table()), seed=1)
    stats = data.preprocessing["numeric"]["income"]
    x, _ = _all_rows(data)
    income = x[:, 1].double() * stats["std"] + stats["mean"]
    age_stats = data.preprocessing["numeric"]["age"]
    age = (x[:, 0].double() * age_stats["std"] + age_stats["mean"]).round()
    gaps = (age == 23) | (age == 33)  # the rows written with an empty income
    assert gaps.sum() == 2
    assert torch.allclose(income[gaps], torch.full((2,), stats["median"], dtype=torch.float64))
    # The median is over train rows only: recompute it from the train rows that had a value.
    train_rows = len(data.train)
    seen = income[:train_rows][~gaps[:train_rows]]
    assert stats["median"] == pytest.approx(np.median(seen.numpy()))


def test_numeric_and_categorical_helpers_use_train_rows_only():
    values = ["1", "", "3", "100", "NA"]
    column, stats = _numeric(values, train=np.array([0, 1, 2]))
    assert stats["median"] == 2.0  # median of train values 1 and 3; 100 is not a train row
    assert column[1] == column[4] == pytest.approx((2.0 - stats["mean"]) / stats["std"])
    onehot, vocab = _categorical("c", ["a", "b", "a", "z", ""], train=np.array([0, 1, 2]))
    assert vocab == ["a", "b"]
    assert onehot.tolist() == [[1, 0], [0, 1], [1, 0], [0, 0], [0, 0]]  # unseen 'z' -> zeros


def test_target_argument_and_numeric_class_order(tmp_path):
    lines = ["f,grade,label"] + [f"{i},{[2, 10, 1][i % 3]},x{i % 2}" for i in range(60)]
    data = load_data(str(_csv(tmp_path, "\n".join(lines))), target="grade")
    assert data.classes == ["1", "2", "10"]  # numbers sort as numbers
    assert data.feature_names == ["f", "label=x0", "label=x1"]


def test_default_target_is_case_insensitive_and_bom_is_dropped(tmp_path):
    text = "\ufeffa,Class\n" + "\n".join(f"{i},{'ab'[i % 2]}" for i in range(20)) + "\n"
    path = tmp_path / "bom.csv"
    path.write_text(text, encoding="utf-8")
    data = load_data(str(path))
    assert data.classes == ["a", "b"] and data.feature_names == ["a"]


def test_trailing_comma_column_and_blank_lines_are_skipped(tmp_path):
    lines = ["x,y,label,"] + [f"{i},{i * i},{i % 2}," for i in range(20)]
    text = "\n".join(lines[:5]) + "\n\n,,,\n" + "\n".join(lines[5:]) + "\n"
    data = load_data(str(_csv(tmp_path, text)))
    assert data.feature_names == ["x", "y"]
    assert data.preprocessing["dropped_empty_columns"] == ["column_4"]


def test_missing_target_column_lists_the_columns(tmp_path):
    path = _csv(tmp_path, _table())
    match = (
        r"^target expects a column of CSV file .*'age'.*; got 'lable' \(did you mean 'label'\?\)"
    )
    with pytest.raises(OptionError, match=match):
        load_data(str(path), target="lable")


def test_no_default_target_lists_the_columns(tmp_path):
    path = _csv(tmp_path, "a,b\n1,2\n")
    match = r"no column named target, label or class; name the target with target, .*'a', 'b'"
    with pytest.raises(OptionError, match=match):
        load_data(str(path))
    path = _csv(tmp_path, "label,class,x\n1,2,3\n", name="two.csv")
    with pytest.raises(ValueError, match="several columns named target, label or class"):
        load_data(str(path))


def test_empty_file_and_header_only(tmp_path):
    with pytest.raises(ValueError, match="is empty"):
        load_data(str(_csv(tmp_path, "")))
    with pytest.raises(ValueError, match="has a header but no data rows"):
        load_data(str(_csv(tmp_path, "a,label\n\n", name="h.csv")))


def test_ragged_row_is_named(tmp_path):
    text = _table().splitlines()
    text[6] += ",extra"
    with pytest.raises(ValueError, match="row 7 has 5 fields but the header has 4"):
        load_data(str(_csv(tmp_path, "\n".join(text))))


def test_numeric_column_with_a_bad_cell_is_named(tmp_path):
    text = _table().splitlines()
    text[16] = "abc" + text[16][2:]
    with pytest.raises(ValueError, match="row 17 has 'abc' in numeric column 'age'"):
        load_data(str(_csv(tmp_path, "\n".join(text))))


def test_mostly_text_column_is_categorical(tmp_path):
    lines = ["size,label"] + [f"{['S', 'M', '3'][i % 3]},{i % 2}" for i in range(30)]
    data = load_data(str(_csv(tmp_path, "\n".join(lines))))
    assert data.feature_names == ["size=3", "size=M", "size=S"]


def test_class_with_too_few_rows_is_named(tmp_path):
    text = _table() + "30,5,red,maybe\n31,6,blue,maybe\n"
    with pytest.raises(ValueError, match="class 'maybe' has 2 samples"):
        load_data(str(_csv(tmp_path, text)))


def test_single_class_target(tmp_path):
    lines = ["a,label"] + [f"{i},same" for i in range(10)]
    with pytest.raises(ValueError, match=r"has only one class \('same'\)"):
        load_data(str(_csv(tmp_path, "\n".join(lines))))


def test_missing_target_value_is_named(tmp_path):
    text = _table().splitlines()
    text[4] = text[4].rsplit(",", 1)[0] + ","
    with pytest.raises(ValueError, match="row 5 has no value in target column 'label'"):
        load_data(str(_csv(tmp_path, "\n".join(text))))


def test_no_feature_columns(tmp_path):
    lines = ["label"] + [str(i % 2) for i in range(20)]
    with pytest.raises(ValueError, match="no feature columns besides target 'label'"):
        load_data(str(_csv(tmp_path, "\n".join(lines))))


def test_duplicated_column_names(tmp_path):
    with pytest.raises(ValueError, match=r"duplicated column names \['a'\]"):
        load_data(str(_csv(tmp_path, "a,a,label\n1,2,3\n")))


def test_identifier_like_text_column_is_refused(tmp_path):
    lines = ["name,x,label"] + [f"person{i},{i},{i % 2}" for i in range(300)]
    with pytest.raises(ValueError, match="column 'name' has 210 distinct text values"):
        load_data(str(_csv(tmp_path, "\n".join(lines))))


def test_csv_rejects_image_size(tmp_path):
    with pytest.raises(ValueError, match="image_size applies only to image folders"):
        load_data(str(_csv(tmp_path, _table())), image_size=8)


def test_missing_cells_are_counted_per_column(tmp_path):
    rows = ["1,NA,red", "2,,", "3,5,blue", ",7,", "5,?,red"] + [f"{i},{i},blue" for i in range(5)]
    text = "age,income,colour,label\n" + "".join(f"{r},{'ab'[i % 2]}\n" for i, r in enumerate(rows))
    data = load_csv(_csv(tmp_path, text), val_fraction=0.2, test_fraction=0.2)
    assert data.preprocessing["filled_with_median"] == {"age": 1, "income": 3}
    assert data.preprocessing["missing_categorical"] == {"colour": 2}
    assert data.preprocessing["numeric"]["income"]["filled"] == 3
    full = load_csv(_csv(tmp_path, _table().replace(",,", ",1,"), name="full.csv"))
    assert full.preprocessing["filled_with_median"] == {}
    assert full.preprocessing["missing_categorical"] == {}
