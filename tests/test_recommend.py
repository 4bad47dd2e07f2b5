"""Selection rules (guide §0 rows, §14 constraints), `recommend` and `auto_model`: no torch."""

import argparse
import subprocess
import sys

import pytest

from fieldguide.guide import recommend as rec
from fieldguide.guide import rules
from fieldguide.guide.recommend import format_recommendations, recommend
from fieldguide.guide.rules import CLASSICAL, PRETRAINED, ROWS, catalog, cost_class, size_mb
from fieldguide.guide.select import auto_model

# Which catalogue tasks a row's task may be served by, and which inputs a modality reads.
TASKS_OF_ROW = {
    "classification": {
        "classification",
        "text-classification",
        "sequence-classification",
        "node-classification",
        "graph-classification",
    },
    "regression": {"regression"},
    "ctr": {"ctr"},
    "ranking": {"ranking"},
    "segmentation": {"segmentation"},
    "generation": {"generation", "language-modelling"},
    "seq2seq": {"seq2seq"},
    "forecasting": {"forecasting"},
    "retrieval": {"metric-learning"},
}
READS_OF_MODALITY = {
    "tables": {"vectors", "fields"},
    "images": {"images"},
    "text": {"tokens", "token-pairs"},
    "sequences": {"sequences"},
    "time-series": {"sequences"},
    "speech": {"sequences"},
    "graphs": {"graph", "vectors"},
    "interactions": {"interactions"},
}


@pytest.fixture
def no_carriers(monkeypatch):
    """As if neither pretrained carrier package were installed."""
    monkeypatch.setattr(rules, "carrier_installed", lambda model: False)


@pytest.fixture
def carriers(monkeypatch):
    """As if both pretrained carrier packages were installed."""
    monkeypatch.setattr(rules, "carrier_installed", lambda model: True)


def models(recs):
    return [r.model for r in recs]


def card(name):
    return catalog()[name]


# ---- the table itself -------------------------------------------------------------------


@pytest.mark.parametrize("row", ROWS, ids=lambda r: f"{r.modality}/{r.task}")
def test_every_row_names_registered_models_that_fit_its_data_and_task(row):
    assert row.pick not in row.alternatives and len(set(row.candidates)) == len(row.candidates)
    assert row.why and f"-> {row.pick} (" in row.rule
    for name in row.candidates:
        if name in CLASSICAL:
            assert CLASSICAL[name].reads in READS_OF_MODALITY[row.modality] | {"vectors"}
            continue
        assert name in catalog(), name
        assert card(name)["reads"] in READS_OF_MODALITY[row.modality], name
        tasks = TASKS_OF_ROW[row.task]
        if row.modality == "tables" and row.task == "classification":
            tasks = tasks | {"ctr"}  # Wide & Deep and DLRM classify binary targets
        assert set(card(name)["tasks"]) & tasks, name


def test_every_guide_row_has_a_rule():
    guide_rows = {
        "Tabular (CTR/ranking)",
        "Images (classification)",
        "Images (segmentation)",
        "Text understanding",
        "Text/code generation",
        "Seq2Seq (translation)",
        "Time series",
        "Speech (streaming ASR)",
        "Graphs",
        "Retrieval/verification",
        "Generative (images)",
    }
    assert {row.guide for row in ROWS} - {""} == guide_rows
    ours = {(row.modality, row.task) for row in ROWS if not row.guide}
    assert {("tables", "classification"), ("tables", "regression")} <= ours
    assert {("sequences", "classification"), ("interactions", "ranking")} <= ours


# ---- one test per §0 row ---------------------------------------------------------------


def test_row_tabular_ctr_picks_embeddings_for_sparse_ids():
    recs = recommend(modality="tables", task="ctr")
    assert card(recs[0].model)["family"] == "recsys" and card(recs[0].model)["reads"] == "fields"
    assert "dlrm" in recs[0].alternatives and "guide row: Tabular (CTR/ranking)" in recs[0].rule
    assert recs[0].command.startswith(f"fieldguide train {recs[0].model} --data ")


def test_row_images_classification_pretrained_first_with_scratch_beside(carriers):
    recs = recommend(modality="images", task="classification")
    top = recs[0]
    assert card(top.model)["config"].get("pretrained") is True
    assert top.alternatives[0] == PRETRAINED[top.model].scratch
    assert card(top.alternatives[0])["config"]["pretrained"] is False
    assert any("pretrained" in s for s in top.meets)


def test_row_images_classification_without_carrier_says_how_to_install(no_carriers):
    recs = recommend(modality="images")
    assert recs[0].model not in PRETRAINED and card(recs[0].model)["family"] == "resnet"
    last = next(r for r in recs if r.model == "mobilenetv2")
    assert any(PRETRAINED["mobilenetv2"].install in s for s in last.breaks)
    assert models(recs).index("mobilenetv2") == len(recs) - 1  # breaking it ranks it last


def test_row_images_segmentation_picks_a_unet():
    recs = recommend(modality="images", task="segmentation")
    assert all(card(r.model)["family"] == "unet" for r in recs)
    assert "uses_skips" in card(recs[0].model)["invariants"]


def test_row_text_understanding_picks_an_encoder(carriers):
    recs = recommend(modality="text", task="understanding")
    top = card(recs[0].model)
    assert top["reads"] == "tokens" and "text-classification" in top["tasks"]
    assert recs[0].alternatives[0] == "bert-tiny" and "tfidf-logreg" in recs[0].alternatives


def test_row_text_generation_picks_a_streamable_decoder():
    recs = recommend(modality="text", task="generation")
    top = card(recs[0].model)
    assert "language-modelling" in top["tasks"] and "streamable" in top["invariants"]


def test_row_seq2seq_picks_an_encoder_decoder():
    recs = recommend(modality="text", task="translation")
    assert card(recs[0].model)["reads"] == "token-pairs"


def test_row_time_series_picks_a_causal_long_receptive_field():
    recs = recommend(modality="time-series")
    top = card(recs[0].model)
    assert "forecasting" in top["tasks"] and "causal" in top["invariants"]
    assert "seasonal-naive" in recs[0].alternatives  # the classical baseline beside it


def test_row_speech_maps_to_streamable_sequences_and_says_so():
    recs = recommend(modality="speech")
    assert "streamable" in card(recs[0].model)["invariants"]
    assert any("MFCC" in tip and "RNN-T" in tip for tip in recs[0].tips)


def test_row_graphs_picks_a_permutation_equivariant_gnn():
    recs = recommend(modality="graphs")
    assert "permutation_equivariant" in card(recs[0].model)["invariants"]
    assert "spectral-logreg" in recs[0].alternatives


@pytest.mark.parametrize("modality", ["images", "text", "sequences", "tables"])
def test_row_retrieval_picks_a_siamese_encoder_of_that_input(modality):
    recs = recommend(modality=modality, task="verification")
    top = card(recs[0].model)
    assert top["family"] == "contrastive" and top["reads"] in READS_OF_MODALITY[modality]
    assert any("--loss triplet" in tip and "arcface" in tip for tip in recs[0].tips)


def test_row_generative_images_picks_diffusion_first():
    recs = recommend(modality="images", task="generation")
    assert card(recs[0].model)["family"] == "diffusion"
    assert {card(m)["family"] for m in recs[0].alternatives} >= {"vae", "flows"}


def test_rows_of_our_own_tables_sequences_interactions():
    assert recommend(modality="tables")[0].model == "gbdt"
    assert recommend(modality="tables", task="regression")[0].command.endswith("--task regression")
    assert "causal" in card(recommend(modality="sequences")[0].model)["invariants"]
    assert card(recommend(modality="interactions")[0].model)["reads"] == "interactions"


# ---- one test per §14 constraint: it changes the ranking or the reason ----------------


def test_rows_small_table_trees_first_large_table_a_network():
    small = recommend(modality="tables", rows=2_000)
    large = recommend(modality="tables", rows=500_000)
    assert small[0].model == "gbdt" and "small table" in small[0].rule
    assert any("trees first" in s for s in small[0].meets)
    assert large[0].model != "gbdt" and card(large[0].model)["family"] == "mlp"
    gbdt = next(r for r in large if r.model == "gbdt")
    assert any("large table" in s for s in gbdt.breaks)


def test_high_cardinality_ids_and_many_fields_pick_wide_deep_then_dlrm():
    base = recommend(modality="tables", rows=5_000)
    ids = recommend(modality="tables", rows=5_000, id_cardinality=50_000)
    many = recommend(modality="tables", rows=5_000, id_cardinality=50_000, fields=12)
    assert base[0].model == "gbdt"
    assert ids[0].model == "wide-deep" and "high-cardinality IDs" in ids[0].rule
    assert many[0].model == "dlrm" and any("12 categorical fields" in s for s in many[0].meets)


def test_classes_few_labels_per_class_lift_pretrained_and_classical(no_carriers):
    plain = models(recommend(modality="images"))
    few = models(recommend(modality="images", rows=100, classes=10))
    assert few.index("knn") < plain.index("knn")
    ctr = recommend(modality="tables", task="ctr", classes=3)
    assert all(any("binary target" in s for s in r.breaks) for r in ctr)


def test_imbalance_weights_the_loss_and_adds_the_tip():
    plain = recommend(modality="images", task="classification")
    skewed = recommend(modality="images", task="classification", imbalance=10)
    assert "--class-weights" not in plain[0].command
    assert skewed[0].command.endswith("--class-weights balanced")
    assert any(t.startswith("imbalance: weighted or focal loss") for t in skewed[0].tips)
    seg = recommend(modality="images", task="segmentation", imbalance=10)
    assert "--loss focal" in seg[0].command
    assert "weighted or focal" not in " ".join(plain[0].tips)


def test_streaming_keeps_only_streamable_models_ahead():
    plain = recommend(modality="sequences")
    live = recommend(modality="sequences", streaming=True)
    assert not plain[-1].breaks  # nothing is broken without the constraint
    ok = [r for r in live if not r.breaks]
    assert ok and all(rules.streamable(r.model) for r in ok)
    assert all(not rules.streamable(r.model) for r in live[len(ok) :])
    assert "gru-bi" in models(live[len(ok) :])
    # data scored input by input: the reason says streaming changes nothing, the order stays
    images = recommend(modality="images", streaming=True)
    assert models(images) == models(recommend(modality="images"))
    assert any("changes nothing" in s for s in images[0].meets)


def test_latency_budget_ranks_cheap_models_first(carriers):
    plain = recommend(modality="images")
    fast = recommend(modality="images", latency_ms=10)
    assert cost_class(fast[0].model)[1] <= 10 < cost_class(plain[0].model)[1]
    slow = [r for r in fast if r.breaks]
    assert slow and all("over the 10 ms budget" in r.breaks[0] for r in slow)


def test_on_device_size_drops_models_that_do_not_fit(carriers):
    plain = recommend(modality="text")
    small = recommend(modality="text", max_size_mb=5)
    assert size_mb(plain[0].model) > 5 >= size_mb(small[0].model)
    big = next(r for r in small if r.model == plain[0].model)
    assert any("over the 5 MB" in s for s in big.breaks)


def test_long_sequences_prefer_state_space_over_tcn_and_attention(carriers):
    plain = recommend(modality="sequences")
    long = recommend(modality="sequences", seq_len=20_000)
    assert card(plain[0].model)["family"] == "tcn"
    assert card(long[0].model)["family"] == "ssm" and "long sequence" in long[0].rule
    text = recommend(modality="text", seq_len=2_000)
    mini = next(r for r in text if r.model == "minilm")
    assert text[0].model != "minilm" and any("512" in s for s in mini.breaks)


def test_pretrained_not_allowed_falls_back_to_training_from_scratch(carriers):
    allowed = recommend(modality="text")
    refused = recommend(modality="text", pretrained=False)
    assert allowed[0].model in PRETRAINED and refused[0].model not in PRETRAINED
    assert refused[0].model == PRETRAINED[allowed[0].model].scratch


def test_compute_budget_rules_out_large_networks_from_scratch(no_carriers):
    plain = recommend(modality="images", image_size=224)
    quick = recommend(modality="images", image_size=224, budget_minutes=2)
    big = next(r for r in quick if r.model == "resnet18")
    assert plain[0].model == "resnet18" and quick[0].model != "resnet18"
    assert any("rarely converge in 2 minutes" in s for s in big.breaks)
    assert quick[0].command.endswith("--time-limit 120")


def test_structure_ranks_models_that_build_it_in():
    plain = models(recommend(modality="images"))
    flat = models(recommend(modality="images", structure="none"))
    assert flat.index("vit-tiny") < plain.index("vit-tiny")
    graph = recommend(structure="graph")
    assert card(graph[0].model)["family"] == "gnn"
    assert any("graph structure" in s for s in graph[0].meets)


def test_tiny_batches_groupnorm_tip_and_flag(carriers):
    plain = recommend(modality="images", image_size=224)
    tiny = recommend(modality="images", image_size=224, batch_size=4)
    assert plain[0].model == "mobilenetv2" and tiny[0].model != "mobilenetv2"
    resnet = next(r for r in tiny if card(r.model)["config"].get("norm") == "batch")
    assert resnet.command.endswith("--batch-size 4 --set norm=group")
    assert any(t.startswith("tiny batches: GroupNorm") for t in tiny[0].tips)


def test_padding_masks_tip_for_padded_inputs_only():
    def has_tip(recs):
        return any(t.startswith("padding: masks") for t in recs[0].tips)

    assert has_tip(recommend(modality="text")) and has_tip(recommend(modality="sequences"))
    assert not has_tip(recommend(modality="tables")) and not has_tip(recommend(modality="images"))


# ---- own data, formatting, the CLI shell -----------------------------------------------


def test_data_csv_table_fills_rows_classes_and_imbalance(tmp_path):
    path = tmp_path / "table.csv"
    lines = ["a,b,label"] + [f"{i},{i % 7},{'yes' if i % 10 == 0 else 'no'}" for i in range(200)]
    path.write_text("\n".join(lines) + "\n")
    recs = recommend(data=str(path))
    assert recs[0].model == "gbdt" and any("200 rows" in s for s in recs[0].meets)
    assert any("9:1" in s for s in recs[0].meets)  # 180 'no' over 20 'yes'
    assert recs[0].command == f"fieldguide train gbdt --data {path}"
    # a flag beside --data overrides what the data says
    assert recommend(data=str(path), rows=500_000)[0].model != "gbdt"


def test_data_image_folder_reads_channels_and_size(tmp_path, no_carriers):
    from PIL import Image

    for c in ("cat", "dog"):
        (tmp_path / c).mkdir()
        for i in range(3):
            Image.new("L", (16, 16), color=i * 40).save(tmp_path / c / f"{i}.png")
    recs = recommend(data=str(tmp_path))
    assert recs[0].model == "resnet-tiny" and "small images" in recs[0].rule


def test_format_shows_rule_reasons_command_and_tips():
    text = format_recommendations(recommend(modality="tables", rows=300, imbalance=5), top=2)
    assert text.startswith("1. gbdt") and "\n2. " in text and "\n3. " not in text
    assert "train    fieldguide train gbdt --data PATH" in text
    assert "small table: trees first" in text and "imbalance:" in text


def test_cli_shell_parses_and_prints(capsys):
    parser = argparse.ArgumentParser()
    rec.add_arguments(parser)
    args = parser.parse_args(["--modality", "sequences", "--streaming", "--top", "1"])
    assert rec.main(args) == 0
    out = capsys.readouterr().out
    assert out.startswith("1. ") and "\n2. " not in out and "streams" in out


def test_every_command_parses_with_the_train_parser(carriers):
    import shlex

    from fieldguide.cli.main import build_parser

    parser = build_parser()
    cases = [
        {"modality": "images", "imbalance": 9, "batch_size": 4, "budget_minutes": 1.5},
        {"modality": "images", "task": "segmentation", "imbalance": 9},
        {"modality": "tables", "task": "regression", "rows": 300},
        {"modality": "text", "max_size_mb": 1, "latency_ms": 2},
    ]
    for kwargs in cases:
        for r in recommend(**kwargs):
            argv = shlex.split(r.command)
            assert argv[:3] == ["fieldguide", "train", r.model]
            args = parser.parse_args(argv[1:])
            assert args.model_pos == r.model and args.data == "PATH"
    flags = " ".join(r.command for r in recommend(**cases[0]))
    assert "--time-limit 90" in flags and "--set norm=group" in flags


def test_recommend_and_auto_model_import_no_torch():
    code = (
        "import sys, argparse, io, contextlib\n"
        "from fieldguide.guide import recommend as r\n"
        "from fieldguide.guide.select import auto_model\n"
        "p = argparse.ArgumentParser(); r.add_arguments(p)\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        "    r.main(p.parse_args(['--modality', 'images', '--latency-ms', '10']))\n"
        "    r.main(p.parse_args(['--data', 'digits']))\n"
        "auto_model('text', (256,)); auto_model('images', (3, 64, 64))\n"
        "print('torch' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False", out.stderr


# ---- errors: one sentence naming the flag -----------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"latency_ms": -3}, "--latency-ms expects a positive number; got -3."),
        ({"max_size_mb": 0}, "--max-size-mb expects a positive number; got 0."),
        ({"rows": 2.5}, "--rows expects an integer; got 2.5."),
        ({"classes": 1}, "--classes expects an integer of at least 2; got 1."),
        ({"imbalance": 0.5}, "--imbalance expects a number of at least 1; got 0.5."),
        ({"budget_minutes": float("nan")}, "--budget-minutes expects a number; got nan."),
        ({"structure": "tree"}, "--structure expects one of spatial, temporal, graph, none"),
        ({"modality": "audio-video"}, "--modality expects one of tables, images"),
        ({"modality": "graphs", "task": "segmentation"}, "--task expects one of classification"),
        ({}, "recommend needs --data PATH or --modality"),
        ({"modality": 3}, "--modality expects a name such as images; got 3."),
    ],
)
def test_bad_input_is_one_sentence_naming_the_flag(kwargs, message):
    kwargs = {"modality": "images", **kwargs} if kwargs and "modality" not in kwargs else kwargs
    with pytest.raises(ValueError) as info:
        recommend(**kwargs)
    text = str(info.value)
    assert text.startswith(message) and text.count(". ") == 0 and text.endswith(".")


def test_cli_bad_numbers_are_refused_by_flag():
    parser = argparse.ArgumentParser()
    rec.add_arguments(parser)
    with pytest.raises(ValueError, match=r"^--latency-ms expects a number; got 'fast'\.$"):
        rec.main(parser.parse_args(["--modality", "images", "--latency-ms", "fast"]))
    with pytest.raises(ValueError, match=r"^--top expects a positive integer"):
        rec.main(parser.parse_args(["--modality", "images", "--top", "0"]))


def test_missing_data_path_is_refused():
    with pytest.raises(ValueError, match="does not exist"):
        recommend(data="/no/such/table.csv")


# ---- auto_model: the same rules --------------------------------------------------------


def test_auto_model_small_table_trees_first_large_table_mlp():
    name, reason = auto_model("tabular", (5,))
    assert name == "gbdt" and "trees first on small tables" in reason
    name, reason = auto_model("tabular", (5,), rows=99_999)
    assert name == "gbdt"
    name, reason = auto_model("tabular", (5,), rows=100_000)
    assert name == "mlp" and "large table" in reason
    assert auto_model("tabular", (5,), rows=10, task="regression")[0] == "gbdt"


def test_auto_model_ids_and_fields_pick_wide_deep_or_dlrm():
    name, reason = auto_model("tabular", (5,), rows=1_000, id_cardinality=20_000)
    assert name == "wide-deep" and "20,000 values" in reason
    assert auto_model("fields", ())[0] == "wide-deep"
    assert auto_model("fields", (), fields=12)[0] == "dlrm"


def test_auto_model_text_minilm_when_installed_else_bert_tiny(monkeypatch):
    monkeypatch.setattr(rules, "carrier_installed", lambda model: True)
    assert auto_model("text", (256,))[0] == "minilm"
    monkeypatch.setattr(rules, "carrier_installed", lambda model: False)
    name, reason = auto_model("text", (256,))
    assert name == "bert-tiny" and PRETRAINED["minilm"].install in reason
    assert auto_model("text", ())[0] == "gpt-mini"  # a token stream: generation


def test_auto_model_images(monkeypatch):
    monkeypatch.setattr(rules, "carrier_installed", lambda model: True)
    assert auto_model("images", (3, 224, 224))[0] == "mobilenetv2"
    assert auto_model("images", (3, 32, 32))[0] == "mobilenetv2"
    assert auto_model("images", (3, 28, 28))[0] == "resnet-tiny"  # under 32 pixels
    assert auto_model("images", (1, 64, 64))[0] == "resnet-tiny"  # not RGB
    assert auto_model("images", (3, 224, 224), pretrained_available=False)[0] == "resnet18"
    monkeypatch.setattr(rules, "carrier_installed", lambda model: False)
    assert auto_model("images", (3, 64, 64))[0] == "resnet-tiny"
    assert auto_model("images", (3, 224, 224))[0] == "resnet18"


@pytest.mark.parametrize(
    ("modality", "shape", "flags"),
    [
        ("images", (3, 96, 96), {"modality": "images", "channels": 3, "image_size": 96}),
        ("segmentation", (), {"modality": "images", "task": "segmentation"}),
        ("tabular", (4,), {"modality": "tables"}),
        ("fields", (), {"modality": "tables", "task": "ctr"}),
        ("time-series", (), {"modality": "time-series"}),
        ("sequences", (), {"modality": "sequences"}),
        ("speech", (), {"modality": "speech"}),
        ("text", (), {"modality": "text", "task": "generation"}),
        ("text", (128,), {"modality": "text"}),
        ("seq2seq", (), {"modality": "text", "task": "seq2seq"}),
        ("graphs", (), {"modality": "graphs"}),
        ("interactions", (), {"modality": "interactions"}),
    ],
)
def test_auto_model_is_recommends_first_pick(modality, shape, flags):
    name, reason = auto_model(modality, shape)
    assert name == recommend(**flags)[0].model and name in reason


def test_auto_model_refuses_unknown_modality_and_fact():
    with pytest.raises(ValueError, match="no default model for modality 'video'"):
        auto_model("video", ())
    with pytest.raises(ValueError, match="unknown fact"):
        auto_model("tabular", (3,), colour="red")
