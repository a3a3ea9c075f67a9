"""Training the TCN on Sequential / Permuted MNIST with the cnnlab engine (§6.3.3).

The task's own pieces: pixels normalised inside ``jit`` (uint8 travels to the device) and the model; the
loss is the cross-entropy of the prediction at the last time step (§6.3.3, following [33]; optionally
label-smoothed, not in the paper) and the best weights are picked on validation accuracy
(``cnnlab.train.tasks``). ``train(config, workdir)`` trains; ``evaluate(workdir)`` scores a run's best weights
again.
"""

import jax
import numpy as np

from cnnlab import train as engine
from cnnlab.tcn.config import SeqMnistConfig
from cnnlab.tcn.data import SEQUENCE_LENGTH, load_seqmnist, to_sequences
from cnnlab.tcn.model import TCN
from cnnlab.train import tasks

TASK = "seqmnist"
EXAMPLE = (np.zeros((1, SEQUENCE_LENGTH, 1), np.float32),)


def inputs(batch):
    return (to_sequences(batch["x"]),)  # [N, 784, 1]


def make_model(config: SeqMnistConfig) -> TCN:
    return TCN(block=config.block, num_blocks=config.blocks, channels=config.channels,
               kernel_size=config.kernel_size, dropout=config.dropout, dilation=config.dilation,
               padding=config.padding, grad=config.grad, dtype=engine.compute_dtype(config.precision))


def sources(config: SeqMnistConfig, data_dir=None) -> dict:
    data = load_seqmnist(config.permuted, config.permutation_seed, data_dir)
    out = {split: engine.ArraySource(x=x, y=y) for split, (x, y) in data.items()}
    x, y = data["train"]
    out["train"] = engine.ArraySource(x=x[:config.train_examples], y=y[:config.train_examples])
    return out


def train(config: SeqMnistConfig, workdir, *, data_dir=None) -> dict:
    """Train the TCN of ``config`` on SeqMNIST (PMNIST if ``config.permuted``); returns the results dict.

    Only ``config.train_examples`` training sequences if set (quick runs); validation and test stay complete.
    """
    model = make_model(config)
    data = sources(config, data_dir)
    params = tasks.variables_template(model, *EXAMPLE)["params"]
    task = tasks.task_settings(config, TASK)
    loss = tasks.ClassificationLoss(config.grad, config.label_smoothing)
    return engine.train_and_evaluate(
        tasks.engine_config(config), workdir, model=model, loss_fn=loss, metrics_fn=tasks.accuracy,
        inputs_fn=inputs, train_source=data["train"], val_source=data["val"], test_source=data["test"],
        task_config=task,
        extra_results={**task, "num_blocks": model.num_blocks, "receptive_field": model.receptive_field(),
                       "num_params": int(sum(np.prod(p.shape) for p in jax.tree.leaves(params)))})


def load_trained(workdir):
    """(model, best variables, config) of a run written by ``train``."""
    config = tasks.read_run(workdir, TASK, SeqMnistConfig)
    model = make_model(config)
    return model, tasks.load_best(workdir, model, *EXAMPLE), config


def evaluate(workdir, *, data_dir=None, batch_size: int = 500) -> dict:
    """Validation and test loss/accuracy of the best weights saved in ``workdir`` by ``train``."""
    model, variables, config = load_trained(workdir)
    _, eval_step = engine.make_steps(model, tasks.CLASSIFICATION_LOSSES[config.grad], tasks.accuracy, inputs)
    data = sources(config, data_dir)
    results = {"block": config.block, "permuted": config.permuted}
    for split in ("val", "test"):
        results.update({f"{split}_{k}": v for k, v in
                        engine.evaluate(eval_step, variables, data[split], batch_size).items()})
    return results
