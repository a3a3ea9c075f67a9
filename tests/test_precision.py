"""The bfloat16 precision policy (``TrainConfig.precision``) on every task's own model and loss.

Each task's model is built by the task's own code at ``precision="bfloat16"`` and trained a few steps by the
engine's ``train_step`` on one small random batch. Checked against an independent reference, the float32
model of the same config: its loss on the same initial parameters is the bfloat16 run's step-1 loss up to
bfloat16 rounding. Also: the loss falls, the loss, the gradients, the parameters, the optimiser state and the
batch statistics are float32, and every intermediate activation is bfloat16 (``capture_intermediates``; the
dtypes from ``jax.eval_shape``, nothing compiled).
"""

import dataclasses
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cnnlab import configs
from cnnlab import train as engine
from cnnlab.errors import CnnlabError
from cnnlab.train import tasks

STEPS = 3


def _floating_dtypes(tree) -> set:
    return {str(a.dtype) for a in jax.tree.leaves(tree) if jnp.issubdtype(a.dtype, jnp.floating)}


def _init_state(model, config, inputs):
    """A train state whose variables are drawn from their shapes alone (``jax.eval_shape``; compiling Flax's
    ``init`` of a ResNet takes longer than its training step): kernels and embeddings N(0, 1/fan_in), scales
    and variances 1, biases and means 0."""
    shapes = jax.eval_shape(lambda: model.init(jax.random.key(0), *inputs, train=False))
    assert _floating_dtypes(shapes) == {"float32"}  # parameters and statistics: float32 at any precision
    rng = np.random.default_rng(0)

    def draw(path, a):
        name = getattr(path[-1], "key", "")
        if name in ("kernel", "embedding") or len(a.shape) > 1:
            return jnp.asarray(rng.standard_normal(a.shape) / np.sqrt(np.prod(a.shape[:-1])), a.dtype)
        return jnp.full(a.shape, 1.0 if name in ("scale", "var") else 0.0, a.dtype)
    variables = jax.tree_util.tree_map_with_path(draw, shapes)
    return engine.TrainState.create(apply_fn=model.apply, params=variables["params"],
                                    tx=engine.make_optimizer(config), batch_stats=variables.get("batch_stats", {}),
                                    rng=jax.random.key_data(jax.random.key(1)))


def _run(make_model, config, loss_fn, inputs_fn, batch, metrics_fn=None):
    """(float32 loss at the initial parameters, bfloat16 losses of STEPS steps)."""
    model_bf16 = make_model(dataclasses.replace(config, precision="bfloat16"))
    model_f32 = make_model(dataclasses.replace(config, precision="float32"))
    state = _init_state(model_bf16, config, inputs_fn(jax.tree.map(lambda a: a[:1], batch)))
    outputs, _ = model_f32.apply({"params": state.params, "batch_stats": state.batch_stats}, *inputs_fn(batch),
                                 train=True, mutable=["batch_stats"])
    f32_loss = float(jnp.mean(loss_fn(outputs, batch)))
    # every activation of the bfloat16 model, from shapes alone (no compile)
    _, captured = jax.eval_shape(lambda v, *x: model_bf16.apply(v, *x, train=False, capture_intermediates=True),
                                 {"params": state.params, "batch_stats": state.batch_stats}, *inputs_fn(batch))
    assert _floating_dtypes(captured) == {"bfloat16"}

    def objective(params):
        outputs, _ = model_bf16.apply({"params": params, "batch_stats": state.batch_stats}, *inputs_fn(batch),
                                      train=True, mutable=["batch_stats"])
        return jnp.mean(loss_fn(outputs, batch))
    # the loss is float32, and the gradients reach the optimiser in float32 (the VJP of the cast to bfloat16)
    loss, grads = jax.eval_shape(jax.value_and_grad(objective), state.params)
    assert loss.dtype == jnp.float32 and _floating_dtypes(grads) == {"float32"}
    train_step, _ = engine.make_steps(model_bf16, loss_fn, metrics_fn, inputs_fn)
    losses = []
    for _ in range(STEPS):
        state, metrics = train_step(state, batch)
        losses.append(float(metrics["loss"]))
    assert _floating_dtypes(state.params) == {"float32"} and _floating_dtypes(state.opt_state) <= {"float32"}
    assert _floating_dtypes(state.batch_stats) <= {"float32"}
    return f32_loss, losses


def _check_losses(f32_loss, losses, rel):
    assert np.all(np.isfinite(losses)), losses
    assert losses[0] == pytest.approx(f32_loss, rel=rel), (f32_loss, losses)  # step 1: the same parameters
    assert losses[-1] < losses[0], losses  # a fixed batch: SGD must fit it


def test_precision_is_validated_and_set_by_flag_and_override():
    assert engine.compute_dtype("bfloat16") == jnp.bfloat16 and engine.compute_dtype("float32") == jnp.float32
    with pytest.raises(CnnlabError, match="precision must be one of \\['bfloat16', 'float32'\\], got 'float16'"):
        engine.TrainConfig(steps=1, batch_size=1, learning_rate=0.1, precision="float16")
    assert configs.override(configs.load("mnist", "default"), ["precision=bfloat16"]).precision == "bfloat16"
    import importlib

    from cnnlab.cli import build_parser
    for task, package, extra in (("mnist", "mnist", []), ("seqmnist", "tcn", []), ("facedet", "facedet", ["--config",
                                 "v1_3"]), ("caption", "caption", []), ("sequence", "sequence", ["--data", "d.npz"])):
        args = build_parser().parse_args(["train", task, *extra, "--precision", "bfloat16", "--out", "x"])
        config = importlib.import_module(f"cnnlab.{package}.cli").config_from_args(args)
        assert config.precision == "bfloat16", task


def test_mnist_trains_in_bfloat16_and_records_it(tmp_path, capsys):
    """The Table 2 net (cheap to compile and evaluate; the Table 1 CNN's bfloat16 run is in docs/results.md), a few
    steps, then through the CLI: results.json says bfloat16 and ``cnnlab eval`` reads the run back."""
    from cnnlab.cli import main
    from cnnlab.mnist import train as mnist_train
    from cnnlab.mnist.config import MnistConfig
    from cnnlab.mnist.model import make_model

    rng = np.random.default_rng(0)
    batch = {"x": jnp.asarray(rng.integers(0, 256, (16, 28, 28)), jnp.uint8), "y": jnp.arange(16) % 10}
    config = MnistConfig(model="mlp", batch_size=16, learning_rate=0.05)
    f32_loss, losses = _run(lambda c: make_model(c.model, c.grad, engine.compute_dtype(c.precision)), config,
                            tasks.CLASSIFICATION_LOSSES["custom"], mnist_train.inputs, batch, tasks.accuracy)
    _check_losses(f32_loss, losses, rel=2e-2)

    out = tmp_path / "run"
    assert main(["train", "mnist", "--model", "mlp", "--precision", "bfloat16", "--steps", "2", "--eval-every", "2",
                 "--no-progress", "--out", str(out)]) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["precision"] == "bfloat16" and np.isfinite(results["test_loss"])
    capsys.readouterr()
    assert main(["eval", "mnist", "--checkpoint", str(out)]) == 0
    evaluated = json.loads(capsys.readouterr().out)
    assert evaluated["precision"] == "bfloat16"
    assert evaluated["test_accuracy"] == pytest.approx(results["test_accuracy"], abs=1e-6)


def test_tcn_trains_in_bfloat16():
    from cnnlab.tcn import train as tcn_train
    from cnnlab.tcn.config import SeqMnistConfig

    rng = np.random.default_rng(0)
    batch = {"x": jnp.asarray(rng.integers(0, 256, (8, 784)), jnp.uint8), "y": jnp.arange(8) % 10}
    config = SeqMnistConfig(block="single", num_blocks=2, channels=8, kernel_size=3, dropout=0.0, steps=STEPS,
                            batch_size=8, learning_rate=0.5, lr_boundaries=(), lr_scales=())
    f32_loss, losses = _run(tcn_train.make_model, config, tasks.CLASSIFICATION_LOSSES["custom"], tcn_train.inputs,
                            batch)
    _check_losses(f32_loss, losses, rel=2e-2)


def test_facenet_trains_in_bfloat16():
    from cnnlab.facedet.model import FaceNet
    from cnnlab.facedet.train import make_loss_fns

    cfg = dataclasses.replace(configs.load("facedet", "v1_3"), levels=("conv4", "conv5"), image_size=64,
                              channels=16, batch_size=2, max_faces=2, lr_boundaries=(), lr_scales=())
    rng = np.random.default_rng(0)
    boxes = np.array([[[8, 8, 40, 40], [30, 20, 60, 50]], [[4, 10, 36, 44], [0, 0, 0, 0]]], np.float32)
    batch = {"x": jnp.asarray(rng.integers(0, 256, (2, 64, 64, 3)), jnp.uint8), "boxes": jnp.asarray(boxes),
             "valid": jnp.asarray([[True, True], [True, False]])}
    loss_fn, metrics_fn, inputs_fn, _ = make_loss_fns(cfg)
    # impl="xla": the shortest compile (the precision is the same for every implementation)
    f32_loss, losses = _run(lambda c: FaceNet(c, impl="xla", dtype=engine.compute_dtype(c.precision)), cfg, loss_fn,
                            inputs_fn, batch, metrics_fn)
    _check_losses(f32_loss, losses, rel=5e-2)


def test_captioner_trains_in_bfloat16():
    from cnnlab.caption.config import CaptionConfig
    from cnnlab.caption.train import inputs_fn, loss_fn
    from cnnlab.nn.resnet import ResNet

    # 64x64 images and 4 of them: the batch statistics of conv5 (2x2 maps) average 16 values, not ill-conditioned
    config = CaptionConfig(image_size=64, max_length=6, batch_size=4, learning_rate=0.1, lr_boundaries=(),
                           lr_scales=())
    rng = np.random.default_rng(0)
    batch = {"x": jnp.asarray(rng.integers(0, 256, (4, 64, 64, 3)), jnp.uint8),
             "tokens": jnp.asarray([[3, 4, 5, 1, 0, 0], [6, 5, 1, 0, 0, 0], [4, 4, 6, 3, 1, 0], [5, 1, 0, 0, 0, 0]],
                                   jnp.int32)}

    def make_model(c):  # the config's captioner, its ResNet-18 on impl="xla" (the shortest compile), a narrow TCN
        model = c.model(7)
        return model.clone(encoder=ResNet(18, impl="xla", dtype=model.dtype), tcn_blocks=2, tcn_channels=16)

    f32_loss, losses = _run(make_model, config, loss_fn, inputs_fn, batch)
    _check_losses(f32_loss, losses, rel=2e-2)
