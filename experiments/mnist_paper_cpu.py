"""§4.3, the paper's own CPU implementation: 5 000 iterations, batch 50, learning rate 0.001, SGD with
momentum (0.9 assumed: the paper gives no value). Paper: CNN 99.1 %, feed-forward 97.0 % test accuracy,
about 4 hours per model on an Intel i7 3770K.

    python experiments/mnist_paper_cpu.py --model cnn --out runs/mnist-paper-cpu-cnn
"""

import sys

from cnnlab.mnist.cli import run_experiment
from cnnlab.train import TrainConfig


def config(model: str = "cnn") -> TrainConfig:
    return TrainConfig(steps=5_000, batch_size=50, learning_rate=0.001, momentum=0.9, eval_every=500,
                       checkpoint_every=500, select_metric="accuracy", select_mode="max")


if __name__ == "__main__":
    sys.exit(run_experiment(config, description=__doc__.splitlines()[0]))
