"""The MNIST models of Tables 1–2 and the `cnnlab train/eval mnist` commands end to end."""

import json

import jax
import numpy as np
import optax
import pytest

from cnnlab.cli import main
from cnnlab.mnist import model as mnist_model


@pytest.mark.parametrize("name,expected", [("cnn", 153_792), ("mlp", 167_168)])
def test_kernel_weights_match_table_3_parameter_counts(name, expected):
    variables = jax.eval_shape(lambda: mnist_model.make_model(name).init(
        jax.random.key(0), np.zeros((2, 28, 28, 1), np.float32), train=False))
    assert mnist_model.count_kernel_weights(variables["params"]) == expected
    assert sum(row[-1] for row in mnist_model.layer_table(name)) == expected


def test_cnn_activation_sizes_match_table_1():
    sizes = [row[3] for row in mnist_model.layer_table("cnn")]
    assert sizes == ["R x 1 x 28 x 28", "R x 64 x 26 x 26", "R x 64 x 24 x 24", "R x 64 x 12 x 12",
                     "R x 64 x 10 x 10", "R x 64 x 8 x 8", "R x 64 x 6 x 6", "R x 64 x 3 x 3",
                     "R x 10 x 1 x 1", "R x 10"]
    out = jax.eval_shape(lambda: mnist_model.CNN().init_with_output(
        jax.random.key(0), np.zeros((3, 28, 28, 1), np.float32), train=False)[0])
    assert out.shape == (3, 10)


@pytest.mark.parametrize("name", ["mlp"])  # the CNN's layers are each checked in test_nn_layers.py
def test_custom_and_autodiff_models_agree_on_loss_gradient(name):
    x = jax.random.uniform(jax.random.key(1), (4, 28, 28, 1))
    labels = np.arange(4)
    custom, autodiff = mnist_model.make_model(name, "custom"), mnist_model.make_model(name, "autodiff")
    variables = custom.init(jax.random.key(2), x, train=False)

    def grads(model, loss):
        def f(params):
            logits, _ = model.apply({**variables, "params": params}, x, train=True, mutable=["batch_stats"])
            return loss(logits, labels).mean()
        return jax.jit(jax.grad(f))(variables["params"])

    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=2e-4, atol=2e-5),
                 grads(custom, optax.softmax_cross_entropy_with_integer_labels),
                 grads(autodiff, optax.softmax_cross_entropy_with_integer_labels))


def test_train_then_eval_mnist_cli(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "mnist", "--model", "mlp", "--steps", "30", "--batch-size", "50", "--lr", "0.05",
                 "--eval-every", "15", "--out", str(out), "--no-progress"]) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["num_weights"] == 167_168 and results["steps"] == 30 and results["devices"] >= 1
    assert results["test_accuracy"] > 0.8  # 30 steps of the Table 2 net already learn most digits
    for key in ("val_accuracy", "val_loss", "train_loss", "wall_seconds", "examples_per_second"):
        assert key in results
    assert "test accuracy:" in capsys.readouterr().out
    assert main(["eval", "mnist", "--checkpoint", str(out)]) == 0
    evaluated = json.loads(capsys.readouterr().out)
    assert evaluated["test_accuracy"] == pytest.approx(results["test_accuracy"], abs=1e-6)
