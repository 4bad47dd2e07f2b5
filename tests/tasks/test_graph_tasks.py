import pytest
import torch

from fieldguide.tasks.graph_classification import GraphClassificationTask
from fieldguide.tasks.node_classification import NodeClassificationTask
from fieldguide.train.config import TrainConfig
from fieldguide.train.loop import Trainer
from tests.tasks.graph_stand_ins import paths_and_cliques, two_communities

METRICS = {"loss", "accuracy", "macro_f1", "ece", "auroc"}
RECIPE = TrainConfig(epochs=40, batch_size=16, lr=1e-2, weight_decay=5e-4, seed=0)


def fit(task, name, cfg=RECIPE, ckpt=None, callbacks=(), resume=False, **overrides):
    torch.manual_seed(0)
    model = task.build_model(name, **overrides)
    trainer = Trainer(model, task, cfg, checkpoint_dir=ckpt, progress="quiet", callbacks=callbacks)
    return model, trainer.fit(resume=resume)


def test_full_batch_steps_see_the_whole_graph_and_label_only_their_nodes():
    data = two_communities()
    task = NodeClassificationTask(data)
    task.build_model("gcn")
    x, edge_index, weight, positions, y = task.batch("train", torch.tensor([2, 0]))
    assert x is data.graph.x and edge_index is data.graph.edge_index  # same objects: cache hits
    assert weight.numel() == 0  # unweighted
    assert positions.tolist() == data.train[[2, 0]].tolist()
    assert y.tolist() == data.graph.y[data.train[[2, 0]]].tolist()


def test_gcn_uses_the_edges_where_features_alone_are_noise():
    data = two_communities()
    gcn, _ = fit(NodeClassificationTask(data), "gcn")
    task = NodeClassificationTask(data)
    mlp, _ = fit(task, "mlp")
    gcn_acc = NodeClassificationTask(data).evaluate(gcn, "test", device="cpu", batch_size=64)
    mlp_acc = task.evaluate(mlp, "test", device="cpu", batch_size=64)
    assert set(gcn_acc) == {f"test/{m}" for m in METRICS}
    assert gcn_acc["test/accuracy"] > 0.9  # 10 labelled nodes, the graph does the rest
    assert mlp_acc["test/accuracy"] < 0.75  # noise features: near chance


def test_sampled_mini_batch_training_runs_end_to_end():
    data = two_communities(weighted=True)
    task = NodeClassificationTask(data, fanouts=(5, 3))
    model, result = fit(task, "gcn")
    seen = []
    model.forward = lambda x, edge_index, edge_weight=None: (
        seen.append(
            (x.shape[0], edge_index.shape[1], None if edge_weight is None else edge_weight.shape[0])
        )
        or torch.zeros(x.shape[0], 2)
    )
    model.train()
    task.logits(model, task.batch("train", torch.arange(4))[:-1])
    ((nodes, edges, weights),) = seen
    assert nodes < data.graph.num_nodes and weights == edges  # sampled edges keep their weights
    assert result.status == "finished"
    assert result.best_metrics["val/accuracy"] > 0.9


def test_sampled_training_resumes_bitwise(tmp_path):
    cfg = TrainConfig(epochs=4, batch_size=4, lr=1e-2, seed=1)
    data = two_communities()

    def stop_at(step):
        def callback(trainer):
            if trainer.state.step == step:
                trainer.request_stop()

        return callback

    reference, _ = fit(NodeClassificationTask(data, fanouts=(4, 4)), "gat", cfg, tmp_path / "a")
    _, stopped = fit(
        NodeClassificationTask(data, fanouts=(4, 4)), "gat", cfg, tmp_path / "b", [stop_at(5)]
    )
    assert stopped.status == "interrupted"
    resumed, _ = fit(
        NodeClassificationTask(data, fanouts=(4, 4)), "gat", cfg, tmp_path / "b", resume=True
    )
    for key, value in reference.state_dict().items():
        assert torch.equal(value, resumed.state_dict()[key]), key


def test_node_task_rejects_options_that_cannot_apply():
    data = two_communities()
    with pytest.raises(ValueError, match="fanouts gives 2 hop.*gcn-deep has 4"):
        NodeClassificationTask(data, fanouts=(5, 5)).build_model("gcn-deep")
    with pytest.raises(ValueError, match="mlp reads node features alone"):
        NodeClassificationTask(data, fanouts=(5, 5)).build_model("mlp")
    with pytest.raises(
        ValueError, match="got readout='mean' but node-classification .* needs readout='none'"
    ):
        NodeClassificationTask(data).build_model("gcn", readout="mean")


def test_evaluation_leaves_the_model_in_training_mode():
    task = NodeClassificationTask(two_communities())
    model = task.build_model("gat").train()
    task.evaluate(model, "val", device="cpu", batch_size=8)
    assert model.training


def test_graph_batches_are_disjoint_unions_with_a_batch_vector():
    data = paths_and_cliques()
    task = GraphClassificationTask(data)
    x, edge_index, weight, batch, y = task.batch("train", torch.tensor([0, 1]))
    sizes = [data.train[0].num_nodes, data.train[1].num_nodes]
    assert batch.tolist() == [0] * sizes[0] + [1] * sizes[1]
    assert x.shape == (sum(sizes), 2) and weight.numel() == 0
    assert y.tolist() == [0, 1]
    assert int(edge_index[:, data.train[0].num_edges :].min()) >= sizes[0]


@pytest.mark.parametrize("name", ["gcn", "graphsage"])
def test_graph_classification_learns_paths_from_cliques(name):
    task = GraphClassificationTask(paths_and_cliques())
    model, result = fit(task, name, readout="sum", dropout=0.0)
    assert model.config.readout == "sum"
    test = task.evaluate(model, "test", device="cpu", batch_size=4)
    assert set(test) == {f"test/{m}" for m in METRICS}
    assert result.best_metrics["val/accuracy"] == 1.0  # the degree alone separates them
    assert test["test/accuracy"] > 0.85  # at least 9 of the 10 test graphs


def test_graph_task_defaults_to_a_mean_readout_and_refuses_non_graph_models():
    task = GraphClassificationTask(paths_and_cliques())
    assert task.build_model("gat").config.readout == "mean"
    with pytest.raises(ValueError, match="trains models that read graph; 'mlp' reads vectors"):
        task.build_model("mlp")
