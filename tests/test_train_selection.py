"""Best-on-validation selection (§4.3) against weights trained outside the engine's loop: the reported
validation and test numbers are those of the best step's weights, not the last step's."""

import jax
import numpy as np
import pytest

import train_tiny
from cnnlab import train

EVAL_EVERY, PEAK = 4, 12  # validation at steps 4, 8, ..., 24; the labels below make step 12 the best


def _accuracy_and_error(logits, batch):
    accuracy = train_tiny.metrics_fn(logits, batch)["accuracy"]
    return {"accuracy": accuracy, "error": 1 - accuracy}


@pytest.fixture(scope="module")
def trajectory():
    """The weights after every validation step, from the engine's own ``train_step`` driven by hand with the
    engine's batch order (``train_indices``), and validation labels that only step 12's weights fit exactly:
    that model's own predictions."""
    config = train_tiny.config(eval_every=EVAL_EVERY)
    model, (train_source, val) = train_tiny.TinyNet(), train_tiny.sources()
    state = train.create_train_state(model, config, (train_source.arrays["x"][:1],))
    train_step, eval_step = train.make_steps(model, train_tiny.loss_fn, _accuracy_and_error)
    weights = {}
    for step in range(config.steps):
        batch = train_source[train.train_indices(len(train_source), config.batch_size, config.seed, step)]
        state, _ = train_step(state, batch)
        if (step + 1) % EVAL_EVERY == 0:
            weights[step + 1] = jax.device_get({"params": state.params, "batch_stats": state.batch_stats})
    predict = jax.jit(lambda v, x: model.apply(v, x, train=False).argmax(-1))
    labels = np.asarray(predict(weights[PEAK], val.arrays["x"]), np.int32)
    peaked = train.ArraySource(x=val.arrays["x"], y=labels)
    scores = {s: train.evaluate(eval_step, w, peaked, 16) for s, w in weights.items()}
    # The peak is unique: every other validation step's weights miss some of these labels.
    assert scores[PEAK]["accuracy"] == 1.0 and all(scores[s]["accuracy"] < 1.0 for s in scores if s != PEAK)
    return weights, eval_step, peaked, val


@pytest.mark.parametrize("metric,mode", [("accuracy", "max"), ("error", "min")])
def test_reported_numbers_are_those_of_the_best_steps_weights(trajectory, tmp_path, metric, mode):
    weights, eval_step, peaked, test = trajectory
    train_source, _ = train_tiny.sources()
    config = train_tiny.config(eval_every=EVAL_EVERY, select_metric=metric, select_mode=mode)
    results = train.train_and_evaluate(config, tmp_path, model=train_tiny.TinyNet(), loss_fn=train_tiny.loss_fn,
                                       metrics_fn=_accuracy_and_error, train_source=train_source,
                                       val_source=peaked, test_source=test)
    assert results["best_step"] == PEAK < results["steps"] == 24
    best, last = weights[PEAK], weights[24]
    jax.tree.map(np.testing.assert_array_equal, train.load_best_variables(tmp_path, best)[0], best)
    for split, source in (("val", peaked), ("test", test)):
        at_best, at_last = (train.evaluate(eval_step, w, source, 16) for w in (best, last))
        for key in ("loss", "accuracy"):
            assert results[f"{split}_{key}"] == pytest.approx(at_best[key], rel=1e-6, abs=1e-7), (split, key)
        assert results[f"{split}_loss"] != pytest.approx(at_last["loss"], rel=1e-3), split
    assert results["val_accuracy"] == 1.0


def test_without_validation_data_the_last_steps_weights_are_kept_and_tested(trajectory, tmp_path):
    weights, eval_step, _, test = trajectory
    train_source, _ = train_tiny.sources()
    config = train_tiny.config(eval_every=EVAL_EVERY, checkpoint_every=8)
    results = train.train_and_evaluate(config, tmp_path, model=train_tiny.TinyNet(), loss_fn=train_tiny.loss_fn,
                                       metrics_fn=_accuracy_and_error, train_source=train_source,
                                       val_source=None, test_source=test)
    assert results["best_step"] == results["steps"] == 24 and "val_loss" not in results
    last = weights[24]
    jax.tree.map(np.testing.assert_array_equal, train.load_best_variables(tmp_path, last)[0], last)
    assert results["test_loss"] == pytest.approx(train.evaluate(eval_step, last, test, 16)["loss"], rel=1e-6)
