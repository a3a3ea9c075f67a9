"""``SequenceConfig``: every setting of ``cnnlab train sequence``, one set of defaults for every dataset.

The defaults are not the paper's (§6 trains only on MNIST): a Single-block TCN with the original TCN's
exponential dilations [33], as deep as the training sequences are long, a batch normalization after every
convolution (statistics over the real steps only), unit-norm filters at initialisation, trained with AdamW
on a warm-up + cosine schedule with gradient clipping, on the whole training set, the last weights kept,
unless a fifth of it makes a validation set of 50 or more sequences (then the weights best on it are kept).
The model and optimiser settings were chosen on GunPoint, ItalyPowerDemand and BasicMotions; training small
sets whole and the batch normalization were chosen on all ten datasets of ``benchmarks/ucr.py``
(docs/results.md). The same defaults serve every dataset.
"""

import dataclasses


@dataclasses.dataclass(frozen=True)
class SequenceConfig:
    data: str = ""                  # .npz or NAME_TRAIN.ts (cnnlab.sequence.data)
    transform: str = "none"         # of the raw inputs before standardising: or "signed_log" (data.transform)
    # Model (cnnlab.tcn.TemporalConvNet + a dense classifier).
    block: str = "single"
    channels: int = 32
    kernel_size: int = 5
    dilation: str = "exponential"   # 2^(b-1) as [33]; "linear" is the paper's 3b - 2
    num_blocks: int | None = None   # None: the fewest blocks whose receptive field covers receptive_field
    receptive_field: int | None = None  # None: the longest training sequence
    dropout: float = 0.1
    norm: str = "batch"             # after every convolution: "batch", "layer" or "none" (cnnlab.tcn.model)
    readout: str = "mean"           # "mean" of the features over the real steps, or the "last" step's
    crop: float = 1.0               # < 1: train on random windows of >= crop of each sequence (model.py)
    grad: str = "custom"
    init: str = "unit_norm"         # train.unit_norm_init, or "tcn": the original TCN's N(0, 0.01) [33]
    # Training (cnnlab.train.TrainConfig).
    steps: int = 1000
    batch_size: int = 16
    learning_rate: float = 5e-3     # 2.5x the original TCN's Adam 2e-3 [33] (docs/results.md)
    weight_decay: float = 1e-2
    warmup_steps: int = 50
    grad_clip_norm: float | None = 1.0
    label_smoothing: float = 0.0
    precision: str = "float32"      # or "bfloat16" (mixed precision, cnnlab.train.TrainConfig)
    time_budget: float | None = None  # minutes: steps is then the most (cnnlab.train.TrainConfig)
    val_fraction: float = 0.2       # of every class held out, the best-on-validation weights kept ...
    min_validation: int = 50        # ... if that is at least this many sequences; else (or with val_fraction
                                    # 0) train on all of them and keep the last weights (docs/results.md)
    eval_every: int = 50
    seed: int = 0
    progress: bool = True


CONFIG_CLASS = SequenceConfig
DEFAULT = "default"


def default() -> SequenceConfig:
    """Not in the paper: the TCN classifier of cnnlab train sequence and benchmarks/ucr.py, one set for every dataset.

    AdamW, warm-up + cosine, clipping; chosen on GunPoint, ItalyPowerDemand and BasicMotions (docs/results.md)."""
    return SequenceConfig()
