"""Does a small TCN leave the initial loss plateau (ln 10) in 60 steps? SGD-momentum vs Adam.

    python experiments/tcn_optimizer_check.py sgd 0.1      # the paper's peak rate
    python experiments/tcn_optimizer_check.py adam 0.002   # the original TCN's optimiser [33]

3 Single blocks x 16 channels, k = 6, dilations (1, 20, 50) (receptive field 711: the digit's rows), the
model's own N(0, 0.01) initialisation, batch 100 of SeqMNIST, 60 steps; prints the mean training loss of
the first and last 10 steps. A diagnostic for docs/results.md, not a paper experiment.
"""

import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax

from cnnlab.tcn import TCN
from cnnlab.tcn.data import load_seqmnist, to_sequences


def main(optimizer: str, lr: float, steps: int = 60) -> None:
    x, y = load_seqmnist()["train"]
    model = TCN(block="single", num_blocks=3, channels=16, kernel_size=6, dilation=(1, 20, 50))
    params = model.init(jax.random.key(0), jnp.zeros((1, 784, 1)))["params"]
    opt = optax.adam(lr) if optimizer == "adam" else optax.sgd(lr, momentum=0.9)
    opt_state = opt.init(params)

    @jax.jit
    def step(params, opt_state, xb, yb, key):
        def loss(p):
            logits = model.apply({"params": p}, to_sequences(xb), train=True, rngs={"dropout": key})
            return optax.softmax_cross_entropy_with_integer_labels(logits, yb).mean()
        value, grads = jax.value_and_grad(loss)(params)
        updates, opt_state = opt.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, value

    rng, losses = np.random.default_rng(0), []
    for i in range(steps):
        idx = rng.integers(0, len(x), 100)
        params, opt_state, value = step(params, opt_state, x[idx], y[idx], jax.random.key(i))
        losses.append(float(value))
    print(f"{optimizer} lr {lr}: training loss, first 10 steps {np.mean(losses[:10]):.3f}, "
          f"last 10 steps {np.mean(losses[-10:]):.3f} (ln 10 = 2.303)")


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] not in ("sgd", "adam"):
        sys.exit(__doc__)
    main(sys.argv[1], float(sys.argv[2]))
