"""The MNIST runs of §4.3 (Table 3 and the paper's CPU runs) as named configs of ``MnistConfig``.

``cnnlab train mnist --config NAME`` runs one (``cnnlab configs mnist`` lists them). The engine minimises
the batch mean of the cross-entropy, Eq. (53) sums it over the R = 50 examples of a batch: the paper's steps
need the learning rate x50 here (``paper_cpu_*``); ``paper_cpu_literal_lr_*`` keep 0.001 on the mean.
"""

import dataclasses

from cnnlab.nn import GRADS
from cnnlab.train.state import TrainConfig

MODELS = ("cnn", "mlp")
DEFAULT = "default"


@dataclasses.dataclass(frozen=True)
class MnistConfig(TrainConfig):
    """Training the Table 1 CNN (``model="cnn"``) or the Table 2 feed-forward net (``"mlp"``) on MNIST."""
    model: str = "cnn"
    grad: str = "custom"              # the paper's custom VJPs or JAX autodiff
    steps: int = 600
    batch_size: int = 50
    learning_rate: float = 0.05
    # §4.3 divides the learning rate by 10 at 70 % and 90 % of training (70 000 and 90 000 of 100 000).
    lr_boundaries: tuple = (420, 540)
    lr_scales: tuple = (0.1, 0.1)
    eval_every: int = 120             # 5 000 validation images: not too often
    checkpoint_every: int = 120
    select_metric: str = "accuracy"
    select_mode: str = "max"

    def __post_init__(self):
        super().__post_init__()
        if self.model not in MODELS:
            raise ValueError(f"MnistConfig: model must be one of {MODELS}, got {self.model!r}")
        if self.grad not in GRADS:
            raise ValueError(f"MnistConfig: grad must be one of {GRADS}, got {self.grad!r}")


CONFIG_CLASS = MnistConfig


def default() -> MnistConfig:
    """Laptop run (not in the paper): 600 steps, a few minutes on a 2-core CPU (docs/results.md)."""
    return MnistConfig()


def _table3(model: str) -> MnistConfig:
    # Batch size: not stated for these runs; 50 as in the CPU runs.
    return MnistConfig(model=model, steps=100_000, batch_size=50, learning_rate=0.001,
                       lr_boundaries=(70_000, 90_000), eval_every=5_000, checkpoint_every=5_000)


def table3_cnn() -> MnistConfig:
    """Table 3, CNN (PyTorch GPU run): 100 000 it., lr 0.001 /10 at 70 000 and 90 000; paper 99.30 %."""
    return _table3("cnn")


def table3_mlp() -> MnistConfig:
    """Table 3, feed-forward net (PyTorch GPU run): as table3_cnn; paper 97.40 %."""
    return _table3("mlp")


def _paper_cpu(model: str, literal_lr: bool = False) -> MnistConfig:
    # Momentum 0.9 assumed: the paper gives no value.
    lr = 0.001 if literal_lr else 0.001 * 50  # Eq. (53) sums over the batch of 50
    return MnistConfig(model=model, steps=5_000, batch_size=50, learning_rate=lr, lr_boundaries=(),
                       lr_scales=(), eval_every=500, checkpoint_every=500)


def paper_cpu_cnn() -> MnistConfig:
    """§4.3 CPU run, CNN: 5 000 it., batch 50, lr 0.001 on the summed loss (0.05 on the mean); paper 99.1 %."""
    return _paper_cpu("cnn")


def paper_cpu_mlp() -> MnistConfig:
    """§4.3 CPU run, feed-forward net: as paper_cpu_cnn; paper 97.0 %."""
    return _paper_cpu("mlp")


def paper_cpu_literal_lr_cnn() -> MnistConfig:
    """§4.3 CPU run, CNN, lr 0.001 on the mean loss (a 50x smaller step than the paper's)."""
    return _paper_cpu("cnn", literal_lr=True)


def paper_cpu_literal_lr_mlp() -> MnistConfig:
    """§4.3 CPU run, feed-forward net, lr 0.001 on the mean loss (a 50x smaller step than the paper's)."""
    return _paper_cpu("mlp", literal_lr=True)


def _cpu_15min(model: str, steps: int, batch_size: int, learning_rate: float) -> MnistConfig:
    return MnistConfig(model=model, steps=steps, batch_size=batch_size, learning_rate=learning_rate,
                       lr_boundaries=(int(0.7 * steps), int(0.9 * steps)), eval_every=steps // 4,
                       checkpoint_every=steps // 4)


def cpu_15min_cnn() -> MnistConfig:
    """Not in the paper: the best CNN run in ~15 minutes on the 2-core CPU (900 it., lr 0.05; docs/results.md)."""
    return _cpu_15min("cnn", 900, 50, 0.05)


def cpu_15min_mlp() -> MnistConfig:
    """Not in the paper: the best feed-forward run in ~15 minutes on the 2-core CPU (20 000 it., batch 128)."""
    return _cpu_15min("mlp", 20_000, 128, 0.1)
