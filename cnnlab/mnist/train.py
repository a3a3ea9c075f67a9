"""Training and evaluating the MNIST models with the cnnlab engine (§4.3).

The task's own pieces: images scaled to [0, 1] inside ``jit`` (uint8 travels to the device), the
cross-entropy of Eq. (53) through ``ops.cross_entropy`` (or its autodiff twin), accuracy, and the best
weights picked on validation accuracy.
"""

import functools
import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from cnnlab import train
from cnnlab.mnist.data import load_mnist
from cnnlab.mnist.models import count_kernel_weights, make_model
from cnnlab.nn import GRADS, op


def inputs(batch):
    return (batch["image"].astype(jnp.float32)[..., None] / 255.0,)  # [N, 28, 28, 1] in [0, 1]


def _loss(logits, batch, grad):
    return op("cross_entropy", grad)(logits, batch["label"])


LOSSES = {grad: functools.partial(_loss, grad=grad) for grad in GRADS}  # one object each: compiles are reused


def metrics(logits, batch):
    return {"accuracy": (jnp.argmax(logits, -1) == batch["label"]).astype(jnp.float32)}


def sources(data_dir=None) -> dict:
    return {split: train.ArraySource(image=x, label=y) for split, (x, y) in load_mnist(data_dir).items()}


def train_and_evaluate(config: train.TrainConfig, workdir, *, model: str = "cnn", grad: str = "custom",
                       data_dir=None) -> dict:
    """Train the Table 1 (``"cnn"``) or Table 2 (``"mlp"``) model on MNIST; returns the results dict."""
    network = make_model(model, grad)
    data = sources(data_dir)
    variables = jax.eval_shape(lambda: network.init(jax.random.key(0), np.zeros((1, 28, 28, 1), np.float32),
                                                    train=False))
    return train.train_and_evaluate(
        config, workdir, model=network, loss_fn=LOSSES[grad], metrics_fn=metrics, inputs_fn=inputs,
        train_source=data["train"], val_source=data["val"], test_source=data["test"],
        task_config={"task": "mnist", "model": model, "grad": grad},
        extra_results={"model": model, "grad": grad,
                       "num_weights": count_kernel_weights(variables["params"])})


def evaluate_checkpoint(workdir, data_dir=None, batch_size: int = 500) -> dict:
    """Validation and test loss/accuracy of the best weights saved in ``workdir`` by ``train_and_evaluate``."""
    config_path = Path(workdir) / "config.json"
    if not config_path.exists():
        raise FileNotFoundError(f"evaluate_checkpoint: {config_path} not found; is {workdir} a training run?")
    task = json.loads(config_path.read_text())["task"]
    if task.get("task") != "mnist":
        raise ValueError(f"evaluate_checkpoint: {workdir} holds a {task.get('task')!r} run, not mnist")
    network = make_model(task["model"], task["grad"])
    template = jax.eval_shape(lambda: network.init(jax.random.key(0), np.zeros((1, 28, 28, 1), np.float32),
                                                   train=False))
    variables, meta = train.load_best_variables(workdir, template)
    _, eval_step = train.make_steps(network, LOSSES[task["grad"]], metrics, inputs)
    data = sources(data_dir)
    results = {"model": task["model"], "grad": task["grad"], "best_step": meta["best_step"]}
    for split in ("val", "test"):
        results.update({f"{split}_{k}": v for k, v in
                        train.evaluate(eval_step, variables, data[split], batch_size).items()})
    return results
