"""The user's own text files: a folder of class sub-folders, or text for a language model.

```
reviews/                 text classification: one example per file, class = sub-folder name
  neg/  001.txt 002.txt ...
  pos/  001.txt ...
book.txt                 language modelling: one byte stream cut chronologically
chapters/  01.txt 02.txt ...   the same, the files joined in sorted name order by a newline
```
Files are read as UTF-8 (a leading byte-order mark is dropped) and become ids of the byte
tokenizer (`fieldguide.data.tokenizer`), as the starters rotten-tomatoes and kjv do: a text to
classify keeps its first 256 bytes after surrounding whitespace is stripped; a language-model
stream keeps every byte. Only files ending in .txt are read; hidden files and folders (names
starting with ".") and other files are ignored, except images beside .txt files, which make the
folder ambiguous unless it is an image folder with a few notes (see `folder_kind`).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from fieldguide.data.base import (
    ClassificationData,
    TextData,
    chronological_bounds,
    safe_name,
    stratified_split,
)
from fieldguide.data.image_folder import IMAGE_SUFFIXES
from fieldguide.data.text import ROTTEN_TOMATOES_MAX_LEN, text_classification_data, text_stream_data
from fieldguide.data.tokenizer import ByteTokenizer

TEXT_SUFFIX = ".txt"
# Bytes kept of each text to classify, as for the rotten-tomatoes starter.
MAX_LEN = ROTTEN_TOMATOES_MAX_LEN
# Fewest bytes a language model is cut from: each of validation and test must hold some text.
MIN_LM_BYTES = 512


def _visible(folder: Path) -> list[Path]:
    """The entries of `folder` whose names do not start with ".", sorted by name."""
    return sorted(p for p in folder.iterdir() if not p.name.startswith("."))


def _texts(entries: list[Path]) -> list[Path]:
    return [p for p in entries if p.is_file() and p.suffix.lower() == TEXT_SUFFIX]


def _images(entries: list[Path]) -> list[Path]:
    return [p for p in entries if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES]


def folder_kind(path: str | os.PathLike[str]) -> str:
    """How `load_data` reads folder `path`: "text", "stream" or "images".

    - "text": sub-folders hold .txt files and no images: text classification.
    - "stream": no sub-folder holds any file, and the folder itself holds .txt files and no
      images: one text for a language model (a README.txt beside class folders is not one).
    - "images": everything else, read by `fieldguide.data.image_folder`, which names what is
      missing; a few .txt files among the images of every class (notes, captions) are
      ignored there, as before.

    Raises:
        ValueError: one sentence naming a .txt file and an image when the folder mixes them
            otherwise (a class with .txt files but no images, or more .txt files than images).
    """
    root = Path(path)
    folders = [p for p in _visible(root) if p.is_dir()]
    per_class = {f: (_texts(_visible(f)), _images(_visible(f))) for f in folders}
    texts = [t for ts, _ in per_class.values() for t in ts]
    images = [i for _, is_ in per_class.values() for i in is_]
    other = any(p.is_file() for f in folders for p in _visible(f))  # sequences, say
    if not texts and not images and other:
        return "images"  # not text; the sequence and image readers say what it is
    if not texts and not images:  # no class sub-folders: the folder's own files
        texts, images = _texts(_visible(root)), _images(_visible(root))
        if texts and images:
            raise _mixed(root, texts, images, "files")
        return "stream" if texts else "images"
    if not texts:
        return "images"
    if not images:
        return "text"
    if all(is_ for _, is_ in per_class.values()) and len(images) >= len(texts):
        return "images"
    raise _mixed(root, texts, images, "class sub-folders")


def _mixed(root: Path, texts: list[Path], images: list[Path], where: str) -> ValueError:
    return ValueError(
        f"folder {root} mixes text and images: its {where} hold {len(texts):,} .txt files "
        f"(such as {texts[0]}) and {len(images):,} images (such as {images[0]}); expected one "
        f"kind, a sub-folder of .txt files per class for text or of images per class for "
        f"images, so move the other kind out."
    )


def read_text_file(path: Path) -> str:
    """The text of `path`, checked to be non-empty UTF-8; a leading byte-order mark is dropped.

    Raises:
        ValueError: one sentence naming the file: empty, or not UTF-8 (with the byte offset).
    """
    data = path.read_bytes()
    if not data:
        raise ValueError(
            f"text file {path} is empty (0 bytes); expected some UTF-8 text, so fill it in or "
            f"remove it."
        )
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = data.count(b"\n", 0, error.start) + 1
        raise ValueError(
            f"text file {path} is not UTF-8: expected UTF-8 text but found byte "
            f"0x{data[error.start]:02x} at byte offset {error.start} (line {line}), "
            f"{error.reason}; save the file as UTF-8, for example with "
            f"`iconv -f latin1 -t utf-8`."
        ) from None


def class_text_files(root: Path) -> list[tuple[str, list[Path]]]:
    """Class names and their .txt files under `root`, sorted, with every class folder checked."""
    folders = [p for p in _visible(root) if p.is_dir()]
    if len(folders) < 2:
        found = ", ".join(f"'{p.name}'" for p in folders) or "none"
        raise ValueError(
            f"text folder {root} needs at least 2 class sub-folders (one per class, holding "
            f"that class's .txt files) but has {len(folders)} ({found})."
        )
    classes = []
    for folder in folders:
        entries = _visible(folder)
        files = _texts(entries)
        if not files:
            others = ", ".join(f"'{p.name}'" for p in entries[:3]) or "nothing"
            raise ValueError(
                f"class '{folder.name}' (folder {folder}) has no .txt files; expected one .txt "
                f"file per example, found {len(entries)} other entries ({others})."
            )
        classes.append((folder.name, files))
    return classes


def load_text_folder(
    path: str | os.PathLike[str],
    *,
    seed: int = 0,
    val_fraction: float = 0.15,
    test_fraction: float = 0.15,
    max_len: int = MAX_LEN,
) -> ClassificationData:
    """Text classification from a folder with one sub-folder of .txt files per class.

    Class names are the sorted sub-folder names and each file is one example: its UTF-8 text
    with surrounding whitespace stripped, as byte ids cut to the first `max_len` bytes, with no
    BOS or EOS, right-padded with PAD to the longest kept length (`Split.lengths` holds the real
    bytes). The split is stratified by class and drawn by seed.

    Args:
        path: Folder with one sub-folder of .txt files per class.
        seed: Seed of the stratified split.
        val_fraction: Share of the files held out for validation.
        test_fraction: Share held out for test.
        max_len: Bytes kept of each text.
    """
    root = Path(path)
    classes = class_text_files(root)
    texts, labels = [], []
    for label, (_, files) in enumerate(classes):
        for file in files:
            text = read_text_file(file).strip()
            if not text:
                raise ValueError(
                    f"text file {file} holds only whitespace; expected the text of one example, "
                    f"so fill it in or remove it."
                )
            texts.append(text)
            labels.append(label)
    y = np.asarray(labels, dtype=np.int64)
    names = [name for name, _ in classes]
    splits = stratified_split(y, seed, val_fraction, test_fraction, class_names=names)
    files_per_class = {name: len(files) for name, files in classes}
    counts = ", ".join(f"{n:,} {name}" for name, n in files_per_class.items())
    return text_classification_data(
        texts,
        y,
        names,
        splits,
        name=safe_name(root.resolve().name),
        description=(
            f"text folder '{root.name}': {len(texts):,} .txt files as byte tokens, at most "
            f"{max_len} bytes, {len(names)} classes ({counts})"
        ),
        max_len=max_len,
        preprocessing={
            "reader": "text-folder",  # predict reads new .txt files the same way
            "source": "one example per .txt file, class = sub-folder name",
            "files_per_class": files_per_class,
            "bytes": sum(len(t.encode("utf-8")) for t in texts),
            "strip": "surrounding whitespace of each file removed",
        },
    )


def load_text_stream(
    path: str | os.PathLike[str],
    *,
    seed: int = 0,
    val_fraction: float = 0.15,
    test_fraction: float = 0.15,
) -> TextData:
    """Language-model text from a .txt file, or a folder of .txt files (no sub-folders).

    The files of a folder are joined in sorted name order with a newline between them. Every
    byte is kept (ids 0..255) and the stream is cut chronologically: the last
    round(N * test_fraction) bytes are test, the round(N * val_fraction) before them
    validation, and training keeps the start.

    Args:
        path: A .txt file, or a folder holding .txt files.
        seed: Not used: the cut has nothing random.
        val_fraction: Share of the bytes for validation, just before the test part.
        test_fraction: Share of the bytes for test, at the end.
    """
    del seed  # a chronological cut
    source = Path(path)
    files = _texts(_visible(source)) if source.is_dir() else [source]
    kind = "text folder" if source.is_dir() else "text file"
    what = f"{kind} {source}"
    if not files:
        raise ValueError(f"{what} holds no .txt files; expected one or more .txt files.")
    text = "\n".join(read_text_file(file) for file in files)
    ids = ByteTokenizer().encode_tensor(text)  # (N,)
    if len(ids) < MIN_LM_BYTES:
        raise ValueError(
            f"{what} holds {len(ids):,} bytes of text but a language model needs at least "
            f"{MIN_LM_BYTES} so that validation and test each get some; give it more text."
        )
    train_end, val_end = chronological_bounds(len(ids), val_fraction, test_fraction)
    n = len(ids)
    shares = f"{train_end / n:.0%} train, next {(val_end - train_end) / n:.0%} validation"
    stem = source.resolve().name if source.is_dir() else source.stem
    joined = f" ({len(files)} files joined by newlines)" if source.is_dir() else ""
    return text_stream_data(
        ids,
        (train_end, val_end),
        name=safe_name(stem),
        description=(
            f"{kind} '{source.name}'{joined}: {n:,} bytes as byte tokens; first {shares}, last "
            f"{(n - val_end) / n:.0%} test"
        ),
        preprocessing={"source": source.name, "files": len(files), "bytes": n}
        | ({"joined": "in sorted name order, a newline between files"} if joined else {}),
    )
