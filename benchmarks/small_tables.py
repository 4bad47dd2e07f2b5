"""Default `fieldguide train --data table.csv` against logistic regression on small real tables.

Writes scikit-learn's wine (178 rows, 3 classes), iris (150 rows, 3 classes) and diabetes with
a binarised target (442 rows, target > median) as CSV files into a temporary folder. For each
table and split seed it

1. runs `fieldguide.api.train(data=csv)` exactly as `fieldguide train --data table.csv
   --split-seed S` does (model "auto", the default recipe, runs in a temporary folder) and
   takes its test accuracy ("ours");
2. fits sklearn's LogisticRegression(max_iter=5000) on the same split, on the very same
   features (the CSV reader's train-median imputation and train z-scoring), once on the train
   rows only (what our network trains on) and once on train+val (our run also sees val, to
   choose its weights);
3. replays the same run with the library's Trainer and the same seeds, recording every epoch's
   validation metrics, test accuracy and weights, and scores each rule for choosing the weights
   to keep on that one trajectory (selection does not change training when patience is 0, the
   default). The replay checks that its restored model scores what api.train scored.

Selection rules: acc = best val accuracy, first epoch reaching it (the rule before
TIE_BREAK in fieldguide/train/loop.py); loss = lowest val loss; acc>loss = best val accuracy,
ties broken by lower val loss (the trainer's rule for the default monitor since TIE_BREAK);
last = the last epoch; avg5 = mean of the last 5 epochs' weights. The output names the rules
whose scores equal api.train's on every row.

Measured (20 split seeds, paired against LR on train rows, points): acc -1.3 / -3.9 / -0.1 on
wine / iris / diabetes; acc>loss +0.0 / +0.0 / -0.6; loss +0.0 / -0.2 / -1.7. A 66-row test set
makes one seed's gap swing by about 4 points (sd), so a 3-seed mean moves by about 2.5.

Runs on one CPU thread (torch.set_num_threads(1)); the default run takes about a minute.

Run:  .venv/bin/python benchmarks/small_tables.py [--seeds 0,1,2] [--recipe epochs=60,lr=0.01]
      [--model-config hidden_dim=64] [--tables wine,iris,diabetes]
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

torch.set_num_threads(1)

RULES = ("acc", "loss", "acc>loss", "last", "avg5")


def write_tables(folder: Path, names: list[str]) -> dict[str, Path]:
    """The tables as CSV files with a `target` column; returns name -> path."""
    from sklearn.datasets import load_diabetes, load_iris, load_wine

    paths = {}
    for name in names:
        if name == "wine":
            bunch = load_wine()
            x, y, cols = bunch.data, bunch.target, list(bunch.feature_names)
        elif name == "iris":
            bunch = load_iris()
            x, y, cols = bunch.data, bunch.target, list(bunch.feature_names)
        elif name == "diabetes":
            bunch = load_diabetes()
            x, cols = bunch.data, list(bunch.feature_names)
            y = (bunch.target > np.median(bunch.target)).astype(int)
        else:
            raise ValueError(f"unknown table '{name}'; choose from wine, iris, diabetes.")
        path = folder / f"{name}.csv"
        with path.open("w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow([*cols, "target"])
            for row, label in zip(x, y, strict=True):
                writer.writerow([*(repr(float(v)) for v in row), int(label)])
        paths[name] = path
    return paths


def parse_overrides(text: str) -> dict:
    """'epochs=60,lr=0.01' -> {'epochs': 60, 'lr': 0.01} (ints, floats, else strings)."""
    out = {}
    for part in filter(None, text.split(",")):
        key, value = part.split("=", 1)
        for cast in (int, float):
            try:
                out[key.strip()] = cast(value)
                break
            except ValueError:
                continue
        else:
            out[key.strip()] = value.strip()
    return out


def logistic_regression(data) -> tuple[float, float]:
    """Test accuracy of LogisticRegression fitted on train, and on train+val."""
    from sklearn.linear_model import LogisticRegression

    xtr, ytr = data.train.x.numpy(), data.train.y.numpy()
    xva, yva = data.val.x.numpy(), data.val.y.numpy()
    xte, yte = data.test.x.numpy(), data.test.y.numpy()
    on_train = LogisticRegression(max_iter=5000).fit(xtr, ytr).score(xte, yte)
    both = LogisticRegression(max_iter=5000).fit(
        np.concatenate([xtr, xva]), np.concatenate([ytr, yva])
    )
    return float(on_train), float(both.score(xte, yte))


def replay(csv_path: Path, seed: int, recipe: dict, model_config: dict) -> dict:
    """Rerun the api's run with a per-epoch recorder; score each selection rule on it."""
    from fieldguide.api.config import DataConfig, RunConfig
    from fieldguide.api.run import _load
    from fieldguide.models.registry import replace_config
    from fieldguide.train.config import TrainConfig
    from fieldguide.train.loop import Trainer

    cfg = replace_config(TrainConfig(), "train", **recipe) if recipe else TrainConfig()
    run = RunConfig(
        model="auto",
        model_config=dict(model_config),
        data=DataConfig(name=str(csv_path), split_seed=seed),
        train=cfg,
    )
    data, task, model, run, _ = _load(run)
    epochs: list[dict] = []

    def record(trainer, rec):
        test = task.evaluate(trainer.model, "test", device=trainer.device, batch_size=256)
        weights = {k: v.detach().cpu().clone() for k, v in trainer.model.state_dict().items()}
        epochs.append(
            {
                "val_acc": rec["val/accuracy"],
                "val_loss": rec["val/loss"],
                "test_acc": test["test/accuracy"],
                "weights": weights,
            }
        )

    trainer = Trainer(model, task, run.train, epoch_callbacks=[record], progress="quiet")
    trainer.fit()
    restored = task.evaluate(model, "test", device=trainer.device, batch_size=256)["test/accuracy"]

    # Each rule's chosen epoch, with the trainer's tie-breaking: the first epoch that is best.
    n = len(epochs)
    val_acc = [e["val_acc"] for e in epochs]
    val_loss = [e["val_loss"] for e in epochs]
    chosen = {
        "acc": max(range(n), key=lambda i: (val_acc[i], -i)),
        "loss": min(range(n), key=lambda i: (val_loss[i], i)),
        "acc>loss": max(range(n), key=lambda i: (val_acc[i], -val_loss[i], -i)),
        "last": n - 1,
    }
    scores = {rule: epochs[i]["test_acc"] for rule, i in chosen.items()}
    last = [e["weights"] for e in epochs[-5:]]
    model.load_state_dict(
        {k: torch.stack([w[k].float() for w in last]).mean(0).to(last[0][k].dtype) for k in last[0]}
    )
    scores["avg5"] = task.evaluate(model, "test", device=trainer.device, batch_size=256)[
        "test/accuracy"
    ]
    return {
        "data": data,
        "scores": scores,
        "epochs": {rule: i + 1 for rule, i in chosen.items()},
        "trace": [(e["val_acc"], e["val_loss"], e["test_acc"]) for e in epochs],
        "restored": restored,
        "sizes": task.split_sizes(),
        "model": run.model,
        "model_config": run.model_config,
        "train_config": run.train,
    }


def pct(x: float) -> str:
    return f"{100 * x:.1f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tables", default="wine,iris,diabetes")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--recipe", default="", help="TrainConfig overrides: epochs=60,lr=0.01")
    parser.add_argument("--model-config", default="", help="model overrides, e.g. hidden_dim=64")
    parser.add_argument("--verbose", action="store_true", help="print each run's per-epoch trace")
    args = parser.parse_args()

    from fieldguide.api import train
    from fieldguide.api.config import DataConfig

    tables = args.tables.split(",")
    seeds = [int(s) for s in args.seeds.split(",")]
    recipe = parse_overrides(args.recipe)
    model_config = parse_overrides(args.model_config)
    rows = []
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        paths = write_tables(tmp, tables)
        for name in tables:
            for seed in seeds:
                result = train(
                    data=str(paths[name]),
                    model_config=model_config or None,
                    data_config=DataConfig(split_seed=seed),
                    runs_dir=tmp / "runs",
                    progress="quiet",
                    **recipe,
                )
                ours = result.test_metrics["test/accuracy"]
                rep = replay(paths[name], seed, recipe, model_config)
                if rep["restored"] != ours:
                    raise SystemExit(
                        f"replay mismatch on {name} seed {seed}: api.train {ours}, "
                        f"replay {rep['restored']}"
                    )
                lr_train, lr_both = logistic_regression(rep["data"])
                rows.append(
                    {
                        "table": name,
                        "seed": seed,
                        "ours": ours,
                        "lr_train": lr_train,
                        "lr_both": lr_both,
                        **rep,
                    }
                )

    first = rows[0]
    cfg = first["train_config"]
    print("# Small tables: default `fieldguide train --data table.csv` vs logistic regression\n")
    print(
        f"torch threads: {torch.get_num_threads()}; model: {first['model']} "
        f"{ {k: v for k, v in first['model_config'].items() if not k.startswith(('in_', 'out_'))} }"
    )
    changed = {
        f.name: getattr(cfg, f.name)
        for f in dataclasses.fields(cfg)
        if getattr(cfg, f.name) != f.default
    }
    print(f"recipe: TrainConfig defaults{' with ' + str(changed) if changed else ''}")
    print(f"wall time: {time.perf_counter() - start:.0f} s")
    for name in tables:
        sizes = next(r["sizes"] for r in rows if r["table"] == name)
        print(f"{name}: train/val/test rows {sizes['train']}/{sizes['val']}/{sizes['test']}")
    print(
        "\nTest accuracy in %. ours = api.train with the model and recipe above; "
        "LR = LogisticRegression(max_iter=5000) on train rows (LR tr) or train+val rows "
        "(LR tr+val); diff = ours - LR tr.\n"
    )
    print("| table | seed | ours | LR tr | LR tr+val | diff | " + " | ".join(RULES) + " |")
    print("|---|---|---|---|---|---|" + "---|" * len(RULES))
    for r in rows:
        rule_cells = " | ".join(
            pct(r["scores"][k]) + (f" (e{r['epochs'][k]})" if k in r["epochs"] else "")
            for k in RULES
        )
        print(
            f"| {r['table']} | {r['seed']} | {pct(r['ours'])} | {pct(r['lr_train'])} | "
            f"{pct(r['lr_both'])} | {100 * (r['ours'] - r['lr_train']):+.1f} | {rule_cells} |"
        )
    if args.verbose:
        for r in rows:
            print(f"\n{r['table']} seed {r['seed']}: epoch, val acc, val loss, test acc")
            for i, (va, vl, ta) in enumerate(r["trace"]):
                print(f"  {i + 1:3d}  {pct(va):>5}  {vl:.4f}  {pct(ta):>5}")
    shipped = [k for k in RULES if all(r["scores"][k] == r["ours"] for r in rows)]
    print(f"\napi.train's choice matches rule(s): {', '.join(shipped) or 'none'}")
    print("\nAverages over seeds " + ",".join(map(str, seeds)) + ":\n")
    print("| table | ours | LR tr | LR tr+val | diff | " + " | ".join(RULES) + " |")
    print("|---|---|---|---|---|" + "---|" * len(RULES))
    for name in tables:
        sub = [r for r in rows if r["table"] == name]
        ours, lrt, lrb = (
            statistics.fmean(r[k] for r in sub) for k in ("ours", "lr_train", "lr_both")
        )
        rule_cells = " | ".join(pct(statistics.fmean(r["scores"][k] for r in sub)) for k in RULES)
        print(
            f"| {name} | {pct(ours)} | {pct(lrt)} | {pct(lrb)} | {100 * (ours - lrt):+.1f} | "
            f"{rule_cells} |"
        )


if __name__ == "__main__":
    main()
