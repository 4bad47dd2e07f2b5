"""WordPiece tokens for pretrained BERT-style encoders (minilm), via the `tokenizers` library.

A pretrained encoder only understands the ids of the vocabulary it was trained on, so its
runs tokenize text with that model's own tokenizer.json (lower-cased BERT normalisation,
WordPiece, [CLS] text [SEP]) instead of the library's byte tokenizer. Texts are cut to
`max_len` tokens, [CLS] and [SEP] included, and right-padded with [PAD] (id 0); `Split.lengths`
holds the real tokens, so padding is masked wherever it matters.

Letters: N texts, T tokens (the longest kept text).
"""

from __future__ import annotations

import dataclasses
import re
from functools import lru_cache
from typing import Any

import torch
from torch import Tensor

from fieldguide.data.tokenizer import pad_batch

# The tokenizers that pretrained text models name (`text_tokenizer` of their class).
TOKENIZERS = ("minilm",)
MAX_LEN = 256  # sentence-transformers' max_seq_length for all-MiniLM-L6-v2


@lru_cache(maxsize=4)
def load_tokenizer(name: str) -> Any:
    """The `tokenizers.Tokenizer` of `name`, with its built-in padding and truncation off."""
    if name not in TOKENIZERS:
        raise ValueError(f"tokenizer must be one of {list(TOKENIZERS)}; got {name!r}.")
    try:
        from tokenizers import Tokenizer
    except ImportError as err:  # a dependency of fieldguide; only a broken install lacks it
        raise ImportError(
            "the minilm tokenizer needs the `tokenizers` package; install it with: "
            "pip install tokenizers"
        ) from err
    from fieldguide.models.pretrained import MINILM

    tokenizer = Tokenizer.from_file(str(MINILM.path("model/tokenizer.json")))
    tokenizer.no_padding()
    tokenizer.no_truncation()
    return tokenizer


def encode(texts: list[str], name: str, max_len: int = MAX_LEN) -> tuple[Tensor, Tensor, int]:
    """Ids (N, T) right-padded with 0, real lengths (N,), and how many texts were cut."""
    if not isinstance(max_len, int) or not 3 <= max_len <= 512:
        raise ValueError(
            f"max_len must be an integer in [3, 512] (BERT's positions); got {max_len}."
        )
    encodings = load_tokenizer(name).encode_batch(list(texts))
    cut = sum(len(e.ids) > max_len for e in encodings)
    # Keep [CLS] ... and end with [SEP] after a cut, as the tokenizer's own truncation does.
    rows = [
        e.ids if len(e.ids) <= max_len else e.ids[: max_len - 1] + e.ids[-1:] for e in encodings
    ]
    ids, lengths = pad_batch(rows, max([1, *map(len, rows)]), pad=0)  # [PAD] is id 0
    return ids, lengths, int(cut)


def vocab_size(name: str) -> int:
    """How many ids `name`'s vocabulary has (30,522 for minilm)."""
    return int(load_tokenizer(name).get_vocab_size())


def retokenize(data: Any, name: str, max_len: int = MAX_LEN) -> Any:
    """Text classification data re-encoded with tokenizer `name` from its raw texts.

    `data.texts` (per split, as the reader kept them) are encoded again; labels, classes and
    splits stay. `preprocessing` records the tokenizer, so `predict` encodes new texts alike.
    """
    texts = getattr(data, "texts", None)
    if data.modality != "text" or not texts:
        raise ValueError(
            f"a {name} model reads texts; the data {data.name!r} is {data.modality}, which has "
            "no texts to tokenize."
        )
    splits, cut, longest = {}, 0, 1
    for split in ("train", "val", "test"):
        ids, lengths, n = encode(texts[split], name, max_len)
        old = getattr(data, split)
        splits[split] = dataclasses.replace(old, x=ids, lengths=lengths)
        cut, longest = cut + n, max(longest, ids.shape[1])
    for split, part in splits.items():  # one padded length T for every split
        pad = longest - part.x.shape[1]
        splits[split] = dataclasses.replace(part, x=torch.nn.functional.pad(part.x, (0, pad)))
    keep = {k: v for k, v in data.preprocessing.items() if k not in ("tokenizer", "padding")}
    return dataclasses.replace(
        data,
        **splits,
        input_shape=(longest,),
        description=re.sub(
            r"as byte tokens(, at most \d+ bytes)?",
            f"as {name} WordPiece tokens, at most {max_len} tokens",
            data.description,
        ),
        preprocessing={
            **keep,
            "tokenizer": name,
            "vocab_size": vocab_size(name),
            "max_len": max_len,
            "truncated": cut,
            "padding": "[PAD] (id 0) after each text's [SEP]; Split.lengths holds the real tokens",
        },
    )
