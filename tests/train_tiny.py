"""A tiny classification task for the training-engine tests (also run as a script in a subprocess with
8 forced CPU devices): BatchNorm + dense layers + dropout, so batch statistics and RNG streams are exercised."""

import json
import sys

import flax.linen as nn
import numpy as np
import optax

from cnnlab import train


class TinyNet(nn.Module):
    @nn.compact
    def __call__(self, x, train):
        x = nn.BatchNorm(use_running_average=not train, momentum=0.9)(x)
        x = nn.relu(nn.Dense(16)(x))
        x = nn.Dropout(0.1, deterministic=not train)(x)
        return nn.Dense(3)(x)


def loss_fn(logits, batch):
    return optax.softmax_cross_entropy_with_integer_labels(logits, batch["y"])


def metrics_fn(logits, batch):
    return {"accuracy": (logits.argmax(-1) == batch["y"]).astype(np.float32)}


def sources():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 5)).astype(np.float32)
    y = ((x[:, 0] > 0).astype(np.int32) + (x[:, 1] > 0.5)).astype(np.int32)
    return train.ArraySource(x=x[:160], y=y[:160]), train.ArraySource(x=x[160:], y=y[160:])


def config(**overrides):
    settings = dict(steps=24, batch_size=16, learning_rate=0.1, lr_boundaries=(12,), lr_scales=(0.1,),
                    eval_every=6, checkpoint_every=12, eval_batch_size=16, log_every=1,
                    select_metric="accuracy", select_mode="max", progress=False)
    return train.TrainConfig(**{**settings, **overrides})


def run(workdir, train_source=None, init_variables=None, **overrides):
    train_default, val = sources()
    return train.train_and_evaluate(config(**overrides), workdir, model=TinyNet(), loss_fn=loss_fn,
                                    metrics_fn=metrics_fn, train_source=train_source or train_default,
                                    val_source=val, test_source=val, task_config={"model": "tiny"},
                                    init_variables=init_variables)


if __name__ == "__main__":  # python tests/train_tiny.py WORKDIR: print the results and training losses
    results = run(sys.argv[1])
    losses = [r["loss"] for r in train.MetricsLog(f"{sys.argv[1]}/metrics.jsonl").read() if r["split"] == "train"]
    print(json.dumps({"results": results, "losses": losses}))


class Interrupted(Exception):
    pass


class KilledAt(train.ArraySource):
    """Training source that raises ``Interrupted`` when asked for training batch number ``at`` (a run stopped
    mid-way)."""

    def __init__(self, source, at):
        super().__init__(**source.arrays)
        self.at, self.calls = at, 0

    def __getitem__(self, indices):
        if len(indices) > 1:
            if self.calls == self.at:
                raise Interrupted
            self.calls += 1
        return super().__getitem__(indices)
