import pytest

from fieldguide.data import load_data


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"spec": 3}, TypeError, "spec as a str"),
        ({"seed": 1.5}, TypeError, "seed as an int"),
        ({"seed": True}, TypeError, "seed as an int"),
        ({"seed": -1}, ValueError, r"seed in \[0, 2\*\*32\)"),
        ({"val_fraction": "0.1"}, TypeError, "val_fraction as a float"),
        ({"val_fraction": 0.0}, ValueError, r"val_fraction in \(0, 1\)"),
        ({"test_fraction": 1.0}, ValueError, r"test_fraction in \(0, 1\)"),
        ({"val_fraction": 0.5, "test_fraction": 0.5}, ValueError, "below 1"),
        ({"target": 3}, TypeError, "target as a column name"),
        ({"image_size": 2.0}, TypeError, "image_size as an int"),
        ({"image_size": 0}, ValueError, "image_size of at least 1"),
    ],
)
def test_load_data_validates_arguments(kwargs, error, match):
    kwargs = {"spec": "digits", **kwargs}
    with pytest.raises(error, match=match):
        load_data(**kwargs)


def test_missing_paths_say_so(tmp_path):
    with pytest.raises(ValueError, match=r"data path '.*nothing' does not exist"):
        load_data(str(tmp_path / "nothing"))
    with pytest.raises(ValueError, match="data path 'table.csv' does not exist"):
        load_data("table.csv")


def test_other_file_types_are_refused(tmp_path):
    path = tmp_path / "table.tsv"
    path.write_text("a\tb\n")
    with pytest.raises(ValueError, match="is not a folder, a .csv, .txt or .npz file"):
        load_data(str(path))


def test_path_objects_are_accepted(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("a,label\n" + "\n".join(f"{i},{i % 2}" for i in range(20)))
    assert load_data(path).classes == ["0", "1"]
