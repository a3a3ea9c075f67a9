"""The engine's AdamW and warm-up + cosine options against hand-written references."""

import jax.numpy as jnp
import numpy as np
import pytest

from cnnlab import train


def test_cosine_schedule_warms_up_linearly_then_decays_to_zero():
    config = train.TrainConfig(steps=110, batch_size=1, learning_rate=0.4, schedule="cosine", warmup_steps=10)
    schedule = train.learning_rate_schedule(config)
    for step, expected in ((0, 0.0), (5, 0.2), (10, 0.4), (60, 0.2), (110, 0.0)):
        assert float(schedule(step)) == pytest.approx(expected, abs=1e-6)


def test_adamw_updates_match_the_adam_equations_with_decoupled_decay():
    config = train.TrainConfig(steps=10, batch_size=1, learning_rate=0.1, optimizer="adamw", weight_decay=0.5)
    tx = train.make_optimizer(config)
    p = np.array([1.0, -2.0, 0.5])
    params = {"w": jnp.asarray(p, jnp.float32)}
    state = tx.init(params)
    m = v = np.zeros(3)
    for t, g in enumerate([np.array([0.3, -1.0, 2.0]), np.array([-0.1, 0.4, 0.0]), np.array([1.0, 1.0, -3.0])], 1):
        updates, state = tx.update({"w": jnp.asarray(g, jnp.float32)}, state, params)
        params = {"w": params["w"] + updates["w"]}
        m, v = 0.9 * m + 0.1 * g, 0.999 * v + 0.001 * g * g
        p = p - 0.1 * ((m / (1 - 0.9 ** t)) / (np.sqrt(v / (1 - 0.999 ** t)) + 1e-8) + 0.5 * p)
        np.testing.assert_allclose(params["w"], p, rtol=1e-5)


def test_unknown_optimizer_or_schedule_is_rejected():
    with pytest.raises(ValueError, match="optimizer"):
        train.TrainConfig(steps=1, batch_size=1, learning_rate=0.1, optimizer="adam")
    with pytest.raises(ValueError, match="schedule"):
        train.TrainConfig(steps=1, batch_size=1, learning_rate=0.1, schedule="linear")


def test_cosine_warmup_as_long_as_the_run_is_rejected():
    with pytest.raises(ValueError, match=r"warmup_steps must be in \[0, steps\).*got 50 with steps 20"):
        train.TrainConfig(steps=20, batch_size=1, learning_rate=0.1, schedule="cosine", warmup_steps=50)
