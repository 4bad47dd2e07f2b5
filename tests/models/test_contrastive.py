"""The Siamese / two-tower embedder: unit-norm embeddings, towers, heads and its loss extras."""

import pytest
import torch

from fieldguide import create_model
from fieldguide.models.base import DataSpec
from fieldguide.models.contrastive import TEMPERATURE_RANGE, VectorEmbedder

TINY = {"feature_dim": 16, "embed_dim": 8}


def build(**overrides):
    torch.manual_seed(0)
    return create_model("siamese-mlp", **{**TINY, **overrides}).eval()


@pytest.mark.parametrize(
    "name", ["siamese-mlp", "siamese-resnet-tiny", "siamese-gru", "siamese-bert-tiny"]
)
def test_every_embedding_has_unit_length_through_either_head(name):
    torch.manual_seed(0)
    model = create_model(name).eval()
    x = model.example_input(3)
    with torch.no_grad():
        for head in (False, True):
            z = model(*x, head=head) if isinstance(x, tuple) else model(x, head=head)
            width = model.config.embed_dim if head else model.config.feature_dim
            assert z.shape == (3, width)
            torch.testing.assert_close(z.norm(dim=1), torch.ones(3))


def test_retrieval_reads_the_backbone_unless_told_to_read_the_head():
    x = torch.randn(4, 64)
    backbone = build()
    assert backbone.embedding_dim == 16 and backbone(x).shape == (4, 16)
    with torch.no_grad():
        features = torch.nn.functional.normalize(backbone.backbone(x), dim=1)
        torch.testing.assert_close(backbone(x), features)
    assert any(n.startswith("projection.") for n in backbone.loss_parameters())
    head = build(retrieval="projection")
    assert head.embedding_dim == 8 and head(x).shape == (4, 8)
    assert not any(n.startswith("projection.") for n in head.loss_parameters())


def test_separate_towers_have_their_own_weights_and_shared_ones_do_not():
    x = torch.randn(4, 64)
    two = build(shared=False)
    with torch.no_grad():
        assert not torch.allclose(two(x, tower=0), two(x, tower=1))
        one = build()
        torch.testing.assert_close(one(x, tower=0), one(x, tower=1))
    mine = {id(p) for p in two.backbone.parameters()}
    assert not mine & {id(p) for p in two.gallery.parameters()}
    with pytest.raises(ValueError, match="tower must be 0 .* or 1 .*; got 2"):
        two(x, tower=2)


def test_the_temperature_starts_where_asked_and_never_leaves_its_range():
    low, high = TEMPERATURE_RANGE
    model = build(temperature=0.2)
    assert model.temperature().item() == pytest.approx(0.2, rel=1e-5)
    with torch.no_grad():
        for value in (-1e4, 1e4):
            model.temperature_logit.fill_(value)
            t = model.temperature().item()  # float32: the bounds to float32's precision
            assert low * (1 - 1e-6) <= t <= high * (1 + 1e-6)
    assert not build(learn_temperature=False).temperature_logit.requires_grad


def test_the_data_sizes_the_input_and_the_centres():
    config = VectorEmbedder.config_for_data(
        create_model("siamese-mlp").config, DataSpec((12,), 3, output="embedding")
    )
    assert config.in_shape == (12,) and config.num_classes == 3
    model = VectorEmbedder(config)
    assert model.class_centres.shape == (3, config.embed_dim)
    with pytest.raises(ValueError, match="gives one output per embedding"):
        VectorEmbedder.config_for_data(config, DataSpec((12,), 3))  # a classification spec


def test_errors_name_the_embedder_not_its_backbone():
    model = build()
    with pytest.raises(ValueError, match="^siamese-mlp expects"):
        model(torch.randn(2, 5))


def test_a_backbone_that_reads_something_else_is_refused():
    with pytest.raises(ValueError, match="reads vectors; backbone='resnet-tiny' reads images"):
        create_model("siamese-mlp", backbone="resnet-tiny")
