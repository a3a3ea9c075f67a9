"""cnnlab.sequence: the user's .npz / .ts sequences, left padding with masks, streaming, train -> eval -> predict."""

import csv
import dataclasses
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cnnlab import cli
from cnnlab.errors import CnnlabError
from cnnlab.sequence import data, evaluation as predict
from cnnlab.sequence.config import SequenceConfig
from cnnlab.sequence.model import SequenceClassifier, blocks_for
from cnnlab.tcn import tcn_receptive_field


def _perturbed(params, key):
    """Every parameter (biases included, zero at init) moved by N(0, 1): padding leaks show up."""
    leaves, tree = jax.tree.flatten(params)
    keys = jax.random.split(key, len(leaves))
    return jax.tree.unflatten(tree, [p + jax.random.normal(k, p.shape) for p, k in zip(leaves, keys)])


@pytest.mark.parametrize("block,readout", [("single", "last"), ("double", "mean"), ("radical", "last")])
def test_left_padded_sequence_gives_the_output_it_gives_alone(block, readout):
    model = SequenceClassifier(3, block, 2, channels=4, kernel_size=3, dropout=0.0, readout=readout)
    alone = jax.random.normal(jax.random.key(0), (1, 7, 2))
    padded = jnp.concatenate([jnp.zeros((1, 5, 2)), alone], axis=1)
    mask = (jnp.arange(12) >= 5).astype(jnp.float32)[None, :, None]
    params = _perturbed(model.init(jax.random.key(1), alone, jnp.ones((1, 7, 1)))["params"], jax.random.key(2))
    expected = model.apply({"params": params}, alone, jnp.ones((1, 7, 1)))
    np.testing.assert_allclose(model.apply({"params": params}, padded, mask), expected, rtol=1e-5, atol=1e-5)
    # Zero input padding alone is not exact: after one layer the padded steps hold relu(bias), not zeros.
    leaky = SequenceClassifier(3, block, 2, channels=4, kernel_size=3, dropout=0.0, readout="last")
    unmasked = leaky.apply({"params": params}, padded, jnp.ones((1, 12, 1)))
    assert np.max(np.abs(unmasked - leaky.apply({"params": params}, alone, jnp.ones((1, 7, 1))))) > 1e-3


@pytest.mark.parametrize("readout", ["last", "mean"])
def test_training_window_gives_the_output_the_window_gives_alone(readout):
    model = SequenceClassifier(3, "single", 2, channels=4, kernel_size=3, dropout=0.0, readout=readout, crop=0.5)
    lengths = np.array([12, 7, 3])
    x = np.random.default_rng(0).normal(size=(3, 12, 2)).astype(np.float32)
    mask = (np.arange(12)[None, :] >= 12 - lengths[:, None]).astype(np.float32)[..., None]
    x = x * mask
    params = _perturbed(model.init(jax.random.key(1), x, mask)["params"], jax.random.key(2))
    for seed in range(4):
        rngs = {"dropout": jax.random.key(seed)}
        logits = model.apply({"params": params}, x, mask, train=True, rngs=rngs)
        window = np.asarray(model.apply({"params": params}, mask, method=SequenceClassifier.window, rngs=rngs))
        for i in range(3):
            steps = np.flatnonzero(window[i, :, 0])
            assert steps.size >= np.ceil(0.5 * lengths[i]) and steps[0] >= 12 - lengths[i]
            assert np.all(np.diff(steps) == 1)  # one contiguous window of the real steps
            alone = x[i:i + 1, steps[0]:steps[-1] + 1]
            expected = model.apply({"params": params}, alone, np.ones(alone.shape[:2] + (1,), np.float32))
            np.testing.assert_allclose(logits[i:i + 1], expected, rtol=1e-5, atol=1e-5)
    whole = model.apply({"params": params}, x, mask)  # evaluation reads the whole sequences
    full = SequenceClassifier(3, "single", 2, channels=4, kernel_size=3, dropout=0.0, readout=readout)
    np.testing.assert_array_equal(whole, full.apply({"params": params}, x, mask))


@pytest.mark.parametrize("readout,transform", [("last", "none"), ("mean", "none"), ("mean", "signed_log")])
def test_stream_step_matches_the_model_on_every_prefix(readout, transform):
    model = SequenceClassifier(2, "single", 2, channels=4, kernel_size=3, dropout=0.0, readout=readout)
    x = 5 * np.random.default_rng(0).normal(size=(2, 5, 3)).astype(np.float32)
    ones = jnp.ones((2, 5, 1))
    params = _perturbed(model.init(jax.random.key(1), x, ones)["params"], jax.random.key(2))
    mean, std = np.array([0.5, -1.0, 2.0], np.float32), np.array([2.0, 1.0, 0.5], np.float32)
    run = predict.Run(model, params, SequenceConfig(transform=transform), np.array([0, 1]), mean, std, 3)
    step = jax.jit(lambda state, x_t: predict.stream_step(run, state, x_t))
    state = predict.stream_init(run, batch_size=2)
    seen = np.sign(x) * np.log(1 + np.abs(x)) if transform == "signed_log" else x
    for t in range(5):
        logits, state = step(state, x[:, t])
        whole = model.apply({"params": params}, (seen[:, :t + 1] - mean) / std, ones[:, :t + 1])
        np.testing.assert_allclose(logits, whole, rtol=1e-5, atol=1e-5)
    seqs = data.Sequences(x, np.array([5, 5]), None)  # whole-sequence prediction reads the same inputs
    np.testing.assert_allclose(predict.predict_sequences(run, seqs)[1], jax.nn.softmax(whole), rtol=1e-5, atol=1e-6)


def _norm_variables(model, x, mask, key):
    """Initial variables with every parameter perturbed and running statistics (if any) away from (0, 1)."""
    variables = model.init(jax.random.key(1), x, mask)
    stats = jax.tree.map(lambda s: 0.5 + jax.random.uniform(key, s.shape), variables.get("batch_stats", {}))
    return {"params": _perturbed(variables["params"], key), "batch_stats": stats}


@pytest.mark.parametrize("norm", ["batch", "layer"])
def test_normalised_left_padding_is_exact_in_training_and_inference(norm):
    model = SequenceClassifier(3, "single", 2, channels=4, kernel_size=3, dropout=0.0, norm=norm)
    alone = jax.random.normal(jax.random.key(0), (2, 7, 2))
    ones = jnp.ones((2, 7, 1))
    padded = jnp.concatenate([jnp.full((2, 5, 2), 9.0), alone], axis=1)  # non-zero padding: no leak allowed
    mask = jnp.broadcast_to((jnp.arange(12) >= 5).astype(jnp.float32)[None, :, None], (2, 12, 1))
    variables = _norm_variables(model, alone, ones, jax.random.key(2))
    # Inference: batch norm's running statistics, an affine map per step; layer norm within each step.
    np.testing.assert_allclose(model.apply(variables, padded, mask), model.apply(variables, alone, ones),
                               rtol=1e-5, atol=1e-5)
    # Training: the batch statistics of the real steps only, so the same outputs and the same updates.
    out_padded, new_padded = model.apply(variables, padded, mask, train=True, mutable=["batch_stats"])
    out_alone, new_alone = model.apply(variables, alone, ones, train=True, mutable=["batch_stats"])
    np.testing.assert_allclose(out_padded, out_alone, rtol=1e-5, atol=1e-5)
    for a, b in zip(jax.tree.leaves(new_padded), jax.tree.leaves(new_alone)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    if norm == "batch":  # batch statistics in training, running ones in inference
        assert np.max(np.abs(out_alone - model.apply(variables, alone, ones))) > 1e-3


@pytest.mark.parametrize("norm", ["batch", "layer"])
def test_normalised_stream_step_matches_the_model_on_every_prefix(norm):
    model = SequenceClassifier(2, "single", 2, channels=4, kernel_size=3, dropout=0.0, readout="mean", norm=norm)
    x = np.random.default_rng(0).normal(size=(2, 5, 3)).astype(np.float32)
    ones = jnp.ones((2, 5, 1))
    variables = _norm_variables(model, x, ones, jax.random.key(2))
    mean, std = np.zeros(3, np.float32), np.ones(3, np.float32)
    run = predict.Run(model, variables["params"], SequenceConfig(norm=norm), np.array([0, 1]), mean, std, 3,
                      variables["batch_stats"])
    state = predict.stream_init(run, batch_size=2)
    for t in range(5):
        logits, state = predict.stream_step(run, state, x[:, t])
        np.testing.assert_allclose(logits, model.apply(variables, x[:, :t + 1], ones[:, :t + 1]), rtol=1e-5, atol=1e-5)


def test_unknown_norm_is_a_one_line_error(tmp_path, capsys):
    x, y, lengths = _synthetic(20, 0)
    np.savez(tmp_path / "toy.npz", x=x, y=y, lengths=lengths)
    assert cli.main(["train", "sequence", "--data", str(tmp_path / "toy.npz"), "--out", str(tmp_path / "run"),
                     "--set", "norm=group"]) == 2
    assert "cnnlab: error: norm must be one of ('none', 'batch', 'layer'), got 'group'" in capsys.readouterr().err


def test_blocks_for_gives_the_fewest_blocks_covering_the_receptive_field():
    for length in (10, 24, 150, 1460):
        b = blocks_for(length, "single", 5, "exponential")
        assert tcn_receptive_field("single", b, 5, "exponential") >= length
        assert b == 1 or tcn_receptive_field("single", b - 1, 5, "exponential") < length


def test_unit_norm_init_gives_unit_filters_and_lecun_skip():
    from cnnlab.sequence.train import unit_norm_init
    model = SequenceClassifier(2, "single", 2, channels=64, kernel_size=3, dropout=0.0)
    variables = unit_norm_init(model.init(jax.random.key(0), jnp.zeros((1, 4, 16)), jnp.ones((1, 4, 1))))
    block = variables["params"]["tcn"]["ResidualBlock_0"]
    v, g = block["conv1"]["kernel"], block["conv1"]["scale"]
    w = g * v / jnp.sqrt(jnp.sum(v * v, axis=(0, 1)))  # Conv1D's weight norm
    np.testing.assert_allclose(jnp.sqrt(jnp.sum(w * w, axis=(0, 1))), 1.0, rtol=1e-5)
    assert np.std(block["skip"]["kernel"]) == pytest.approx(1 / np.sqrt(16), rel=0.1)


def test_npz_lengths_move_the_real_steps_to_the_end(tmp_path):
    x = np.arange(2 * 4 * 1, dtype=np.float32).reshape(2, 4, 1) + 1
    np.savez(tmp_path / "d.npz", x=x, y=np.array([0, 1]), lengths=np.array([2, 4]))
    seqs = data.read(tmp_path / "d.npz")
    np.testing.assert_array_equal(seqs.x[:, :, 0], [[0, 0, 1, 2], [5, 6, 7, 8]])
    np.testing.assert_array_equal(seqs.mask[:, :, 0], [[0, 0, 1, 1], [1, 1, 1, 1]])
    assert data.read(tmp_path / "d.npz", "test") is None


def test_channel_stats_ignore_the_padding():
    seqs = data.Sequences(*data.left_pad([np.array([[1.0, 10.0], [3.0, 30.0]]), np.array([[5.0, 50.0]])]), None)
    mean, std = data.channel_stats(seqs)
    np.testing.assert_allclose(mean, [3.0, 30.0])
    np.testing.assert_allclose(std, [np.std([1, 3, 5]), np.std([10, 30, 50])], rtol=1e-6)


def test_signed_log_statistics_are_those_of_the_transformed_real_steps():
    x = np.array([[[0.0], [0.0], [3.0], [-1000.0]], [[0.0], [7.0], [0.0], [20000.0]]], np.float32)
    seqs = data.Sequences(x, np.array([2, 4]), None)  # sequence 0: its last 2 steps are real
    real = np.array([3.0, -1000.0, 0.0, 7.0, 0.0, 20000.0])
    logged = np.sign(real) * np.log(1 + np.abs(real))
    mean, std = data.channel_stats(seqs, "signed_log")
    np.testing.assert_allclose([mean[0], std[0]], [logged.mean(), logged.std()], rtol=1e-5)
    z = data.standardise(seqs, mean, std, "signed_log")
    np.testing.assert_allclose(z[1, :, 0], (np.sign(x[1, :, 0]) * np.log1p(np.abs(x[1, :, 0])) - mean) / std,
                               rtol=1e-5)
    assert np.all(z[0, :2] == 0)  # the padding stays 0


def test_validation_split_is_stratified_and_seeded():
    y = np.array([0] * 10 + [1] * 4 + [2] * 2)
    train, val = data.validation_split(y, 0.2, seed=3)
    assert sorted(np.concatenate([train, val])) == list(range(16))
    assert np.bincount(y[val]).tolist() == [2, 1, 1] and set(y[train]) == {0, 1, 2}
    np.testing.assert_array_equal(val, data.validation_split(y, 0.2, seed=3)[1])


@pytest.mark.parametrize("arrays,message", [
    ({"x": np.zeros((2, 3, 1)), "y": np.array([0.0, 0.5])}, r"integer class labels, got float64 \(e.g. 0.5\)"),
    ({"x": np.zeros((2, 3, 1)), "y": np.array([1.0, np.inf])}, r"integer class labels, got float64 \(e.g. inf\)"),
    ({"x": np.zeros((2, 3, 1)), "y": np.array(["a", "b"])}, r"integer class labels, got <U1 \(e.g. 'a'\)"),
    ({"x": np.zeros((0, 3, 1)), "y": np.zeros(0, "<U1")}, r"integer class labels, got <U1$"),
    ({"x": np.array([[0.0, np.nan, 1.0], [1, 2, 3]]), "y": np.array([0, 1])}, "NaN"),
    ({"x": np.zeros((2, 3, 1)), "y": np.array([0, 1]), "lengths": np.array([0, 3])}, "lengths must be"),
])
def test_bad_npz_raises_a_one_line_error(tmp_path, arrays, message):
    np.savez(tmp_path / "d.npz", **arrays)
    with pytest.raises(CnnlabError, match=message) as e:
        data.read(tmp_path / "d.npz")
    assert "\n" not in str(e.value)


def test_ragged_npz_needs_lengths(tmp_path):
    x = np.empty(2, object)
    x[:] = [np.zeros((3, 1)), np.zeros((2, 1))]
    np.savez(tmp_path / "d.npz", x=x, y=np.array([0, 1]))
    with pytest.raises(CnnlabError, match="ragged.*lengths"):
        data.read(tmp_path / "d.npz")


def test_nan_in_the_padding_past_lengths_is_ignored(tmp_path):
    np.savez(tmp_path / "d.npz", x=np.array([[1.0, np.nan], [1.0, 2.0]]), y=[0, 1], lengths=np.array([1, 2]))
    assert np.isfinite(data.read(tmp_path / "d.npz").x).all()


def _write_ts(path, series, labels, classes):
    """A .ts file: series is a list of [C, T_i] lists."""
    lines = ["# test data", f"@problemName {path.stem}", "@timeStamps false",
             f"@univariate {'true' if len(series[0]) == 1 else 'false'}",
             f"@dimensions {len(series[0])}", "@equalLength false",
             f"@classLabel true {' '.join(classes)}", "@data"]
    lines += [":".join(",".join(f"{v:g}" for v in ch) for ch in s) + f":{label}" for s, label in zip(series, labels)]
    path.write_text("\n".join(lines) + "\n")


def test_ts_unequal_multivariate_is_left_padded(tmp_path):
    _write_ts(tmp_path / "toy_TRAIN.ts", [[[1, 2, 3], [4, 5, 6]], [[7, 8], [9, 10]]], ["a", "b"], ["a", "b"])
    seqs = data.read(tmp_path / "toy_TRAIN.ts")
    np.testing.assert_array_equal(seqs.x[1], [[0, 0], [7, 9], [8, 10]])
    np.testing.assert_array_equal(seqs.lengths, [3, 2])
    assert seqs.y.tolist() == ["a", "b"] and data.read(tmp_path / "toy_TRAIN.ts", "test") is None


def test_ts_that_does_not_parse_names_the_line(tmp_path):
    _write_ts(tmp_path / "bad_TRAIN.ts", [[[1, 2, 3]], [[4, 5, 6]]], ["a", "b"], ["a", "b"])
    text = (tmp_path / "bad_TRAIN.ts").read_text().replace("4,5,6", "4,x,6")
    (tmp_path / "bad_TRAIN.ts").write_text(text)
    with pytest.raises(CnnlabError, match=r"bad_TRAIN\.ts:10: not a valid \.ts file"):
        data.read(tmp_path / "bad_TRAIN.ts")


def test_ts_without_aeon_names_the_extra(tmp_path, monkeypatch):
    _write_ts(tmp_path / "toy_TRAIN.ts", [[[1, 2]], [[3, 4]]], ["a", "b"], ["a", "b"])
    monkeypatch.setitem(sys.modules, "aeon.datasets", None)
    with pytest.raises(CnnlabError, match=r"cnnlab\[sequence\]"):
        data.read(tmp_path / "toy_TRAIN.ts")


def _synthetic(n, seed):
    """Two classes a TCN must tell apart from the dynamics: a slow or a fast sine (random phase and
    amplitude) in channel 0, noise in channel 1; lengths 12-24."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    lengths = rng.integers(12, 25, n)
    x = np.zeros((n, 24, 2), np.float32)
    for i in range(n):
        t = np.arange(lengths[i])
        x[i, :lengths[i], 0] = rng.uniform(0.5, 2) * np.sin((0.3 if y[i] else 1.2) * t + rng.uniform(0, 6.3))
        x[i, :lengths[i], 1] = rng.normal(size=lengths[i])
    return x + 3.0, y * 5 + 2, lengths  # offset inputs, labels 2 and 7: standardisation and class maps matter


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("sequence")
    x, y, lengths = _synthetic(96, 0)
    xt, yt, lt = _synthetic(48, 1)
    np.savez(root / "toy.npz", x=x, y=y, lengths=lengths, x_test=xt, y_test=yt, lengths_test=lt)
    args = ["train", "sequence", "--data", str(root / "toy.npz"), "--out", str(root / "run"), "--steps", "150",
            "--no-progress", "--set", "channels=8", "--set", "kernel_size=3", "--set", "eval_every=50",
            "--set", "learning_rate=0.01"]
    assert cli.main(args) == 0
    return root, xt, yt, lt


def test_train_eval_predict_round_trip_learns_the_dynamics(trained, capsys):
    root, xt, yt, lt = trained
    import json
    results = json.loads((root / "run" / "results.json").read_text())
    assert results["test_accuracy"] >= 0.85  # chance is 0.5
    # The default batch norm's running statistics were trained and saved, and evaluation uses them.
    stats = predict.load_run(root / "run").batch_stats["tcn"]["ResidualBlock_0"]["norm1"]
    assert np.all(np.asarray(stats["var"]) != 1.0)
    capsys.readouterr()
    assert cli.main(["eval", "sequence", "--checkpoint", str(root / "run"), "--data", str(root / "toy.npz")]) == 0
    evaluated = json.loads(capsys.readouterr().out)
    assert evaluated["accuracy"] == pytest.approx(results["test_accuracy"])
    assert cli.main(["predict", "sequence", "--checkpoint", str(root / "run"), "--data", str(root / "toy.npz"),
                     "--out", str(root / "preds.csv")]) == 0
    rows = list(csv.DictReader(open(root / "preds.csv")))
    assert list(rows[0]) == ["index", "prediction", "p_2", "p_7"]
    predicted = np.array([int(r["prediction"]) for r in rows])
    assert np.mean(predicted == yt) == pytest.approx(evaluated["accuracy"])


def test_eval_reads_ts_like_npz(trained, tmp_path):
    root, xt, yt, lt = trained
    series = [[list(xt[i, :lt[i], c]) for c in range(2)] for i in range(len(xt))]
    _write_ts(tmp_path / "toy_TEST.ts", series, [str(v) for v in yt], ["2", "7"])
    assert (predict.evaluate(root / "run", tmp_path / "toy_TEST.ts")["accuracy"]
            == pytest.approx(predict.evaluate(root / "run", root / "toy.npz")["accuracy"], abs=1e-6))
    labels, _ = predict.predict(root / "run", tmp_path / "toy_TEST.ts")
    expected, _ = predict.predict(root / "run", root / "toy.npz")
    np.testing.assert_array_equal(labels, expected)


def test_ensemble_eval_and_predict_average_the_members_probabilities(trained, tmp_path, capsys):
    import json
    import shutil
    root, xt, yt, lt = trained
    toy, first, second = str(root / "toy.npz"), str(root / "run"), str(tmp_path / "second")
    assert cli.main(["train", "sequence", "--data", toy, "--out", second, "--steps", "40", "--seed", "1",
                     "--no-progress", "--set", "channels=8", "--set", "kernel_size=3"]) == 0
    members = [predict.predict(first, toy)[1], predict.predict(second, toy)[1]]
    mean, y = (members[0] + members[1]) / 2, (yt == 7).astype(int)  # classes [2, 7]
    capsys.readouterr()
    assert cli.main(["eval", "sequence", "--checkpoint", first, "--checkpoint", second, "--data", toy]) == 0
    evaluated = json.loads(capsys.readouterr().out)
    assert evaluated["members"] == 2
    assert evaluated["accuracy"] == pytest.approx(np.mean(mean.argmax(-1) == y))
    assert evaluated["loss"] == pytest.approx(-np.mean(np.log(mean[np.arange(len(y)), y])), rel=1e-5)
    assert evaluated["member_accuracy"] == pytest.approx([np.mean(m.argmax(-1) == y) for m in members])
    out = tmp_path / "preds.csv"
    assert cli.main(["predict", "sequence", "--checkpoint", first, "--checkpoint", second, "--data", toy,
                     "--out", str(out)]) == 0
    rows = list(csv.DictReader(open(out)))
    np.testing.assert_allclose([[float(r["p_2"]), float(r["p_7"])] for r in rows], mean, atol=1e-6)
    assert [int(r["prediction"]) for r in rows] == [(2, 7)[i] for i in mean.argmax(-1)]
    # Runs with other classes do not make an ensemble.
    shutil.copytree(first, tmp_path / "relabelled")
    meta = json.loads((tmp_path / "relabelled" / "sequence.json").read_text())
    (tmp_path / "relabelled" / "sequence.json").write_text(json.dumps({**meta, "classes": [2, 8]}))
    capsys.readouterr()
    assert cli.main(["eval", "sequence", "--checkpoint", first, "--checkpoint", str(tmp_path / "relabelled"),
                     "--data", toy]) == 2
    assert "an ensemble's runs must match" in capsys.readouterr().err


def test_unknown_label_and_channel_mismatch_raise(trained, tmp_path):
    root, xt, yt, lt = trained
    np.savez(tmp_path / "three.npz", x=np.zeros((4, 5, 3)), y=[2, 7, 2, 7])
    with pytest.raises(CnnlabError, match="3 channels.*trained on 2"):
        predict.evaluate(root / "run", tmp_path / "three.npz")
    np.savez(tmp_path / "other.npz", x=np.zeros((2, 5, 2)), y=[2, 3])
    with pytest.raises(CnnlabError, match="label 3, which the training set does not have"):
        predict.evaluate(root / "run", tmp_path / "other.npz")
    np.savez(tmp_path / "mixed.npz", x=np.zeros((4, 5, 2)), y=[2, 7, 2, 7], x_test=np.zeros((2, 5, 1)), y_test=[2, 7])
    config = dataclasses.replace(SequenceConfig(), data=str(tmp_path / "mixed.npz"))
    from cnnlab.sequence import train
    with pytest.raises(CnnlabError, match="2 channels, the test data 1"):
        train(config, tmp_path / "run")


@pytest.mark.parametrize("field,value,message", [("val_fraction", 1.0, "val_fraction must be in"),
                                                  ("crop", 0.0, "crop must be in"),
                                                  ("transform", "log", "transform must be one of none, signed_log")])
def test_out_of_range_settings_are_one_line_errors(tmp_path, field, value, message):
    from cnnlab.sequence import train
    np.savez(tmp_path / "d.npz", x=np.zeros((4, 5, 1)), y=[0, 1, 0, 1])
    config = dataclasses.replace(SequenceConfig(), data=str(tmp_path / "d.npz"), **{field: value})
    with pytest.raises(CnnlabError, match=message):
        train(config, tmp_path / "run")


@pytest.mark.parametrize("x,y,message", [(np.zeros((3, 5, 1)), [4, 4, 4], r"holds one class \(4\); need two"),
                                          (np.zeros((0, 5, 1)), np.zeros(0, np.int64), "holds no sequences")])
def test_training_data_with_fewer_than_two_classes_is_a_one_line_error(tmp_path, x, y, message):
    from cnnlab.sequence import train
    np.savez(tmp_path / "d.npz", x=x, y=y)
    config = dataclasses.replace(SequenceConfig(), data=str(tmp_path / "d.npz"))
    with pytest.raises(CnnlabError, match=message):
        train(config, tmp_path / "run")


def test_validation_split_only_when_it_holds_min_validation_sequences(tmp_path, capsys):
    from cnnlab.sequence import train
    x, y, lengths = _synthetic(40, 0)
    np.savez(tmp_path / "d.npz", x=x, y=y, lengths=lengths)
    small = dataclasses.replace(SequenceConfig(), data=str(tmp_path / "d.npz"), channels=2, kernel_size=2, steps=2,
                                warmup_steps=1, eval_every=2, progress=False)
    results = train(small, tmp_path / "whole")  # 20 % of 40 = 8 sequences, under min_validation = 50
    assert "no validation split (under min_validation=50)" in capsys.readouterr().out
    assert "val_loss" not in results and results["best_step"] == 2 and results["train_sequences"] == 40
    results = train(dataclasses.replace(small, min_validation=8), tmp_path / "split")
    assert "8 held out for validation" in capsys.readouterr().out
    assert "val_loss" in results and results["train_sequences"] == 32


def test_time_budget_flag_fits_the_sequence_run_after_its_warm_up(tmp_path, capsys):
    x, y, lengths = _synthetic(40, 0)
    np.savez(tmp_path / "d.npz", x=x, y=y, lengths=lengths)
    args = ["train", "sequence", "--data", str(tmp_path / "d.npz"), "--out", str(tmp_path / "run"), "--steps", "200",
            "--time-budget", "0.0001", "--no-progress", "--set", "channels=2", "--set", "kernel_size=2",
            "--set", "warmup_steps=20"]
    assert cli.main(args) == 0  # 6 ms cannot hold more than one step after the warm-up
    assert "time budget 0.0001 min: 21 of at most 200 steps fit" in capsys.readouterr().err
    import json
    assert json.loads((tmp_path / "run" / "results.json").read_text())["steps"] == 21
