"""A byte-level tokenizer: UTF-8 bytes are the tokens, plus three special tokens.

No vocabulary file and nothing to train: ids 0..255 are the bytes of the UTF-8 encoding, and
PAD=256, BOS=257 and EOS=258 follow, so `VOCAB_SIZE` is 259. Any text in any script encodes
losslessly; a character outside ASCII takes 2 to 4 tokens. One token is one byte, so a language
model's loss in nats per token divided by ln 2 is its bits per byte.

Letters: B batch (texts), T tokens (the padded length).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import torch
from torch import Tensor

PAD = 256  # fills a batch past each text's end; losses and attention ignore it
BOS = 257  # begins a sequence the model must generate (a seq2seq target)
EOS = 258  # ends a generated sequence
VOCAB_SIZE = 259
SPECIAL_TOKENS = {"PAD": PAD, "BOS": BOS, "EOS": EOS}


class ByteTokenizer:
    """Text to UTF-8 byte ids and back; `PAD`, `BOS` and `EOS` are the ids above 255."""

    pad, bos, eos = PAD, BOS, EOS
    vocab_size = VOCAB_SIZE

    def encode(self, text: str, *, add_bos: bool = False, add_eos: bool = False) -> list[int]:
        """The ids of `text`: its UTF-8 bytes, optionally after BOS and before EOS."""
        if not isinstance(text, str):
            raise TypeError(
                f"ByteTokenizer.encode expects text as a str; got {type(text).__name__}."
            )
        ids = list(text.encode("utf-8"))
        return [BOS] * add_bos + ids + [EOS] * add_eos

    def encode_tensor(self, text: str) -> Tensor:
        """The byte ids of `text` as a 1-D int64 tensor: `encode` for long texts, fast."""
        if not isinstance(text, str):
            raise TypeError(
                f"ByteTokenizer.encode_tensor expects text as a str; got {type(text).__name__}."
            )
        data = np.frombuffer(text.encode("utf-8"), dtype=np.uint8)
        return torch.from_numpy(data.astype(np.int64))

    def decode(self, ids: Iterable[int] | Tensor) -> str:
        """The text of `ids`: special tokens are skipped, invalid UTF-8 becomes U+FFFD."""
        if isinstance(ids, Tensor):
            if ids.ndim != 1:
                raise ValueError(
                    f"ByteTokenizer.decode expects one sequence of ids, shape (T,); got "
                    f"{tuple(ids.shape)}; decode each row of a batch on its own."
                )
            ids = ids.tolist()
        data = bytearray()
        for i in ids:
            i = int(i)
            if not 0 <= i < VOCAB_SIZE:
                raise ValueError(f"ByteTokenizer.decode expects ids in [0, {VOCAB_SIZE}); got {i}.")
            if i < 256:
                data.append(i)
        # A model may emit byte sequences that are not valid UTF-8; show them, do not fail.
        return data.decode("utf-8", errors="replace")

    def batch_encode(
        self,
        texts: Sequence[str],
        max_len: int | None = None,
        *,
        add_bos: bool = False,
        add_eos: bool = False,
    ) -> tuple[Tensor, Tensor]:
        """Encode `texts` into one right-padded batch.

        Args:
            texts: The B texts.
            max_len: Longest allowed sequence; longer ones are cut to their first `max_len`
                ids (an EOS, if added, is cut with them). None pads to the longest.
            add_bos: Put BOS before each text.
            add_eos: Put EOS after each text.

        Returns:
            ids of shape (B, T) int64, PAD past each text's end, with T the longest kept
            length, and lengths (B,) int64, the real ids of each row.
        """
        if isinstance(texts, str):
            raise TypeError("ByteTokenizer.batch_encode expects a list of texts; got one str.")
        if max_len is not None and max_len < 1:
            raise ValueError(f"ByteTokenizer.batch_encode expects max_len >= 1; got {max_len}.")
        rows = [self.encode(t, add_bos=add_bos, add_eos=add_eos)[:max_len] for t in texts]
        return pad_batch(rows)


def pad_batch(
    rows: Sequence[Sequence[int]], width: int | None = None, pad: int = PAD
) -> tuple[Tensor, Tensor]:
    """Right-pad id lists to (B, T) with `pad`; T is `width`, or the longest row; and lengths (B,).

    `pad` is the byte tokenizer's PAD unless another vocabulary's (WordPiece's 0) is given.
    """
    lengths = np.array([len(r) for r in rows], dtype=np.int64)
    width = int(lengths.max(initial=0)) if width is None else width
    if len(rows) and int(lengths.max()) > width:
        raise ValueError(f"pad_batch got a row of {int(lengths.max())} ids for width {width}.")
    ids = np.full((len(rows), width), pad, dtype=np.int64)
    for i, row in enumerate(rows):  # numpy rows fill from lists far faster than torch's
        ids[i, : len(row)] = row
    return torch.from_numpy(ids), torch.from_numpy(lengths)
