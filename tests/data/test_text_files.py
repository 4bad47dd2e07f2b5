"""The user's own text files: class sub-folders of .txt files, or text for a language model."""

import numpy as np
import pytest
import torch
from PIL import Image

from fieldguide.api import train
from fieldguide.data import load_data
from fieldguide.data.base import ClassificationData, TextData
from fieldguide.data.text import read_kjv, read_rotten_tomatoes
from fieldguide.data.tokenizer import ByteTokenizer
from fieldguide.tasks import make_task
from fieldguide.tasks.language_modeling import LanguageModelingTask
from fieldguide.tasks.text_classification import TextClassificationTask
from tests.data.helpers import require_starter

PER_CLASS = 40  # real snippets written per class


def review_folder(root, per_class=PER_CLASS):
    """Real Rotten Tomatoes snippets, one file each: fresh ones in pos/, rotten ones in neg/.

    Each file ends with a newline, which loading strips. Returns {path: snippet}.
    """
    require_starter("rotten-tomatoes")
    texts, labels = read_rotten_tomatoes()
    written = {}
    for label, folder in (("fresh", "pos"), ("rotten", "neg")):
        (root / folder).mkdir(parents=True)
        picked = [t for t, lab in zip(texts, labels, strict=True) if lab == label][:per_class]
        for i, text in enumerate(picked):
            path = root / folder / f"{i:03d}.txt"
            path.write_text(text + "\n", encoding="utf-8")
            written[path] = text
    return written


def kjv_slice(size=20_000):
    require_starter("kjv")
    return read_kjv()[:size]


def decoded_rows(split):
    """The text of every row of a text `Split`, its padding left off."""
    return [
        ByteTokenizer().decode(row[: int(n)].tolist())
        for row, n in zip(split.x, split.lengths, strict=True)
    ]


def synthetic_class_folder(root, classes=("a", "b"), per_class=8):
    """SYNTHETIC: tiny .txt files, per_class per class, for the error cases."""
    for name in classes:
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            (root / name / f"{i}.txt").write_text(f"synthetic text {i} of class {name}")
    return root


def write_image(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((5, 6), 128, dtype=np.uint8)).save(path)
    return path


# -- text classification ----------------------------------------------------------------------
def test_a_folder_of_real_reviews_is_text_classification(tmp_path):
    written = review_folder(tmp_path / "My Reviews")
    data = load_data(str(tmp_path / "My Reviews"), seed=3)
    assert isinstance(data, ClassificationData) and data.modality == "text"
    assert data.name == "my-reviews" and data.classes == ["neg", "pos"]  # sorted folder names
    assert data.preprocessing["files_per_class"] == {"neg": PER_CLASS, "pos": PER_CLASS}
    assert data.preprocessing["max_len"] == 256 and data.preprocessing["truncated"] == 0
    labels = torch.cat([data.train.y, data.val.y, data.test.y])
    assert torch.bincount(labels).tolist() == [PER_CLASS, PER_CLASS]
    assert len(data.val) == len(data.test) == 12  # round(80 * 0.15)
    assert isinstance(make_task(data), TextClassificationTask)
    # The ids decode back to the files' contents (stripped), each under its own class.
    got = sorted(
        (data.classes[int(y)], text)
        for split in (data.train, data.val, data.test)
        for text, y in zip(decoded_rows(split), split.y, strict=True)
    )
    want = sorted((path.parent.name, path.read_text(encoding="utf-8").strip()) for path in written)
    assert got == want
    # Encoded exactly as the rotten-tomatoes starter encodes its snippets.
    ids, _ = ByteTokenizer().batch_encode(list(written.values()), 256)
    every = torch.cat([data.train.x, data.val.x, data.test.x])
    assert data.input_shape == (int(ids.shape[1]),)
    assert sorted(map(tuple, every.tolist())) == sorted(map(tuple, ids.tolist()))


def test_long_files_are_cut_to_256_bytes_and_counted(tmp_path):
    root = synthetic_class_folder(tmp_path / "long")
    (root / "a" / "long.txt").write_text("é" * 200)  # SYNTHETIC: 400 bytes
    data = load_data(str(root))
    assert data.preprocessing["truncated"] == 1 and data.input_shape == (256,)


def test_bert_tiny_trains_on_a_review_folder(tmp_path):
    review_folder(tmp_path / "reviews")
    result = train(
        "bert-tiny",
        str(tmp_path / "reviews"),
        max_steps=3,
        progress="quiet",
        runs_dir=tmp_path / "runs",
    )
    assert (result.run_dir / "report.md").is_file()
    assert "text folder 'reviews'" in (result.run_dir / "report.md").read_text()


# -- language modelling -----------------------------------------------------------------------
def test_a_txt_file_is_language_modelling_cut_in_order(tmp_path):
    text = kjv_slice()
    path = tmp_path / "Book One.txt"
    path.write_text(text, encoding="utf-8")
    data = load_data(str(path))
    assert isinstance(data, TextData) and data.name == "book-one"
    assert data.split_sizes() == {"train": 14_000, "val": 3_000, "test": 3_000}
    stream = torch.cat([data.train, data.val, data.test])
    assert ByteTokenizer().decode(stream) == text  # every byte, in order
    assert ByteTokenizer().decode(data.test) == text[-3_000:]
    assert data.preprocessing["bounds"] == [14_000, 17_000]
    assert isinstance(make_task(data), LanguageModelingTask)
    other = load_data(str(path), val_fraction=0.1, test_fraction=0.2)
    assert other.split_sizes() == {"train": 14_000, "val": 2_000, "test": 4_000}


def test_a_folder_of_txt_files_is_one_stream_in_name_order(tmp_path):
    text = kjv_slice(9_000)
    root = tmp_path / "chapters"
    root.mkdir()
    parts = {"c.txt": text[:3_000], "a.txt": text[3_000:6_000], "b.txt": text[6_000:]}
    for name, part in parts.items():
        (root / name).write_text(part, encoding="utf-8")
    (root / "notes.md").write_text("not read")
    data = load_data(str(root))
    assert isinstance(data, TextData) and data.name == "chapters"
    joined = "\n".join(parts[name] for name in sorted(parts))
    assert ByteTokenizer().decode(torch.cat([data.train, data.val, data.test])) == joined
    assert data.preprocessing["files"] == 3 and data.preprocessing["bytes"] == 9_002


def test_gpt_tiny_trains_on_a_txt_file(tmp_path):
    path = tmp_path / "book.txt"
    path.write_text(kjv_slice(), encoding="utf-8")
    result = train("gpt-tiny", str(path), max_steps=3, progress="quiet", runs_dir=tmp_path / "runs")
    assert (result.run_dir / "report.md").is_file()


# -- image folders stay image folders ---------------------------------------------------------
def test_an_image_folder_with_captions_still_loads_as_images(tmp_path):
    root = tmp_path / "pets"
    for name in ("cat", "dog"):
        for i in range(8):
            write_image(root / name / f"{i}.png")
            (root / name / f"{i}.txt").write_text(f"a caption of {name} {i}")  # ignored
    data = load_data(str(root))
    assert data.modality == "images" and data.input_shape == (1, 5, 6)


def test_a_folder_mixing_txt_files_and_images_is_one_sentence(tmp_path):
    root = synthetic_class_folder(tmp_path / "mixed", classes=("pos",))
    write_image(root / "neg" / "0.png")
    with pytest.raises(ValueError, match=r"mixes text and images.*pos.0\.txt.*neg.0\.png"):
        load_data(str(root))
    flat = tmp_path / "flat"
    flat.mkdir()
    (flat / "story.txt").write_text("synthetic story " * 50)
    write_image(flat / "cover.png")
    with pytest.raises(ValueError, match=r"mixes text and images.*story\.txt.*cover\.png"):
        load_data(str(flat))


# -- errors -----------------------------------------------------------------------------------
def test_a_file_that_is_not_utf8_names_the_file_and_the_byte_offset(tmp_path):
    root = synthetic_class_folder(tmp_path / "latin")
    bad = root / "b" / "3.txt"
    bad.write_bytes("synthetic line\ncafé au lait".encode("latin-1"))
    with pytest.raises(ValueError, match=r"3\.txt is not UTF-8.*0xe9 at byte offset 18 \(line 2\)"):
        load_data(str(root))
    runs = tmp_path / "runs"
    with pytest.raises(ValueError, match="is not UTF-8"):
        train("bert-tiny", str(root), max_steps=1, progress="quiet", runs_dir=runs)
    assert not runs.exists()  # nothing written on failure


def test_empty_and_blank_files_are_one_sentence(tmp_path):
    root = synthetic_class_folder(tmp_path / "gaps")
    (root / "a" / "empty.txt").write_bytes(b"")
    with pytest.raises(ValueError, match=r"empty\.txt is empty \(0 bytes\)"):
        load_data(str(root))
    (root / "a" / "empty.txt").write_text(" \n\t\n")
    with pytest.raises(ValueError, match=r"empty\.txt holds only whitespace"):
        load_data(str(root))
    (tmp_path / "nothing.txt").write_bytes(b"")
    with pytest.raises(ValueError, match=r"nothing\.txt is empty"):
        load_data(str(tmp_path / "nothing.txt"))


def test_class_folders_that_cannot_be_split_say_which(tmp_path):
    one = synthetic_class_folder(tmp_path / "one", classes=("only",))
    with pytest.raises(ValueError, match=r"needs at least 2 class sub-folders.*has 1 \('only'\)"):
        load_data(str(one))
    small = synthetic_class_folder(tmp_path / "small")
    synthetic_class_folder(small, classes=("tiny",), per_class=2)
    with pytest.raises(ValueError, match=r"class 'tiny' has 2 samples"):
        load_data(str(small))
    hollow = synthetic_class_folder(tmp_path / "hollow")
    (hollow / "c").mkdir()
    (hollow / "c" / "readme.md").write_text("no text files here")
    with pytest.raises(ValueError, match=r"class 'c' .* has no \.txt files.*'readme\.md'"):
        load_data(str(hollow))


def test_too_little_text_for_a_language_model_is_one_sentence(tmp_path):
    path = tmp_path / "short.txt"
    path.write_text("SYNTHETIC: a few words only.")
    with pytest.raises(ValueError, match=r"short\.txt holds 28 bytes .* needs at least 512"):
        load_data(str(path))


def test_image_and_table_options_are_refused_for_text(tmp_path):
    root = synthetic_class_folder(tmp_path / "texts")
    with pytest.raises(ValueError, match="image_size=32 for text folder"):
        load_data(str(root), image_size=32)
    with pytest.raises(ValueError, match="target='label' for text folder"):
        load_data(str(root), target="label")
    path = tmp_path / "book.txt"
    path.write_text("SYNTHETIC " * 100)
    with pytest.raises(ValueError, match="image_size=32 for text file"):
        load_data(str(path), image_size=32)
