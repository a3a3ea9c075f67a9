"""Sequential and Permuted Sequential MNIST (§6.3.1–6.3.2): each image as 784 one-channel time steps.

SeqMNIST reads the pixels row by row; PMNIST applies one fixed permutation of the 784 positions, drawn
from a recorded seed, to every image of every split (§6.3.2: "all images are randomly permuted the same
way"). The splits are ``load_mnist``'s 55 000 / 5 000 / 10 000 (§6.3.3).
"""

import jax.numpy as jnp
import numpy as np

from cnnlab.mnist.data import load_mnist

SEQUENCE_LENGTH = 784
PERMUTATION_SEED = 1234  # the PMNIST permutation; recorded in every run's config.json
# Input normalisation of the original TCN's MNIST code [33] (torchvision's MNIST mean and std).
MNIST_MEAN, MNIST_STD = 0.1307, 0.3081


def permutation(seed: int = PERMUTATION_SEED) -> np.ndarray:
    """The PMNIST pixel order: a permutation of ``range(784)`` drawn from ``seed``."""
    return np.random.default_rng(seed).permutation(SEQUENCE_LENGTH)


def load_seqmnist(permuted: bool = False, seed: int = PERMUTATION_SEED, data_dir=None) -> dict:
    """``{"train" | "val" | "test": (x uint8 [N, 784], y int32 [N])}``; ``x[:, t]`` is pixel ``t``.

    permuted: reorder the pixels of every split by ``permutation(seed)`` (PMNIST).
    """
    order = permutation(seed) if permuted else np.arange(SEQUENCE_LENGTH)
    return {split: (x.reshape(len(x), SEQUENCE_LENGTH)[:, order], y)
            for split, (x, y) in load_mnist(data_dir).items()}


def to_sequences(x):
    """``uint8 [N, 784] -> float32 [N, 784, 1]``, normalised like [33]; cheap enough to run inside jit."""
    if x.ndim != 2:
        raise ValueError(f"to_sequences: x must be uint8 pixels [N, T], got shape {x.shape}")
    return ((x.astype(jnp.float32) / 255.0 - MNIST_MEAN) / MNIST_STD)[..., None]
