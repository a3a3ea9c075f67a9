"""Training and evaluating the MNIST models with the cnnlab engine (§4.3).

The task's own pieces: images scaled to [0, 1] inside ``jit`` (uint8 travels to the device), the
cross-entropy of Eq. (53) and accuracy (``cnnlab.train.tasks``), and the best weights picked on validation
accuracy. ``train(config, workdir)`` trains; ``evaluate(workdir)`` scores a run's best weights again.
"""

import jax.numpy as jnp
import numpy as np

from cnnlab import train as engine
from cnnlab.mnist.config import MnistConfig
from cnnlab.mnist.data import load_mnist
from cnnlab.mnist.model import count_kernel_weights, make_model
from cnnlab.train import tasks

TASK = "mnist"
EXAMPLE = (np.zeros((1, 28, 28, 1), np.float32),)


def inputs(batch):
    return (batch["x"].astype(jnp.float32)[..., None] / 255.0,)  # [N, 28, 28, 1] in [0, 1]


def sources(data_dir=None) -> dict:
    return {split: engine.ArraySource(x=x, y=y) for split, (x, y) in load_mnist(data_dir).items()}


def train(config: MnistConfig, workdir, *, data_dir=None) -> dict:
    """Train the Table 1 (``"cnn"``) or Table 2 (``"mlp"``) model on MNIST; returns the results dict.

    data_dir: folder with the four MNIST IDX files (default: ``$CNNLAB_DATA_DIR/mnist``, else bundled).
    """
    model = make_model(config.model, config.grad, engine.compute_dtype(config.precision))
    data = sources(data_dir)
    num_weights = count_kernel_weights(tasks.variables_template(model, *EXAMPLE)["params"])
    return engine.train_and_evaluate(
        tasks.engine_config(config), workdir, model=model, loss_fn=tasks.CLASSIFICATION_LOSSES[config.grad],
        metrics_fn=tasks.accuracy, inputs_fn=inputs, train_source=data["train"], val_source=data["val"],
        test_source=data["test"], task_config=tasks.task_settings(config, TASK),
        extra_results={"model": config.model, "grad": config.grad, "num_weights": num_weights})


def load_trained(workdir):
    """(model, best variables, config) of a run written by ``train``."""
    config = tasks.read_run(workdir, TASK, MnistConfig)
    model = make_model(config.model, config.grad, engine.compute_dtype(config.precision))
    return model, tasks.load_best(workdir, model, *EXAMPLE), config


def evaluate(workdir, *, data_dir=None, batch_size: int = 500) -> dict:
    """Validation and test loss/accuracy of the best weights saved in ``workdir`` by ``train``."""
    model, variables, config = load_trained(workdir)
    _, eval_step = engine.make_steps(model, tasks.CLASSIFICATION_LOSSES[config.grad], tasks.accuracy, inputs)
    data = sources(data_dir)
    results = {"model": config.model, "grad": config.grad, "precision": config.precision}
    for split in ("val", "test"):
        results.update({f"{split}_{k}": v for k, v in
                        engine.evaluate(eval_step, variables, data[split], batch_size).items()})
    return results
