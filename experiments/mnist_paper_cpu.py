"""§4.3, the paper's own CPU implementation: 5 000 iterations, batch 50, learning rate 0.001, SGD with
momentum (0.9 assumed: the paper gives no value). Paper: CNN 99.1 %, feed-forward 97.0 % test accuracy,
about 4 hours per model on an Intel i7 3770K.

The paper's loss, Eq. (53), sums the cross-entropy over the R = 50 examples of a batch; the engine minimises
the mean, so the same steps need learning rate 0.001 x 50 = 0.05 here (``--literal-lr`` keeps 0.001 on the
mean, a 50x smaller step; docs/results.md has both).

    python experiments/mnist_paper_cpu.py --model cnn --out runs/mnist-paper-cpu-cnn
"""

import sys

from cnnlab.mnist.cli import run_experiment
from cnnlab.train import TrainConfig


BATCH_SIZE, PAPER_LR = 50, 0.001


def config(model: str = "cnn", literal_lr: bool = False) -> TrainConfig:
    lr = PAPER_LR if literal_lr else PAPER_LR * BATCH_SIZE  # Eq. (53) sums over the batch
    return TrainConfig(steps=5_000, batch_size=BATCH_SIZE, learning_rate=lr, momentum=0.9, eval_every=500,
                       checkpoint_every=500, select_metric="accuracy", select_mode="max")


if __name__ == "__main__":
    literal = "--literal-lr" in sys.argv
    argv = [a for a in sys.argv[1:] if a != "--literal-lr"]
    sys.exit(run_experiment(lambda model: config(model, literal), argv, description=__doc__.splitlines()[0]))
