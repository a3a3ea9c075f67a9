"""The best we could reach in about 15 minutes per model on the project's 2-core CPU (issue 3): a larger
learning rate than the paper's (BatchNorm allows it), divided by 10 at 70 % and 90 % of the run as in §4.3,
and as many steps as fit in the time at the speed measured beforehand (docs/results.md).

    python experiments/mnist_15min.py --model cnn --out runs/mnist-15min-cnn
"""

import sys

from cnnlab.mnist.cli import run_experiment
from cnnlab.train import TrainConfig

SETTINGS = {  # model -> (steps, batch size, learning rate)
    "cnn": (900, 50, 0.05),
    "mlp": (20_000, 128, 0.1),
}


def config(model: str = "cnn") -> TrainConfig:
    steps, batch_size, lr = SETTINGS[model]
    return TrainConfig(steps=steps, batch_size=batch_size, learning_rate=lr, momentum=0.9,
                       lr_boundaries=(int(0.7 * steps), int(0.9 * steps)), lr_scales=(0.1, 0.1),
                       eval_every=steps // 4, checkpoint_every=steps // 4, select_metric="accuracy",
                       select_mode="max")


if __name__ == "__main__":
    sys.exit(run_experiment(config, description=__doc__.splitlines()[0]))
