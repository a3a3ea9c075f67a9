"""TCN (§6): receptive field vs gradient support, padding-scheme and streaming equalities, dilations."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cnnlab.nn.conv1d import Conv1D
from cnnlab.tcn import TCN, TemporalConvNet, block_dilations, init_cache, step, stream, tcn_receptive_field

BLOCKS = ("single", "double", "radical")


def gradient_support(net, T, c_in=1):
    """Input steps on which d(last output)/d(input) is non-zero: the receptive field, measured."""
    x = jnp.zeros((1, T, c_in))
    params = net.init(jax.random.key(0), x)["params"]
    # Positive kernels (weight-norm scale 1) and positive inputs keep every ReLU active and rule out
    # cancellations, so a zero gradient can only mean "not connected".
    params = jax.tree_util.tree_map_with_path(
        lambda path, v: jnp.ones_like(v) if path[-1].key == "scale" else jnp.abs(v), params)
    grad = jax.jit(jax.grad(lambda x: net.apply({"params": params}, x)[0, -1].sum()))
    g = grad(jax.random.uniform(jax.random.key(1), (1, T, c_in), minval=0.5, maxval=1.0))
    return np.any(np.asarray(g[0]) != 0, axis=-1)


@pytest.mark.parametrize("block,num_blocks,kernel_size,dilation", [
    ("single", 3, 3, "linear"),
    ("double", 3, 2, "exponential"),
    ("radical", 2, 3, "linear"),
    ("single", 2, 4, (2, 5)),
])
def test_receptive_field_equals_gradient_support(block, num_blocks, kernel_size, dilation):
    net = TemporalConvNet(block=block, num_blocks=num_blocks, channels=2, kernel_size=kernel_size,
                          dilation=dilation)
    r = net.receptive_field()
    support = gradient_support(net, T=r + 7)
    assert not support[:7].any() and support[7] and support[-1]  # Eq. (66) is the span of the support
    if net.dilations()[0] == 1:  # with d_1 = 1 there are no holes; dilations (2, 5) miss offsets 1 and 3
        assert support[7:].all()


@pytest.mark.parametrize("block,num_blocks,expected", [("single", 12, 2101), ("radical", 6, 1921)])
def test_receptive_field_of_paper_configs_measured(block, num_blocks, expected):
    # The paper quotes 1001 (Single/Double) and 1021 (Radical); the architecture as described (24
    # convolutions, k = 6, d_b = 3b - 2 / 6b - 5) sees 2101 / 1921 steps: see docs/derivations.md.
    net = TemporalConvNet(block=block, num_blocks=num_blocks, channels=1, kernel_size=6)
    assert net.receptive_field() == expected
    support = gradient_support(net, T=expected + 5)
    assert support.sum() == expected and not support[4] and support[5]


def test_block_dilations_follow_section_6_3_3():
    assert block_dilations("single", 4) == (1, 4, 7, 10)  # d_b = 3b - 2
    assert block_dilations("radical", 3) == (1, 7, 13)  # d_b = 6b - 5
    assert block_dilations("double", 4, "exponential") == (1, 2, 4, 8)
    assert tcn_receptive_field("single", 8, 7, "exponential") == 3061  # the original TCN [33] on sMNIST
    with pytest.raises(ValueError, match="block_dilations: an explicit dilation list needs 2"):
        block_dilations("single", 2, (1, 2, 3))
    with pytest.raises(ValueError, match="block must be one of"):
        block_dilations("triple", 2)


@pytest.fixture(scope="module")
def sequences():
    return jax.random.normal(jax.random.key(3), (2, 23, 2))


@pytest.mark.parametrize("block", BLOCKS)
def test_left_and_symmetric_padding_give_identical_outputs_and_grads(block, sequences):
    left = TCN(block=block, num_blocks=2, channels=3, kernel_size=3, padding="left")
    symmetric = TCN(block=block, num_blocks=2, channels=3, kernel_size=3, padding="symmetric")
    params = left.init(jax.random.key(0), sequences)["params"]
    labels = jnp.array([1, 7])

    def loss(model):
        def f(params, x):
            logits = model.apply({"params": params}, x, train=True, rngs={"dropout": jax.random.key(5)})
            return -jnp.mean(jax.nn.log_softmax(logits)[jnp.arange(2), labels])
        return jax.value_and_grad(f, argnums=(0, 1))(params, sequences)

    (l_left, g_left), (l_sym, g_sym) = loss(left), loss(symmetric)
    np.testing.assert_allclose(l_left, l_sym, rtol=1e-6)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-8), g_left, g_sym)


@pytest.mark.parametrize("block", BLOCKS)
def test_streaming_equals_full_sequence(block, sequences):  # T = 23: every ring buffer (2, 8, 14) wraps
    net = TemporalConvNet(block=block, num_blocks=2, channels=3, kernel_size=3)
    params = net.init(jax.random.key(0), sequences)["params"]
    np.testing.assert_allclose(stream(net, params, sequences), net.apply({"params": params}, sequences),
                               rtol=1e-5, atol=1e-6)


def test_streaming_tcn_logits_equal_full_model_at_every_prefix(sequences):
    model = TCN(block="single", num_blocks=2, channels=3, kernel_size=2, dilation="exponential")
    params = model.init(jax.random.key(0), sequences)["params"]
    cache = init_cache(model, params, batch_size=2, in_channels=2)
    jit_step, full = jax.jit(step, static_argnums=0), jax.jit(model.apply)
    for t in range(4):
        logits, cache = jit_step(model, params, cache, sequences[:, t])
        np.testing.assert_allclose(logits, full({"params": params}, sequences[:, :t + 1]), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("block", ["double", "radical"])
def test_streaming_tcn_logits_equal_full_model_after_the_ring_buffers_wrap_float64(block):
    # float64 so that a tolerance of 1e-12 leaves no room for a misplaced tap (float32: the test above).
    dtype, tol = "float64", 1e-12
    model = TCN(block=block, num_blocks=2, channels=3, kernel_size=3)
    # The longest ring buffer holds d(k-1) = 2 * 4 (double) or 2 * 7 (radical) inputs: 2 * 14 + 5 steps wrap
    # every buffer at least twice.
    t = 33
    with jax.enable_x64(True):
        x = jax.random.normal(jax.random.key(4), (2, t, 2), dtype)
        # Parameters in the compute dtype too: float32 weight-norm arithmetic rounds differently inside and
        # outside jit (~1e-7), which would hide the float64 comparison.
        params = jax.tree.map(lambda v: v.astype(dtype), model.init(jax.random.key(0), x)["params"])
        streamed = jax.jit(stream, static_argnums=0)(model, params, x)  # logits after every step
        assert streamed.dtype == dtype
        np.testing.assert_allclose(streamed[:, -1], model.apply({"params": params}, x), rtol=tol, atol=tol)
        # Every earlier step: the classifier on the full-sequence features of that step (causal, so equal to
        # the model run on the prefix).
        features = TemporalConvNet(block=block, num_blocks=2, channels=3, kernel_size=3).apply(
            {"params": {k: v for k, v in params.items() if k != "Dense_0"}}, x)
        dense = params["Dense_0"]
        np.testing.assert_allclose(streamed, features @ dense["kernel"] + dense["bias"], rtol=tol, atol=tol)


def test_conv1d_rejects_bad_arguments(sequences):
    with pytest.raises(ValueError, match="Conv1D: padding must be one of"):
        Conv1D(3, 2, padding="both").init(jax.random.key(0), sequences)
    with pytest.raises(ValueError, match=r"Conv1D: decode=True takes one time step"):
        Conv1D(3, 2).init(jax.random.key(0), sequences, decode=True)
    with pytest.raises(ValueError, match=r"step: x_t must be one time step"):
        step(TCN(num_blocks=1, channels=2), None, None, sequences)


def test_seqmnist_is_the_images_row_by_row_and_pmnist_one_fixed_permutation():
    from cnnlab.mnist.data import load_mnist
    from cnnlab.tcn.data import load_seqmnist, permutation

    images = load_mnist()
    seq, perm = load_seqmnist(), load_seqmnist(permuted=True, seed=7)
    order = np.random.default_rng(7).permutation(784)
    assert sorted(order) == list(range(784)) and not (order == np.arange(784)).all()
    np.testing.assert_array_equal(permutation(7), order)
    for split, n in [("train", 55_000), ("val", 5_000), ("test", 10_000)]:
        x, y = images[split]
        assert seq[split][0].shape == (n, 784)
        np.testing.assert_array_equal(seq[split][0][:, 28 * 3 + 5], x[:, 3, 5])
        np.testing.assert_array_equal(perm[split][0], x.reshape(n, 784)[:, order])
        np.testing.assert_array_equal(perm[split][1], y)


def test_paper_schedule_and_its_scaled_version():
    from cnnlab.tcn.config import scaled_schedule, single_pmnist, single_seqmnist
    from cnnlab.train import learning_rate_schedule

    schedule = learning_rate_schedule(single_seqmnist())
    # §6.3.3: 0.001, x10 after 200 and after 1 000 iterations, /10 after 70 000 and 90 000.
    for i, lr in [(0, 1e-3), (199, 1e-3), (200, 1e-2), (1_000, 1e-1), (69_999, 1e-1), (70_000, 1e-2),
                     (90_000, 1e-3)]:
        np.testing.assert_allclose(schedule(i), lr, rtol=1e-6)
    assert single_pmnist().lr_boundaries == (200, 1_000, 130_000, 180_000)
    assert single_pmnist().steps == 200_000 and single_seqmnist().batch_size == 100
    assert scaled_schedule(single_seqmnist(), 100_000) == single_seqmnist()
    assert scaled_schedule(single_pmnist(), 200_000) == single_pmnist()
    assert scaled_schedule(single_seqmnist(), 400).lr_boundaries == (40, 200, 280, 360)
    assert scaled_schedule(single_seqmnist(), 3_000).lr_boundaries == (200, 1_000, 2_100, 2_700)


def test_fast_schedule_is_adamw_with_warmup_and_cosine_decay_and_flags_override_it():
    from cnnlab.cli import build_parser
    from cnnlab.tcn.cli import config_from_args
    from cnnlab.train import learning_rate_schedule

    parse = lambda *flags: config_from_args(build_parser().parse_args(["train", "seqmnist", *flags, "--out", "x"]))
    config = parse("--schedule", "fast", "--steps", "2000")
    assert (config.steps, config.batch_size, config.optimizer, config.dropout) == (2000, 100, "adamw", 0.0)
    assert (config.grad_clip_norm, config.weight_decay, config.block, config.blocks) == (1.0, 0.05, "single", 12)
    schedule = learning_rate_schedule(config)
    peak, warmup = 1.6e-2, 100
    for t in (0, 50, 100, 700, 1300, 1999):  # linear warm-up, then a half cosine from peak to 0
        cosine = 0.5 * peak * (1 + np.cos(np.pi * (t - warmup) / (2000 - warmup)))
        expected = peak * t / warmup if t < warmup else cosine
        np.testing.assert_allclose(schedule(t), expected, rtol=1e-5, atol=1e-9)
    assert parse("--schedule", "fast").steps == 6000
    override = parse("--schedule", "fast", "--dropout", "0.05", "--lr", "1e-3", "--steps", "300",
                     "--set", "weight_decay=0")
    assert (override.dropout, override.learning_rate, override.warmup_steps, override.weight_decay) == (
        0.05, 1e-3, 30, 0.0)


def test_train_seqmnist_cli_end_to_end_writes_results_and_refuses_other_settings(tmp_path, capsys):
    from cnnlab.cli import main

    out = tmp_path / "run"
    # Ten training sequences, all in every batch: six steps at lr 0.5 must fit them visibly.
    tiny = ["train", "seqmnist", "--block", "radical", "--num-blocks", "1", "--channels", "4",
            "--kernel-size", "2", "--permuted", "--steps", "6", "--batch-size", "10", "--eval-every", "6",
            "--train-examples", "10", "--lr", "0.5", "--grad-clip", "1.0", "--microbatch", "5", "--no-progress",
            "--out", str(out)]
    assert main(tiny) == 0
    saved = json.loads((out / "config.json").read_text())["train"]
    assert saved["grad_clip_norm"] == 1.0 and saved["microbatch_size"] == 5
    results = json.loads((out / "results.json").read_text())
    assert results["steps"] == 6 and results["permuted"] and results["block"] == "radical"
    # The N(0, 0.01) kernels start the model at uniform predictions, loss ln 10 = 2.3026; the mean training
    # loss of steps 1-6 (step 1's included) must be clearly below it.
    assert results["train_loss"] < np.log(10) - 0.1
    assert 0.0 <= results["test_accuracy"] <= 1.0 and np.isfinite(results["test_loss"])
    assert results["receptive_field"] == TCN(block="radical", num_blocks=1, channels=4, kernel_size=2).receptive_field()
    splits = [json.loads(line)["split"] for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert "train" in splits and "val" in splits and (out / "curves.png").stat().st_size > 0
    capsys.readouterr()
    assert main(["eval", "seqmnist", "--checkpoint", str(out)]) == 0
    evaluated = json.loads(capsys.readouterr().out)
    assert evaluated["test_accuracy"] == pytest.approx(results["test_accuracy"], abs=1e-6)
    assert main([*tiny[:-2], "--learning-rate", "0.2", "--out", str(out)]) == 2  # same folder, other settings
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith("cnnlab: error: ") and "another configuration" in err[0]
