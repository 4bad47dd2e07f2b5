"""Bad input per format, through the CLI: one sentence naming the file, exit 2, nothing written.

Each case writes a tiny, mostly valid dataset of one layout (`fieldguide data --help`) with one
flaw in it, then runs `fieldguide train`, `fieldguide data inspect` or `fieldguide predict` the
way a user would. The refusal must name the file (and, for a bad cell, its line and column) in
one line that ends with a full stop, and leave no run folder or predictions file behind.
"""

import re

import numpy as np
import pytest
from PIL import Image

from fieldguide.cli.main import main

TRAIN = ["--epochs", "1", "--progress", "plain"]


def write(path, content):
    """Write text or bytes to `path` (parents created) and return the path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    return path


def csv_text(header, rows):
    """Comma-separated text; cells hold no commas, so no quoting is needed."""
    return "\n".join(",".join(map(str, r)) for r in [header, *rows]) + "\n"


def refused(argv, capsys, *fragments):
    """Run the CLI and check its refusal: exit 2, one sentence holding every fragment."""
    code = main(argv)
    out, err = capsys.readouterr()
    assert code == 2, f"exit {code}; stdout {out!r}; stderr {err!r}"
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    message = lines[0].removeprefix("error: ")
    assert message.endswith("."), message
    assert not re.search(r"[.!?]\s+[A-Z]", message), f"more than one sentence: {message}"
    for fragment in fragments:
        assert str(fragment) in message, f"{fragment!r} not in: {message}"
    return message


def nothing_in(folder):
    return not folder.exists() or not any(folder.iterdir())


# ---------------------------------------------------------------------------------------------
# Bad files of each layout: a builder writes one under `root` and returns (path, fragments).
# ---------------------------------------------------------------------------------------------

DAYS = [f"2024-01-{d:02d}" for d in range(1, 31)]
REVIEWS = ["a warm and funny film", "a dull and tired mess"]


def _table(cells=lambda i: [i, i % 7, "big" if i % 2 else "small"]):
    return csv_text(["size", "weight", "label"], [cells(i) for i in range(30)])


def table_semicolons(root):
    path = write(root / "t.csv", _table().replace(",", ";"))
    return path, [path, "line 1", "separated by ';'", "comma-separated"]


def table_one_class(root):
    path = write(root / "t.csv", _table(lambda i: [i, i % 7, "big"]))
    return path, [path, "target column 'label'", "only one class ('big')"]


def table_text_in_numeric_column(root):
    text = _table(lambda i: ["oops" if i == 5 else i, i % 7, "big" if i % 2 else "small"])
    path = write(root / "t.csv", text)
    return path, [path, "row 7", "'oops'", "numeric column 'size'"]


def table_empty(root):
    path = write(root / "t.csv", "")
    return path, [path, "is empty"]


def table_header_only(root):
    path = write(root / "t.csv", "size,weight,label\n")
    return path, [path, "no data rows"]


def table_short_row(root):
    path = write(root / "t.csv", _table().replace("\n7,0,big\n", "\n7,0\n"))
    return path, [path, "row 9", "2 fields but the header has 3"]


def _series(times, values=None):
    values = values or list(range(len(times)))
    return csv_text(["date", "sales"], zip(times, values, strict=True))


def series_time_goes_back(root):
    path = write(root / "s.csv", _series(DAYS[:10] + [DAYS[4]] + DAYS[11:]))
    return path, [path, "row 12", "'2024-01-05'", "not after row 11", "'date'"]


def series_repeated_time(root):
    path = write(root / "s.csv", _series(DAYS[:10] + [DAYS[9]] + DAYS[11:]))
    return path, [path, "row 12", "'2024-01-10'", "not after row 11"]


def series_text_value(root):
    path = write(root / "s.csv", _series(DAYS, [*range(7), "abc", *range(8, 30)]))
    return path, [path, "row 9", "'abc'", "value column 'sales'"]


def series_too_short(root):
    path = write(root / "s.csv", _series(DAYS[:4]))
    return path, [path.name, "too few", "horizon"]


def _reviews(text=lambda i: f"{REVIEWS[i % 2]} take {i}", label=lambda i: ("good", "bad")[i % 2]):
    return csv_text(["text", "label"], [[text(i), label(i)] for i in range(30)])


def text_csv_empty_text(root):
    path = write(root / "x.csv", _reviews(text=lambda i: "" if i == 3 else f"{REVIEWS[i % 2]} {i}"))
    return path, [path, "row 5", "empty text in column 'text'"]


def text_csv_not_utf8(root):
    path = write(root / "x.csv", _reviews().encode().replace(b"take 4", b"take \xff4"))
    return path, [path, "line 6", "not UTF-8", "0xff"]


def text_csv_one_class(root):
    path = write(root / "x.csv", _reviews(label=lambda i: "good"))
    return path, [path, "only one class ('good')"]


def _text_folder(folder, classes=("pos", "neg")):
    for name in classes:
        for i in range(8):
            write(folder / name / f"{i}.txt", f"some {name} words, number {i}")
    return folder


def text_folder_not_utf8(root):
    folder = _text_folder(root / "texts")
    bad = write(folder / "neg" / "bad.txt", b"caf\xe9 in latin-1")
    return folder, [bad, "not UTF-8", "0xe9", "line 1"]


def text_folder_one_class(root):
    folder = _text_folder(root / "texts", classes=("pos",))
    return folder, [folder, "at least 2 class sub-folders", "('pos')"]


def text_folder_empty_file(root):
    folder = _text_folder(root / "texts")
    empty = write(folder / "pos" / "empty.txt", "")
    return folder, [empty, "is empty"]


def _pairs():
    rows = [[day, f"January {i + 1} 2024"] for i, day in enumerate(DAYS)]  # no comma: no quoting
    return csv_text(["source", "target"], rows)


def pairs_empty_target(root):
    path = write(root / "p.csv", _pairs().replace("January 5 2024", ""))
    return path, [path, "row 6", "empty cell in column 'target'"]


def pairs_row_without_target(root):
    path = write(root / "p.csv", _pairs().replace(",January 5 2024", ""))
    return path, [path, "row 6", "1 fields but the header has 2"]


def pairs_empty_source(root):
    path = write(root / "p.csv", _pairs().replace("2024-01-06,", ","))
    return path, [path, "row 7", "empty cell in column 'source'"]


def _sequence_folder(folder):
    for name in ("slow", "fast"):
        for i in range(8):
            steps = [[round(np.sin(t / 3), 4), t / 10] for t in range(8)]
            write(folder / name / f"{i}.csv", csv_text(["wave", "noise"], steps))
    return folder


def sequences_ragged_rows(root):
    folder = _sequence_folder(root / "seqs")
    bad = write(folder / "slow" / "bad.csv", "wave,noise\n1,2\n3\n4,5\n")
    return folder, [bad, "row 3", "1 fields but the header has 2"]


def sequences_other_channels(root):
    folder = _sequence_folder(root / "seqs")
    bad = write(folder / "slow" / "bad.csv", "noise,wave\n1,2\n3,4\n")
    return folder, [bad, "['noise', 'wave']", "['wave', 'noise']", "same header"]


def sequences_text_cell(root):
    folder = _sequence_folder(root / "seqs")
    bad = write(folder / "slow" / "bad.csv", "wave,noise\n1,2\n3,abc\n")
    return folder, [bad, "row 3", "'abc'", "column 'noise'"]


def _npz(path, **arrays):
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, **arrays)
    return path


def npz_pickled_objects(root):
    ragged = np.empty(2, dtype=object)
    ragged[:] = [np.zeros((3, 2)), np.zeros((4, 2))]
    path = _npz(root / "s.npz", x=ragged, y=np.array([0, 1]))
    return path, [path, "'x'", "object array", "pickle is refused"]


def npz_fewer_labels(root):
    path = _npz(root / "s.npz", x=np.zeros((10, 5, 2)), y=np.arange(8) % 2)
    return path, [path, "y of shape (8,)", "10 sequences"]


def npz_lengths_past_t(root):
    lengths = np.array([5] * 9 + [9])
    path = _npz(root / "s.npz", x=np.zeros((10, 5, 2)), lengths=lengths, y=np.arange(10) % 2)
    return path, [path, "up to 9", "at most T=5"]


def _graph(folder, edges=True, extra_edge=None):
    nodes = [[i, i / 10, "a" if i % 2 else "b"] for i in range(10)]
    write(folder / "nodes.csv", csv_text(["id", "degree", "label"], nodes))
    if edges:
        pairs = [[i, (i + 1) % 10] for i in range(10)] + ([extra_edge] if extra_edge else [])
        write(folder / "edges.csv", csv_text(["source", "target"], pairs))
    return folder


def graph_unknown_node(root):
    folder = _graph(root / "graph", extra_edge=[3, 99])
    return folder, [folder / "edges.csv", "line 12", "target '99'", "not an id in nodes.csv"]


def graph_without_edges(root):
    folder = _graph(root / "graph", edges=False)
    return folder, [folder, "no edges.csv", "source, target"]


TRAIN_CASES = [
    table_semicolons,
    table_one_class,
    table_text_in_numeric_column,
    table_empty,
    table_header_only,
    table_short_row,
    series_time_goes_back,
    series_repeated_time,
    series_text_value,
    series_too_short,
    text_csv_empty_text,
    text_csv_not_utf8,
    text_csv_one_class,
    text_folder_not_utf8,
    text_folder_one_class,
    text_folder_empty_file,
    pairs_empty_target,
    pairs_row_without_target,
    pairs_empty_source,
    sequences_ragged_rows,
    sequences_other_channels,
    sequences_text_cell,
    npz_pickled_objects,
    npz_fewer_labels,
    npz_lengths_past_t,
    graph_unknown_node,
    graph_without_edges,
]


@pytest.mark.parametrize("case", TRAIN_CASES, ids=lambda case: case.__name__)
def test_train_refuses_bad_input_in_one_sentence_and_writes_nothing(case, tmp_path, capsys):
    path, fragments = case(tmp_path / "data")
    runs = tmp_path / "runs"
    refused(["train", "--data", str(path), "--runs-dir", str(runs), *TRAIN], capsys, *fragments)
    assert nothing_in(runs)


# `data inspect` sniffs rather than reads everything, so it refuses what it reads: the CSV
# itself, an .npz's arrays, the files a graph folder needs.
INSPECT_CASES = [
    table_semicolons,
    table_empty,
    table_header_only,
    table_short_row,
    text_csv_not_utf8,
    pairs_row_without_target,
    npz_pickled_objects,
    graph_without_edges,
]


@pytest.mark.parametrize("case", INSPECT_CASES, ids=lambda case: case.__name__)
def test_inspect_refuses_what_it_cannot_read_in_one_sentence(case, tmp_path, capsys):
    path, fragments = case(tmp_path / "data")
    refused(["data", "inspect", str(path)], capsys, *fragments)


# ---------------------------------------------------------------------------------------------
# predict: inputs that do not match the run, refused before any predictions file is written.
# ---------------------------------------------------------------------------------------------


def _train_run(root, data, *model):
    runs = root / "runs"
    args = ["train", *model, "--data", str(data), "--runs-dir", str(runs), *TRAIN, "--quiet"]
    assert main(args) == 0
    (run,) = [p for p in runs.iterdir() if p.is_dir()]
    return run


@pytest.fixture(scope="module")
def table_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("table")
    return _train_run(root, write(root / "t.csv", _table()), "mlp")  # auto would fit trees


@pytest.fixture(scope="module")
def image_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("images")
    for name, level in (("dark", 40), ("light", 200)):  # synthetic grey 8x8 squares
        (root / "img" / name).mkdir(parents=True)
        for i in range(8):
            pixels = np.full((8, 8), level + i, dtype=np.uint8)
            Image.fromarray(pixels, mode="L").save(root / "img" / name / f"{i}.png")
    return _train_run(root, root / "img")


@pytest.fixture(scope="module")
def sequence_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("sequences")
    return _train_run(root, _sequence_folder(root / "seqs"))


def _predict_refused(run, data, capsys, *fragments):
    before = sorted(p.relative_to(run) for p in run.rglob("*"))
    out = data.parent / "predictions.csv"
    message = refused(["predict", str(run), "--data", str(data), "-o", str(out)], capsys, data)
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in: {message}"
    assert not out.exists() and sorted(p.relative_to(run) for p in run.rglob("*")) == before


def test_predict_refuses_a_table_with_other_columns(table_run, tmp_path, capsys):
    data = write(tmp_path / "new.csv", csv_text(["size", "colour"], [[1, "red"]]))
    _predict_refused(
        table_run, data, capsys, "missing ['weight']", "unknown ['colour']", "trained on"
    )


def test_predict_refuses_a_semicolon_table(table_run, tmp_path, capsys):
    data = write(tmp_path / "new.csv", "size;weight\n1;2\n")
    _predict_refused(table_run, data, capsys, "separated by ';'")


def test_predict_names_a_text_cell_in_a_numeric_column(table_run, tmp_path, capsys):
    data = write(tmp_path / "new.csv", csv_text(["size", "weight"], [[1, 2], ["lots", 3]]))
    _predict_refused(table_run, data, capsys, "row 3", "'lots'", "numeric column 'size'")


def test_predict_refuses_a_table_for_an_image_run(image_run, tmp_path, capsys):
    data = write(tmp_path / "new.csv", csv_text(["size", "weight"], [[1, 2]]))
    _predict_refused(image_run, data, capsys, "image file or a folder of images")


def test_predict_refuses_an_image_of_another_size(image_run, tmp_path, capsys):
    data = tmp_path / "big.png"
    Image.fromarray(np.zeros((16, 16), dtype=np.uint8), mode="L").save(data)
    _predict_refused(image_run, data, capsys, "(16, 16)", "8x8")


def test_predict_refuses_an_image_with_other_channels(image_run, tmp_path, capsys):
    data = tmp_path / "colour.png"
    Image.fromarray(np.zeros((8, 8, 3), dtype=np.uint8), mode="RGB").save(data)
    _predict_refused(image_run, data, capsys, "channel")


def test_predict_refuses_a_sequence_with_other_channels(sequence_run, tmp_path, capsys):
    data = write(tmp_path / "new.csv", csv_text(["wave", "noise", "extra"], [[1, 2, 3]]))
    _predict_refused(
        sequence_run, data, capsys, "['wave', 'noise', 'extra']", "trained on ['wave', 'noise']"
    )


def test_predict_names_a_ragged_row_of_a_sequence(sequence_run, tmp_path, capsys):
    data = write(tmp_path / "new.csv", "wave,noise\n1,2\n3\n")
    _predict_refused(sequence_run, data, capsys, "row 3", "1 fields")
