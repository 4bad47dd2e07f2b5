"""The committed torch-free catalogue matches the registry it is generated from."""

import json
import subprocess
import sys

from fieldguide import get_entry, list_models
from fieldguide.api.catalog import CATALOG, build_catalog, load_catalog


def test_committed_catalog_is_not_stale():
    built = json.loads(json.dumps(build_catalog()))  # the same JSON types as the file
    committed = load_catalog()
    stale = sorted(
        name for name in set(built) | set(committed) if built.get(name) != committed.get(name)
    )
    assert committed == built, (
        f"{CATALOG.name} is stale for {stale}; regenerate it with "
        f"`python -m fieldguide.api.catalog` and commit the result."
    )


def test_catalog_lists_every_model_with_its_entry():
    catalog = load_catalog()
    assert sorted(catalog) == list_models(classical=True)
    for name, card in catalog.items():
        entry = get_entry(name)
        assert card["family"] == entry.family
        assert card["class"] == entry.cls.__name__
        assert card["summary"] == entry.summary
        if entry.family == "classical":  # fitted numbers exist only after a run
            assert card["parameters"] == 0 and card["diagram"] == ""
        else:
            assert isinstance(card["parameters"], int) and card["parameters"] > 0
    assert catalog["resnet18"]["parameters"] == 11_689_512
    assert catalog["resnet-tiny"]["config"]["layers"] == [1, 1, 1]


def test_load_catalog_does_not_import_torch():
    code = (
        "import sys; from fieldguide.api.catalog import load_catalog; "
        "c = load_catalog(); print('torch' in sys.modules, 'resnet18' in c)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "True"], out.stderr
