"""`predict` on every kind of the user's own data, from real examples of installed packages.

Each test writes a small real set in the user's layout (scikit-learn's linnerud table, the
sunspot series, Rotten Tomatoes snippets, spoken-digit MFCCs, Zachary's karate club; date
pairs are synthetic), trains a few steps, then checks three things: `predict` on a path equals
`predict` on the same inputs held in Python, predictions equal the model applied to the tensors
the training reader built (no train/predict skew), and inputs of the wrong kind are refused in
one sentence.
"""

import csv

import numpy as np
import pytest
import torch

import fieldguide
from fieldguide.api import train
from fieldguide.data import load_data
from fieldguide.data.base import stratified_split
from tests.data.helpers import write_rows


def _probabilities(predictions) -> torch.Tensor:
    return torch.tensor([row[1:] for row in predictions.rows], dtype=torch.float64)


def test_linnerud_regression_rows_from_a_file_or_from_python(tmp_path):
    from sklearn.datasets import load_linnerud

    d = load_linnerud()
    names = list(d.feature_names)  # Chins, Situps, Jumps
    rows = [[*x, y[0]] for x, y in zip(d.data.tolist(), d.target.tolist(), strict=True)]
    path = write_rows(tmp_path / "linnerud.csv", [*names, "target"], rows)  # target: weight
    result = train("mlp-small", str(path), runs_dir=tmp_path / "runs", progress="quiet", epochs=2)
    run = fieldguide.load_run(result.run_dir)
    assert run.task == "regression"
    from_file = run.predict(path)
    columns = {name: [r[i] for r in rows] for i, name in enumerate(names)}
    from_python = run.predict(columns)
    records = run.predict([dict(zip(names, r[:3], strict=True)) for r in rows])
    assert from_python.id_name == "index" and from_python.ids == list(range(20))
    assert from_python.rows == from_file.rows == records.rows
    # The training reader's tensors through the model, mapped back with the training target.
    data = load_data(str(path))
    train_rows = stratified_split(20, 0, 0.15, 0.15)[0]
    with torch.no_grad():
        z = run.model(data.train.x)[:, 0].double()
    y = data.train.y
    expected = z * y.std(correction=0) + y.mean()
    got = torch.tensor([from_file.rows[i][0] for i in train_rows], dtype=torch.float64)
    assert torch.allclose(got, expected, rtol=1e-5)
    with pytest.raises(ValueError, match=r"does not match the run's columns \(missing \['Jumps'\]"):
        run.predict({"Chins": [5], "Situps": [100]})
    with pytest.raises(ValueError, match="the rows given row 0 has 'many' in numeric column"):
        run.predict([{"Chins": "many", "Situps": 100, "Jumps": 50}])


def test_sunspot_series_forecast_continues_the_years(tmp_path):
    from fieldguide.data.series import read_csv_columns, starter_file

    table = read_csv_columns(starter_file("sunspots"))
    years = [f"{float(y):g}" for y in table["YEAR"]][-150:]
    values = table["SUNACTIVITY"][-150:]
    path = write_rows(
        tmp_path / "sunspots.csv", ["year", "sunspots"], list(zip(years, values, strict=True))
    )
    result = train(
        "tcn-small", str(path), runs_dir=tmp_path / "runs", progress="quiet", max_steps=2
    )
    run = fieldguide.load_run(result.run_dir)
    forecast = run.predict(path)
    horizon = run.preprocessing["task_state"]["horizon"]
    assert forecast.id_name == "year" and len(forecast.rows) == horizon
    assert forecast.ids == [f"{float(years[-1]) + h + 1:g}" for h in range(horizon)]
    with pytest.raises(ValueError, match="give data as a path; got list"):
        run.predict([[1.0], [2.0]])


@pytest.fixture(scope="module")
def snippets():
    """60 Rotten Tomatoes snippets, 30 per class, and 10 more not trained on."""
    from fieldguide.data.text import read_rotten_tomatoes

    texts, labels = read_rotten_tomatoes()
    fresh = [i for i, c in enumerate(labels) if c == "fresh"]
    rotten = [i for i, c in enumerate(labels) if c == "rotten"]
    picked = fresh[:30] + rotten[:30]
    held_out = fresh[30:35] + rotten[30:35]
    return [(texts[i], labels[i]) for i in picked], [texts[i] for i in held_out]


def test_text_folder_runs_read_new_txt_files_or_strings(tmp_path, snippets):
    train_set, held_out = snippets
    root = tmp_path / "reviews"
    for i, (text, label) in enumerate(train_set):
        (root / label).mkdir(parents=True, exist_ok=True)
        (root / label / f"{i:03d}.txt").write_text(text + "\n", encoding="utf-8")
    result = train(
        "bert-tiny", str(root), runs_dir=tmp_path / "runs", progress="quiet", max_steps=2
    )
    run = fieldguide.load_run(result.run_dir)
    new = tmp_path / "new"
    new.mkdir()
    for i, text in enumerate(held_out):
        (new / f"{i}.txt").write_text(f"  {text}\n", encoding="utf-8")  # stripped, as in training
    from_files = run.predict(new)
    from_python = run.predict(held_out)
    assert from_files.id_name == "file" and from_files.ids[0] == "0.txt"
    assert torch.allclose(_probabilities(from_files), _probabilities(from_python), atol=1e-6)
    # Against the training reader's tensors: the folder itself, its train rows, the model.
    data = load_data(str(root))
    prepared = run.prepare(root)
    train_rows = stratified_split(np.repeat([0, 1], 30), 0, 0.15, 0.15)[0]
    width = data.train.x.shape[1]
    assert torch.equal(prepared.inputs["x"][train_rows][:, :width], data.train.x)
    with torch.no_grad():
        mask = data.train.x != 256  # PAD
        expected = run.model(data.train.x, padding_mask=mask).softmax(-1).double()
    got = _probabilities(run.predict(root))[train_rows]
    assert torch.allclose(got, expected, atol=1e-5)
    (new / "bad.txt").write_bytes(b"caf\xe9")
    with pytest.raises(ValueError, match="bad.txt"):
        run.predict(new)
    with pytest.raises(ValueError, match="empty text at position 1"):
        run.predict(["fine", "   "])


def test_date_pairs_runs_decode_new_sources(tmp_path):
    from fieldguide.data.text import make_date_pairs

    pairs = make_date_pairs(60, seed=0)  # SYNTHETIC: real calendar dates in 8 styles -> ISO
    path = write_rows(tmp_path / "dates.csv", ["source", "target"], pairs)
    result = train("t5-tiny", str(path), runs_dir=tmp_path / "runs", progress="quiet", max_steps=3)
    run = fieldguide.load_run(result.run_dir)
    sources = ["March 5, 1998", "5 Mar 1998", "1998/03/05"]
    new = write_rows(tmp_path / "new.csv", ["source"], [[s] for s in sources])
    from_file = run.predict(new)
    from_python = run.predict(sources)
    assert from_file.columns == ["target"] and from_file.ids == [2, 3, 4]
    assert from_file.rows == from_python.rows
    # The model's own greedy decoder on the byte ids, one source at a time.
    from fieldguide.data.tokenizer import BOS, EOS, ByteTokenizer
    from fieldguide.tasks.seq2seq import strip_output

    tokenizer, longest = ByteTokenizer(), run.preprocessing["task_state"]["max_decode_len"]
    assert longest == 11  # "YYYY-MM-DD" and EOS
    for source, row in zip(sources, from_file.rows, strict=True):
        ids = torch.tensor([list(source.encode())])
        with torch.no_grad():
            out = run.model.greedy(ids, longest, BOS, EOS)[0].tolist()
        assert row == [tokenizer.decode(strip_output(out))]
    with pytest.raises(ValueError, match="has no column 'source', the source the run was trained"):
        run.predict(write_rows(tmp_path / "other.csv", ["text"], [["x"]]))


@pytest.fixture(scope="module")
def mfccs():
    """Spoken-digit MFCC frames: 8 utterances of each of the digits 0, 1 and 2 (T_i, 13)."""
    from fieldguide.data.series import starter_file

    with np.load(starter_file("spoken-digits")) as archive:
        frames, y, lengths = archive["X"], archive["y"], archive["lengths"]
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    out = []
    for digit in (0, 1, 2):
        for i in np.flatnonzero(y == digit)[:8]:
            out.append((frames[starts[i] : starts[i] + lengths[i]].astype(np.float64), digit))
    return out


def test_sequence_folder_and_npz_runs_read_files_or_arrays(tmp_path, mfccs):
    channels = [f"mfcc{c}" for c in range(13)]
    root = tmp_path / "digits"
    for i, (values, digit) in enumerate(mfccs):
        (root / str(digit)).mkdir(parents=True, exist_ok=True)
        write_rows(root / str(digit) / f"{i:02d}.csv", channels, values.tolist())
    result = train("gru", str(root), runs_dir=tmp_path / "runs", progress="quiet", max_steps=2)
    run = fieldguide.load_run(result.run_dir)
    from_files = run.predict(root)
    # Arrays in the order the folder lists its files: by class folder, then by name.
    ordered = [values for values, _ in mfccs]
    from_python = run.predict(ordered)
    assert torch.allclose(_probabilities(from_files), _probabilities(from_python), atol=1e-6)
    # The same sequences as one .npz: flat frames with lengths.
    npz = tmp_path / "digits.npz"
    np.savez(
        npz,
        x=np.concatenate(ordered),
        lengths=np.array([len(v) for v in ordered]),
        y=np.array([d for _, d in mfccs]),
    )
    result = train("gru", str(npz), runs_dir=tmp_path / "runs2", progress="quiet", max_steps=2)
    run = fieldguide.load_run(result.run_dir)
    from_npz = run.predict(npz)
    assert from_npz.id_name == "index" and len(from_npz.ids) == 24
    assert torch.allclose(_probabilities(from_npz), _probabilities(run.predict(ordered)), atol=1e-6)
    data = load_data(str(npz))
    train_rows = stratified_split(np.repeat([0, 1, 2], 8), 0, 0.15, 0.15)[0]
    with torch.no_grad():
        expected = run.model(data.train.x, lengths=data.train.lengths).softmax(-1).double()
    assert torch.allclose(_probabilities(from_npz)[train_rows], expected, atol=1e-5)
    np.savez(tmp_path / "wide.npz", x=np.zeros((2, 5, 4)))
    with pytest.raises(ValueError, match="sequences of 4 channels; the run was trained on 13"):
        run.predict(tmp_path / "wide.npz")
    with pytest.raises(ValueError, match=r"sequence 0 as an array \(T, 13\)"):
        run.predict([np.zeros((5, 4))])


def _karate_folder(root, features: bool, nodes=None):
    import networkx as nx

    g = nx.karate_club_graph()
    keep = sorted(g.nodes) if nodes is None else nodes
    root.mkdir(parents=True)
    with open(root / "nodes.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["id", "label"] + (["triangles"] if features else []))
        triangles = nx.triangles(g)
        for n in keep:
            label = g.nodes[n]["club"] if n % 3 else ""  # a third unlabelled
            w.writerow([f"m{n}", label] + ([triangles[n]] if features else []))
    with open(root / "edges.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["source", "target"])
        for a, b in g.edges:
            if a in keep and b in keep:
                w.writerow([f"m{a}", f"m{b}"])
                w.writerow([f"m{b}", f"m{a}"])
    return root


def test_graph_folder_runs_label_every_node(tmp_path):
    root = _karate_folder(tmp_path / "karate", features=False)
    result = train("gcn", str(root), runs_dir=tmp_path / "runs", progress="quiet", epochs=2)
    run = fieldguide.load_run(result.run_dir)
    predictions = run.predict(root)
    assert predictions.id_name == "id" and predictions.ids[:2] == ["m0", "m1"]
    assert len(predictions.rows) == 34 and predictions.columns[0] == "prediction"
    data = load_data(str(root))  # spectral features of the same graph, as in training
    g = data.graph
    with torch.no_grad():
        expected = run.model(g.x, g.edge_index).softmax(-1).double()
    assert torch.allclose(_probabilities(predictions), expected, atol=1e-5)
    with pytest.raises(ValueError, match="expects a graph as a folder with nodes.csv"):
        run.predict(["m0"])


def test_graph_runs_with_features_scale_a_new_graph_with_the_training_statistics(tmp_path):
    root = _karate_folder(tmp_path / "karate", features=True)
    result = train("gcn", str(root), runs_dir=tmp_path / "runs", progress="quiet", epochs=2)
    run = fieldguide.load_run(result.run_dir)
    part = _karate_folder(tmp_path / "part", features=True, nodes=list(range(20)))
    prepared = run.prepare(part)
    stats = run.preprocessing["data"]
    import networkx as nx

    raw = torch.tensor([nx.triangles(nx.karate_club_graph())[n] for n in range(20)])
    expected = ((raw.double() - stats["mean"][0]) / stats["std"][0]).float()[:, None]
    assert torch.allclose(prepared.inputs["x"], expected, atol=1e-6)
    assert len(run.predict(part).rows) == 20
    other = tmp_path / "other"
    _karate_folder(other, features=False)
    with pytest.raises(ValueError, match=r"has feature columns \[\] in nodes.csv; the run was"):
        run.predict(other)
