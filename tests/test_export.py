"""``cnnlab export``: the exported files, run in a process that never imports cnnlab (``run_exported.py``),
give the outputs of the trained JAX models on real inputs (MNIST test digits, the sample crowd photograph,
a COCO-MINI image), in both formats; bad requests fail with one-line ``CnnlabError``s.

The references are the task packages' own inference paths, with the gradient mode the run was trained
with (``custom``: the paper's VJPs and the CPU patch kernels), while the export rebuilds the models with
``autodiff`` / ``xla``. Each run is a few training steps of a small configuration, made once per module.
"""

import dataclasses
import json
import shutil
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cnnlab import train
from cnnlab.errors import CnnlabError
from cnnlab.export import export_run, onnx as onnx_export, stablehlo as stablehlo_export
from cnnlab.export.signature import Function, Tensor
from cnnlab.mnist.data import load_mnist

RUNNER = Path(__file__).with_name("run_exported.py")
FORMATS = ["stablehlo", pytest.param("onnx", marks=pytest.mark.skipif(
    not all(map(__import__("importlib").util.find_spec, ("jax2onnx", "onnxruntime"))),
    reason='jax2onnx / onnxruntime not installed: pip install "cnnlab[export]"'))]
SUFFIX = {"stablehlo": ".stablehlo", "onnx": ".onnx"}
TOL = dict(rtol=1e-4, atol=1e-4)  # float32, other convolution kernels and summation orders


def run_exported(tmp_path, jobs: list) -> list:
    """Run ``[(format, mode, file, inputs dict)]`` in one fresh Python process without cnnlab; their outputs."""
    spec = []
    for i, (fmt, mode, path, arrays) in enumerate(jobs):
        np.savez(tmp_path / f"in{i}.npz", **arrays)
        spec.append([fmt, mode, str(path), str(tmp_path / f"in{i}.npz"), str(tmp_path / f"out{i}.npz")])
    (tmp_path / "jobs.json").write_text(json.dumps(spec))
    done = subprocess.run([sys.executable, str(RUNNER), str(tmp_path / "jobs.json")], cwd=tmp_path,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return [dict(np.load(tmp_path / f"out{i}.npz")) for i in range(len(jobs))]


def _mnist_digits(n):
    x, y = load_mnist()["test"]
    return x[:n], y[:n]


# ---------------------------------------------------------------- runs


@pytest.fixture(scope="module")
def mnist_run(tmp_path_factory):
    from cnnlab.mnist import train as mnist_train
    from cnnlab.mnist.config import default

    small = {k: train.ArraySource(x=x[:40], y=y[:40]) for k, (x, y) in load_mnist().items()}
    workdir = tmp_path_factory.mktemp("mnist-run")
    config = dataclasses.replace(default(), model="cnn", grad="custom", steps=3, batch_size=10, learning_rate=0.05,
                                 lr_boundaries=(), lr_scales=(), eval_every=3, checkpoint_every=3,
                                 eval_batch_size=20, progress=False)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(mnist_train, "sources", lambda data_dir=None: small)
        mnist_train.train(config, workdir)
    return workdir


@pytest.fixture(scope="module")
def tcn_run(tmp_path_factory):
    from cnnlab.tcn import train as tcn_train
    from cnnlab.tcn.config import single_pmnist

    full = tcn_train.load_seqmnist
    workdir = tmp_path_factory.mktemp("tcn-run")
    config = dataclasses.replace(single_pmnist(), num_blocks=2, channels=8, kernel_size=3, steps=3, batch_size=10,
                                 lr_boundaries=(), lr_scales=(), eval_every=3, checkpoint_every=3,
                                 eval_batch_size=20, progress=False)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(tcn_train, "load_seqmnist", lambda *a, **k: {s: (x[:40], y[:40]) for s, (x, y) in
                                                                 full(*a, **k).items()})
        tcn_train.train(config, workdir)
    return workdir


@pytest.fixture(scope="module")
def face_run(tmp_path_factory):
    pytest.importorskip("skimage", reason="the synthetic face composites need scikit-image (cnnlab[facedet])")
    from cnnlab.facedet.config import v2_4
    from cnnlab.facedet.train import train as train_facedet

    # Batch 1: the validation AP that ``train`` computes then compiles ``detect`` as the tests call it.
    cfg = dataclasses.replace(v2_4(), levels=("conv4", "conv5"), image_size=64, channels=16, num_images=2, steps=1,
                              batch_size=1, learning_rate=1e-3, lr_boundaries=(), lr_scales=(), eval_every=1,
                              checkpoint_every=1, eval_batch_size=1, progress=False)
    workdir = tmp_path_factory.mktemp("face-run")
    train_facedet(cfg, workdir)
    return workdir


@pytest.fixture(scope="module")
def caption_run(tmp_path_factory, coco_dir):
    from cnnlab.caption.config import overfit_mini
    from cnnlab.caption.train import train as train_captioner

    cfg = dataclasses.replace(overfit_mini(), image_size=32, max_length=6, min_count=1, score_images=0,
                              tcn_blocks=2, tcn_channels=8,
                              train_images=4, val_images=2, steps=2, batch_size=2, learning_rate=0.05,
                              eval_every=2, checkpoint_every=2, eval_batch_size=2, progress=False)
    workdir = tmp_path_factory.mktemp("caption-run")
    train_captioner(cfg, workdir, data_dir=coco_dir / "mini")
    return workdir


# ---------------------------------------------------------------- equality with the JAX models


@pytest.mark.parametrize("fmt", FORMATS)
def test_exported_mnist_cnn_gives_the_models_logits_on_test_digits(fmt, mnist_run, tmp_path):
    from cnnlab.mnist.train import inputs, load_trained

    x, _ = _mnist_digits(16)
    network, variables, config = load_trained(mnist_run)
    assert config.grad == "custom"
    expected = network.apply(variables, *inputs({"x": x}), train=False)

    out = tmp_path / f"mnist{SUFFIX[fmt]}"
    export_run(mnist_run, fmt, out, batch=None)
    (got,) = run_exported(tmp_path, [(fmt, "call", out, {"images": x[..., None]})])
    np.testing.assert_allclose(got["logits"], expected, **TOL)
    sig = json.loads(out.with_name(out.name + ".json").read_text())
    assert sig["inputs"][0]["shape"] == ["N", 28, 28, 1] and sig["inputs"][0]["dtype"] == "uint8"
    assert "test_accuracy" in sig["source_run"]["metrics"]
    if fmt == "stablehlo":  # lowered for both platforms, the batch dimension symbolic
        exported = jax.export.deserialize(out.read_bytes())
        assert exported.platforms == ("cpu", "cuda") and str(exported.in_avals[0].shape[0]) == "N"


@pytest.mark.parametrize("fmt", FORMATS)
def test_exported_tcn_classifier_and_streaming_step_match_the_model(fmt, tcn_run, tmp_path):
    from cnnlab.tcn.data import permutation, to_sequences
    from cnnlab.tcn.train import load_trained

    x, _ = _mnist_digits(3)
    model, variables, config = load_trained(tcn_run)
    assert config.permuted and model.num_blocks == 2 and model.channels == 8 and model.grad == "custom"
    order = permutation(config.permutation_seed)  # a PMNIST run: the permutation is inside the export
    sequences = x.reshape(3, 784)[:, order]
    expected = model.apply({"params": variables["params"]}, to_sequences(sequences))

    out = tmp_path / f"tcn{SUFFIX[fmt]}"
    export_run(tcn_run, fmt, out, batch=None)
    whole, streamed = run_exported(tmp_path, [(fmt, "call", out, {"images": x}),
                                              (fmt, "stream", out.with_name(f"tcn.step{SUFFIX[fmt]}"),
                                               {"pixels": sequences.T.copy()})])
    np.testing.assert_allclose(whole["logits"], expected, **TOL)
    # Pixel after pixel from a zero state, the step ends on the whole-sequence logits.
    np.testing.assert_allclose(streamed["logits"][-1], expected, **TOL)
    step_sig = json.loads(out.with_name(f"tcn.step{SUFFIX[fmt]}.json").read_text())
    assert step_sig["pixel_order"] == order.tolist()


def _crowd(widerface_dir, size):
    from PIL import Image

    from cnnlab.facedet.detect import letterbox
    return letterbox(np.asarray(Image.open(widerface_dir / "samples" / "crowd.jpg").convert("RGB")), size)[0]


def _assert_same_detections(boxes_a, scores_a, boxes_b, scores_b):
    """Each kept box of one set is one of the other's (within 1e-2 pixels), except where NMS broke a tie the
    other way: two boxes overlapping by more than NMS's IoU threshold whose scores agree within ``TOL``, one
    kept by each runtime (their scores differ in the last bits, so each ranks another one first)."""
    from cnnlab.facedet.boxes import iou
    from cnnlab.facedet.detect import NMS_IOU

    for (b1, s1), (b2, s2) in (((boxes_a, scores_a), (boxes_b, scores_b)), ((boxes_b, scores_b), (boxes_a, scores_a))):
        matched = np.abs(b1[:, None] - b2[None]).max(-1).min(axis=1) < 1e-2  # pixels
        overlaps = np.asarray(iou(jnp.asarray(b1[~matched]), jnp.asarray(b2))) > NMS_IOU
        tied = np.isclose(s1[~matched, None], s2[None], rtol=TOL["rtol"], atol=0)
        assert np.all(np.any(overlaps & tied, axis=1)), f"{np.sum(~matched)} boxes unmatched, not by a tie"
        assert np.sum(~matched) <= 0.05 * len(b1)


def _detections(variables, cfg, images):
    """``detect`` of uint8 ``images`` with the model the export holds (``inference_model``: XLA's
    convolutions), so that only the runtime differs, not the order in which a layer adds its products."""
    from cnnlab.export.tasks import inference_model
    from cnnlab.facedet.detect import decoded_detections, image_detections
    from cnnlab.facedet.model import FaceNet

    boxes, scores = decoded_detections(variables, jnp.asarray(images, jnp.float32) / 255.0, config=cfg,
                                       model=inference_model(FaceNet(cfg)))
    return jax.device_get(jax.vmap(image_detections)(boxes, scores))


@pytest.mark.parametrize("fmt", FORMATS)
def test_exported_facenet_detects_the_crowd_photo_as_detect_does(fmt, face_run, widerface_dir, tmp_path):
    from cnnlab.facedet.train import load_trained

    _, variables, cfg = load_trained(face_run)
    images = _crowd(widerface_dir, cfg.image_size)[None]
    boxes, scores, valid = _detections(variables, cfg, images)

    out = tmp_path / f"face{SUFFIX[fmt]}"
    export_run(face_run, fmt, out, batch=1)
    (got,) = run_exported(tmp_path, [(fmt, "call", out, {"images": images})])
    np.testing.assert_array_equal(got["valid"], valid)
    np.testing.assert_allclose(got["scores"], scores, **TOL)
    _assert_same_detections(got["boxes"][0][valid[0]], got["scores"][0][valid[0]], boxes[0][valid[0]],
                            scores[0][valid[0]])


def test_facenet_without_nms_plus_numpy_nms_gives_detects_faces(face_run, widerface_dir):
    from cnnlab.export import postprocess
    from cnnlab.export.tasks import load_functions
    from cnnlab.facedet.train import load_trained

    _, variables, cfg = load_trained(face_run)
    images = _crowd(widerface_dir, cfg.image_size)[None]
    boxes, scores, valid = _detections(variables, cfg, images)
    _, (function,), _ = load_functions(face_run, nms=False)
    all_boxes, all_scores = map(np.asarray, stablehlo_export.export(function, batch=1).call(images))
    keep = postprocess.nms(all_boxes[0], all_scores[0])
    np.testing.assert_allclose(np.sort(all_scores[0][keep])[::-1], scores[0][valid[0]], **TOL)
    _assert_same_detections(all_boxes[0][keep], all_scores[0][keep], boxes[0][valid[0]], scores[0][valid[0]])


@pytest.mark.parametrize("fmt", FORMATS)
def test_exported_captioner_decodes_a_coco_image_as_greedy_does(fmt, caption_run, coco_dir, tmp_path):
    from cnnlab.caption import decode
    from cnnlab.caption.data import load_images, load_split
    from cnnlab.caption.model import CaptionModel
    from cnnlab.caption.train import load_trained

    model, variables, config = load_trained(caption_run)
    paths, _, _ = load_split(coco_dir / "mini", "val")
    images = load_images(paths[:2], config.image_size)
    feature = model.apply(variables, images, method=CaptionModel.features)
    tokens = decode.greedy(model, variables, jnp.asarray(images), max_length=config.max_length)

    out = tmp_path / f"caption{SUFFIX[fmt]}"
    export_run(caption_run, fmt, out, batch=None)
    feature_got, greedy = run_exported(tmp_path, [(fmt, "call", out, {"images": images}),
                                                  (fmt, "greedy", out, {"images": images,
                                                                        "max_length": config.max_length})])
    # float32 sums: errors scale with the largest terms (a barely trained encoder's features reach ~1e9).
    np.testing.assert_allclose(feature_got["feature"], feature, rtol=1e-4, atol=1e-5 * np.abs(feature).max())
    np.testing.assert_array_equal(greedy["tokens"], tokens)


# ---------------------------------------------------------------- bad requests


def test_cli_export_writes_the_file_and_its_signature(mnist_run, tmp_path, capsys):
    from cnnlab.cli import main

    out = tmp_path / "cnn.stablehlo"
    assert main(["export", "--checkpoint", str(mnist_run), "--format", "stablehlo", "--out", str(out),
                 "--batch", "4"]) == 0
    sig = json.loads((tmp_path / "cnn.stablehlo.json").read_text())
    assert sig["batch"] == 4 and sig["outputs"][0]["name"] == "logits" and out.stat().st_size > 0
    assert "images uint8['N', 28, 28, 1]" in capsys.readouterr().out
    assert jax.export.deserialize(out.read_bytes()).in_avals[0].shape == (4, 28, 28, 1)


def test_export_rejects_an_unknown_format(mnist_run, tmp_path):
    with pytest.raises(CnnlabError, match="unknown format 'tflite'; choose one of stablehlo, onnx"):
        export_run(mnist_run, "tflite", tmp_path / "m.tflite")


def test_export_rejects_a_run_folder_without_weights(mnist_run, tmp_path):
    shutil.copy(mnist_run / "config.json", tmp_path / "config.json")
    with pytest.raises(CnnlabError, match="holds no weights"):
        export_run(tmp_path, "stablehlo", tmp_path / "m.stablehlo")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CnnlabError, match="not a training run folder"):
        export_run(tmp_path / "empty", "stablehlo", tmp_path / "m.stablehlo")


@pytest.mark.parametrize("fmt", FORMATS)
def test_export_names_an_op_the_format_cannot_hold(fmt, tmp_path):
    # A host callback has no ONNX operator and no portable StableHLO lowering.
    fn = Function("", lambda x: (jax.pure_callback(np.sin, jax.ShapeDtypeStruct(x.shape, x.dtype), x),),
                  (Tensor("x", ("N",), "float32", ""),), (Tensor("y", ("N",), "float32", ""),),
                  "a function calling back into Python")
    writer = {"stablehlo": stablehlo_export, "onnx": onnx_export}[fmt]
    message = r"cannot (convert|lower) a function calling back into Python: .*callback"
    with pytest.raises(CnnlabError, match=message) as e:
        writer.save(fn, tmp_path / f"f{SUFFIX[fmt]}", batch=2)
    assert "\n" not in str(e.value)
