"""The TCN experiments of §6.3.3 (Tables 5–6) as configs: each returns ``(model, train config, permuted)``.

    python experiments/tcn_seqmnist.py NAME OUT_DIR      # e.g. single_seqmnist runs/tcn_single

runs one of them with ``cnnlab.tcn.train.train_and_evaluate`` (the same as ``cnnlab train seqmnist``).
"""

import sys

from cnnlab.tcn.model import TCN
from cnnlab.tcn.train import paper_config, scaled_config, train_and_evaluate

# §6.3.3: 24 convolutions of 32 channels, k = 6, linear dilations, left-only padding.
PAPER_BLOCKS = {"single": 12, "double": 12, "radical": 6}


def paper_model(block: str) -> TCN:
    return TCN(block=block, num_blocks=PAPER_BLOCKS[block], channels=32, kernel_size=6, dilation="linear")


def single_seqmnist():  # Table 5: 99.53 % test accuracy
    return paper_model("single"), paper_config(), False


def double_seqmnist():  # Table 5: 99.34 %
    return paper_model("double"), paper_config(), False


def radical_seqmnist():  # Table 5: 99.37 %
    return paper_model("radical"), paper_config(), False


def single_pmnist():  # Table 6: 97.86 %
    return paper_model("single"), paper_config(permuted=True), True


def double_pmnist():  # Table 6: 97.36 %
    return paper_model("double"), paper_config(permuted=True), True


def radical_pmnist():  # Table 6: 97.82 %
    return paper_model("radical"), paper_config(permuted=True), True


def original_tcn_seqmnist():
    """[33]'s sMNIST model (8 levels x 25 channels, k = 7, dilation 2^(b-1), pad + chomp; 99.0 %) on the
    paper's SGD schedule ([33] itself trained with Adam, lr 2e-3)."""
    model = TCN(block="single", num_blocks=8, channels=25, kernel_size=7, dilation="exponential",
                padding="symmetric")
    return model, paper_config(), False


def single_seqmnist_cpu():
    """The CPU-budget run of docs/results.md: the Single model on the paper's schedule shortened to the
    steps that fit (decays at the same fractions of the run)."""
    return paper_model("single"), scaled_config(steps=400, eval_every=200), False


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] not in globals() or sys.argv[1].startswith("_"):
        sys.exit(__doc__)
    model, config, permuted = globals()[sys.argv[1]]()
    print(train_and_evaluate(config, sys.argv[2], model, permuted=permuted))
