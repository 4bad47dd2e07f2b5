"""The guide's cards: complete, consistent with the catalogue, rendered, and docs/guide current."""

import dataclasses
import re
import subprocess
import sys
from pathlib import Path

import pytest

from fieldguide.api.catalog import load_catalog
from fieldguide.api.guide_docs import guide_pages, main, write_guide
from fieldguide.guide.cards import (
    ALL_FAMILIES,
    CLASSICAL_MODELS,
    COST_CLASSES,
    FAMILY_CARDS,
    HABITS,
    MODEL_CARDS,
    cost_class,
    family_card,
    model_card,
    models_of,
    render_card,
)
from fieldguide.models.registry import FAMILIES

ROOT = Path(__file__).resolve().parents[1]
CATALOG = load_catalog()
KNOWN = set(CATALOG) | set(CLASSICAL_MODELS) | set(FAMILY_CARDS)


def empty_fields(value, path="card"):
    """Paths of the empty strings or empty tuples anywhere inside a card."""
    if dataclasses.is_dataclass(value):
        return [
            p
            for f in dataclasses.fields(value)
            for p in empty_fields(getattr(value, f.name), f"{path}.{f.name}")
        ]
    if isinstance(value, tuple):
        if not value:
            return [path]
        return [p for i, item in enumerate(value) for p in empty_fields(item, f"{path}[{i}]")]
    if isinstance(value, str):
        return [] if value.strip() else [path]
    return []


def test_every_registered_model_and_family_has_a_card():
    assert set(CATALOG) <= set(MODEL_CARDS), set(CATALOG) - set(MODEL_CARDS)
    assert set(CLASSICAL_MODELS) <= set(MODEL_CARDS)
    assert set(FAMILIES) | {"classical"} == set(FAMILY_CARDS) == set(ALL_FAMILIES)
    # no card for a model that no longer exists, and each card sits in the model's own family
    assert set(MODEL_CARDS) <= set(CATALOG) | set(CLASSICAL_MODELS)
    for name, card in MODEL_CARDS.items():
        assert card.name == name and card.family in FAMILY_CARDS
        if name in CATALOG:
            assert card.family == CATALOG[name]["family"], name
        else:
            assert card.family == "classical", name
    for family, card in FAMILY_CARDS.items():
        assert card.family == family and models_of(family, CATALOG), family


def test_no_card_field_is_empty():
    cards = [*FAMILY_CARDS.values(), *MODEL_CARDS.values()]
    assert [
        p for card in cards for p in empty_fields(card, repr(getattr(card, "name", card)))
    ] == []
    assert all(topic and text for topic, text in HABITS)


def test_empty_fields_finds_an_empty_field():  # the check above can fail
    card = dataclasses.replace(FAMILY_CARDS["tcn"], tips=(), what=" ")
    assert empty_fields(card) == ["card.what", "card.tips"]


def test_cards_are_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        FAMILY_CARDS["mlp"].what = "changed"


def test_alternatives_and_selection_name_things_that_exist():
    for card in FAMILY_CARDS.values():
        for alternative in card.alternatives:
            assert alternative.name in KNOWN, (card.family, alternative.name)
            family = MODEL_CARDS[alternative.name].family if alternative.name in MODEL_CARDS else ""
            assert card.family not in (alternative.name, family)
    from fieldguide.guide.rules import ROWS  # the selection table the docs render

    for rule in ROWS:
        assert all(n in KNOWN for n in (rule.pick, *rule.alternatives)), rule
        assert rule.pick not in rule.alternatives, rule


def test_family_invariants_match_what_the_models_declare():
    for family in [f for f in FAMILIES if f != "classical"]:  # baselines declare none
        named = {line.split(":", 1)[0] for line in FAMILY_CARDS[family].invariants}
        declared = {i for e in CATALOG.values() if e["family"] == family for i in e["invariants"]}
        assert declared <= named, (family, declared - named)  # every guarantee explained
        assert named <= declared, (family, named - declared)  # and none claimed in vain


def test_cost_classes():
    for card in FAMILY_CARDS.values():
        assert card.cost_class in COST_CLASSES
    sizes = [0, 99_999, 100_000, 999_999, 1_000_000, 29_999_999, 30_000_000, 10**9]
    classes = [cost_class(n) for n in sizes]
    order = list(COST_CLASSES)
    assert [order.index(c) for c in classes] == sorted(order.index(c) for c in classes)
    assert set(classes) == set(COST_CLASSES)
    assert cost_class(CATALOG["gpt2-small"]["parameters"]) == "large"
    assert cost_class(CATALOG["gcn"]["parameters"]) == "tiny"
    for bad in (-1, 1.5, True, "10"):
        with pytest.raises(ValueError, match="parameters"):
            cost_class(bad)


def test_render_a_model_card():
    text = render_card("resnet18")
    entry = CATALOG["resnet18"]
    assert text.startswith("resnet18 — ")
    assert f"{entry['parameters']:,}" in text and entry["input"] in text
    for key, value in entry["config"].items():
        assert f"  {key} = {value}\n" in text
    assert entry["diagram"].rstrip() in text
    assert MODEL_CARDS["resnet18"].note in text
    card = FAMILY_CARDS["resnet"]
    assert card.what in text and all(a in text for a in card.avoids)
    assert "cost class medium" in text and "docs/guide/resnet.md" in text


def test_render_a_family_card_lists_its_models():
    text = render_card("gnn")
    assert FAMILY_CARDS["gnn"].what in text
    for name in models_of("gnn", CATALOG):
        assert re.search(rf"^  {re.escape(name)} .*{CATALOG[name]['parameters']:,}", text, re.M)
    assert "resnet18" not in text


def test_render_a_classical_card_without_diagram_or_parameters():
    text = render_card("seasonal-naive")
    assert MODEL_CARDS["seasonal-naive"].note in text
    assert FAMILY_CARDS["classical"].what in text
    assert "flowchart" not in text and "fieldguide diagram" not in text
    if "seasonal-naive" in CATALOG:
        assert "parameters  set by the fit" in text and "(B, L, 0)" not in text
    else:
        assert "parameters " not in text


def test_render_refuses_unknown_names_with_close_matches():
    with pytest.raises(ValueError, match=r"^unknown model 'resnet19'; did you mean 'resnet18'"):
        render_card("resnet19")
    with pytest.raises(ValueError, match="did you mean 'gbdt'"):
        render_card("gbdtt")
    with pytest.raises(TypeError, match="name must be a str"):
        render_card(18)
    with pytest.raises(ValueError, match="unknown family 'resnt'; did you mean 'resnet'"):
        family_card("resnt")
    with pytest.raises(ValueError, match="unknown model 'mlpp'"):
        model_card("mlpp")


def test_cards_and_guide_pages_need_no_torch():
    code = (
        "import sys\n"
        "from fieldguide.guide.cards import render_card\n"
        "from fieldguide.api.guide_docs import guide_pages\n"
        "for name in ('resnet18', 'gnn', 'gbdt', 'minilm'):\n"
        "    render_card(name)\n"
        "guide_pages()\n"
        "print('torch' in sys.modules)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "False"


def test_the_guide_pages_are_current(tmp_path):
    written = write_guide(tmp_path / "guide")
    committed = ROOT / "docs" / "guide"
    stale = (
        "docs/guide/ is stale; regenerate it with `python -m fieldguide.api.guide_docs docs/guide`"
    )
    assert sorted(p.name for p in committed.glob("*.md")) == sorted(p.name for p in written), stale
    for path in written:
        assert (committed / path.name).read_text() == path.read_text(), f"{path.name}: {stale}"


def test_guide_pages_cover_every_family_and_preset():
    pages = guide_pages(CATALOG)
    assert set(pages) == {f"{f}.md" for f in ALL_FAMILIES} | {"README.md"}
    for name, card in MODEL_CARDS.items():
        page = pages[f"{card.family}.md"]
        assert f"| `{name}` | {card.note} |" in page
        if name in CATALOG and card.family != "classical":
            assert f"{CATALOG[name]['parameters']:,}" in page
        elif card.family == "classical":  # sized by the fit, whatever the catalogue holds
            assert f"| `{name}` | {card.note} | set by the fit |" in page
    from fieldguide.guide.rules import ROWS

    for rule in ROWS:  # the selection table is the rules' own, so it cannot drift from them
        assert rule.why in pages["README.md"]


def test_diagram_links_point_at_headings_of_the_gallery():
    gallery = (ROOT / "docs" / "diagrams.md").read_text()
    anchors, seen = set(), {}
    for heading in re.findall(r"^#+ (.+)$", gallery, re.M):
        slug = re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-")
        anchors.add(slug if slug not in seen else f"{slug}-{seen[slug]}")
        seen[slug] = seen.get(slug, 0) + 1
    links = [
        a
        for page in guide_pages(CATALOG).values()
        for a in re.findall(r"\.\./diagrams\.md#([\w-]+)", page)
    ]
    assert links and set(links) <= anchors, set(links) - anchors


def test_code_citations_of_the_guide_point_at_pages_that_exist():
    pages = guide_pages(CATALOG)
    cited = []
    for path in (ROOT / "fieldguide").rglob("*.py"):
        for page, anchor in re.findall(r"docs/guide/([\w.-]+\.md)(?:#([\w-]+))?", path.read_text()):
            cited.append((path.name, page))
            assert page in pages, (path, page)
            if anchor:
                slugs = {
                    re.sub(r"[^\w\- ]", "", h.lower()).replace(" ", "-")
                    for h in re.findall(r"^#+ (.+)$", pages[page], re.M)
                }
                assert anchor in slugs, (path, page, anchor)
    assert cited


def test_generator_command_line(tmp_path, capsys):
    assert main([str(tmp_path / "out")]) == 0
    assert (tmp_path / "out" / "README.md").is_file()
    assert f"wrote {len(ALL_FAMILIES) + 1} pages" in capsys.readouterr().out
    afile = tmp_path / "file.md"
    afile.write_text("x")
    assert main([str(afile)]) == 2
    assert "is a file" in capsys.readouterr().err
    assert main(["a", "b"]) == 2
    assert "usage" in capsys.readouterr().err


CITING = [
    *[p for p in (ROOT / "fieldguide" / "models").glob("*.py") if p.name != "classical.py"],
    *(ROOT / "fieldguide" / "layers").glob("*.py"),
    *[
        ROOT / "fieldguide" / p
        for p in (
            "tasks/retrieval_metrics.py",
            "tasks/ranking.py",
            "tasks/metric_learning.py",
            "train/params.py",
            "data/movielens.py",
            "data/fields.py",
            "lora.py",
        )
    ],
]


@pytest.mark.parametrize("path", CITING, ids=lambda p: p.name)
def test_code_cites_guide_pages_not_section_numbers(path):
    text = path.read_text()
    assert not re.search(r"guide §\d", text, re.I), f"{path}: cite docs/guide/<family>.md instead"
