"""The functions ``cnnlab export`` writes for each task's run folder, preprocessing included.

- MNIST (§4): ``uint8 images [N, 28, 28, 1]`` (as in the IDX files) -> logits ``[N, 10]``.
- TCN on Sequential / Permuted MNIST (§6): the whole-sequence classifier ``uint8 images [N, 28, 28]`` ->
  logits, and the streaming step (one pixel, state in, state out: ``cnnlab.tcn.streaming``).
- FaceNet (§5): ``uint8 RGB [N, S, S, 3]`` -> decoded boxes in input pixels, scores, after NMS
  (``cnnlab.facedet.detect``), or before NMS with ``nms=False``.
- Captioner (§7): the encoder ``uint8 RGB [N, S, S, 3]`` -> feature ``[N, 512]``, and one decoder step
  (feature, previous word, state, step index -> next-word logits, state), so beam search runs anywhere.

Models are rebuilt with ``grad="autodiff"`` and ``impl="xla"`` where they have those attributes: the same
parameters and forward values, without the custom VJPs and CPU patch-matrix kernels that only training
needs. A streaming state is one ``float32 [N, S]`` array (every causal convolution's ring buffer of past
inputs, oldest first, flattened and concatenated), so rows of the state can be copied or reordered freely
(beam search); the captioner's step also takes the step index ``t`` (step 0 reads the image feature).
"""

import dataclasses
import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

from cnnlab.errors import CnnlabError
from cnnlab.export.signature import Function, Tensor

TASKS = ("mnist", "tcn", "facedet", "caption")


def inference_model(module):
    """``module`` with ``grad="autodiff"``, ``impl="xla"`` and ``dtype=None`` where its class has those fields:
    exports compute in float32, the dtype of the saved parameters, whatever precision the run trained in."""
    fields = {f.name for f in dataclasses.fields(module)}
    return module.clone(**{k: v for k, v in (("grad", "autodiff"), ("impl", "xla"), ("dtype", None)) if k in fields})


# ``config.json``'s task name -> the export's (the TCN trains on the "seqmnist" task).
_RUN_TASKS = {"mnist": "mnist", "seqmnist": "tcn", "facedet": "facedet", "caption": "caption"}


def run_task(workdir) -> tuple[str, dict]:
    """(task name, the ``task`` entry of ``config.json``) of a training run folder."""
    workdir = Path(workdir)
    path = workdir / "config.json"
    if not path.is_file():
        raise CnnlabError(f"export: {workdir} is not a training run folder (no config.json); pass the folder "
                          "given to `cnnlab train ... --out`")
    try:
        task = json.loads(path.read_text()).get("task", {})
    except ValueError as e:
        raise CnnlabError(f"export: {path} is not valid JSON ({e})") from None
    if task.get("task") in _RUN_TASKS:
        return _RUN_TASKS[task["task"]], task
    raise CnnlabError(f"export: cannot tell which task wrote {path}; export supports runs of {', '.join(TASKS)}")


def _check_weights(workdir) -> None:
    steps = [p for p in (Path(workdir) / "checkpoints").glob("*") if p.name.isdigit()]
    if not steps:
        raise CnnlabError(f"export: {workdir} holds no weights (no checkpoint under {Path(workdir) / 'checkpoints'}); "
                          "train it first or pass another run folder")


def source_run(workdir, task_name: str, task: dict) -> dict:
    """The run an exported file comes from: folder, task settings and its numeric results."""
    results_path = Path(workdir) / "results.json"
    results = json.loads(results_path.read_text()) if results_path.is_file() else {}
    metrics = {k: v for k, v in results.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    return {"path": str(Path(workdir).resolve()), "task": task_name, "config": task, "metrics": metrics}


def load_functions(workdir, *, nms: bool = True) -> tuple[str, list, dict]:
    """(task name, the ``Function``s to export, the source-run summary) of the run in ``workdir``."""
    task_name, task = run_task(workdir)
    _check_weights(workdir)
    build = {"mnist": _mnist, "tcn": _tcn, "facedet": _facedet, "caption": _caption}[task_name]
    functions = build(workdir, task, nms=nms) if task_name == "facedet" else build(workdir, task)
    return task_name, functions, source_run(workdir, task_name, task)


# ---------------------------------------------------------------- MNIST


def _mnist(workdir, task) -> list:
    from cnnlab.mnist.train import load_trained

    _, variables, config = load_trained(workdir)
    return mnist_functions(config.model, variables)


def mnist_functions(name: str, variables) -> list:
    """The MNIST export of model ``name`` (``"cnn"`` | ``"mlp"``) with ``variables``."""
    from cnnlab.mnist.model import make_model

    network = inference_model(make_model(name))

    def logits(images):
        return (network.apply(variables, images.astype(jnp.float32) / 255.0, train=False),)  # as mnist.train

    return [Function("", logits, (Tensor("images", ("N", 28, 28, 1), "uint8", "MNIST digits, raw pixels as in "
                                         "the IDX files (0 background, 255 ink)"),),
                     (Tensor("logits", ("N", 10), "float32", "scores of the digits 0-9 (softmax: probabilities)"),),
                     f"MNIST {name} (§4, Table {1 if name == 'cnn' else 2}): digit logits")]


# ---------------------------------------------------------------- streaming state


def cache_layout(cache) -> list:
    """``[(module path, buffer length, channels)]`` of a ``"cache"`` collection's ring buffers, in order."""
    flat = traverse_util.flatten_dict(cache)
    return [(key[:-1], int(v.shape[1]), int(v.shape[2])) for key, v in flat.items() if key[-1] == "inputs"]


def state_size(layout) -> int:
    return sum(size * channels for _, size, channels in layout)


def unpack_state(state, layout) -> dict:
    """``state: [N, S]`` -> the ``"cache"`` collection, each ring buffer written from position 0 on.

    The state holds each layer's past inputs oldest first; a ring buffer whose write position is 0 holds them
    in that order (``cnnlab.nn.conv1d.Conv1D``), so the step reads every tap at a fixed position.
    """
    flat, offset = {}, 0
    for key, size, channels in layout:
        flat[key + ("inputs",)] = state[:, offset:offset + size * channels].reshape(state.shape[0], size, channels)
        flat[key + ("index",)] = jnp.zeros((), jnp.int32)
        offset += size * channels
    return traverse_util.unflatten_dict(flat)


def pack_state(cache, layout):
    """The ring buffers of a ``"cache"`` collection after one step from ``unpack_state``, oldest input first,
    as one ``[N, S]`` array: the step wrote the newest input at position 0, the oldest is at position 1."""
    flat = traverse_util.flatten_dict(cache)
    parts = []
    for key, _, _ in layout:
        buffer = flat[key + ("inputs",)]
        parts.append(jnp.concatenate([buffer[:, 1:], buffer[:, :1]], axis=1).reshape(buffer.shape[0], -1))
    return jnp.concatenate(parts, axis=1)


def _step_notes(size: int, inputs: str) -> dict:
    return {"streaming": f"state: float32 [N, {size}], zeros before the first step. Feed {inputs}, and each "
                         "output next_state as the next step's state. Row i of the state belongs to sequence i: "
                         "copy or reorder the rows with the batch (beam search)."}


# ---------------------------------------------------------------- TCN


def _tcn(workdir, task) -> list:
    from cnnlab.tcn.data import SEQUENCE_LENGTH, permutation, to_sequences
    from cnnlab.tcn.streaming import init_cache, step
    from cnnlab.tcn.train import load_trained

    model, variables, config = load_trained(workdir)
    model = inference_model(model)
    params = variables["params"]
    order = permutation(config.permutation_seed) if config.permuted else np.arange(SEQUENCE_LENGTH)
    layout = cache_layout(jax.eval_shape(lambda: init_cache(model, params, 1, 1)))
    size = state_size(layout)

    def classify(images):
        x = to_sequences(images.reshape(images.shape[0], SEQUENCE_LENGTH)[:, order])
        return (model.apply({"params": params}, x),)

    def stream_step(pixel, state):
        x_t = to_sequences(pixel[:, None])[:, 0]  # [N, 1]
        logits, cache = step(model, params, unpack_state(state, layout), x_t)
        return logits, pack_state(cache, layout)

    name = f"TCN {config.block} on {'Permuted' if config.permuted else 'Sequential'} MNIST (§6.3)"
    images = Tensor("images", ("N", 28, 28), "uint8", "MNIST digits, raw pixels as in the IDX files")
    logits = Tensor("logits", ("N", 10), "float32", "scores of the digits 0-9 after the last pixel")
    order_note = ({"pixel_order": order.tolist(), "pixel_order_meaning": "step t reads pixel pixel_order[t] of the "
                   "row-major image (the PMNIST permutation, §6.3.2)"} if config.permuted else
                  {"pixel_order": "row-major: step t reads pixel t of image.reshape(784)"})
    step_fn = Function(
        "step", stream_step,
        (Tensor("pixel", ("N",), "uint8", "the next pixel of each sequence"),
         Tensor("state", ("N", size), "float32", "the causal convolutions' past inputs (zeros at t = 0)")),
        (Tensor("logits", ("N", 10), "float32", "scores of the digits after the pixels so far (the "
                                                "classifier's logits at t = 783)"),
         Tensor("next_state", ("N", size), "float32", "the state to feed with the next pixel")),
        name + ": one streaming step", {**_step_notes(size, "pixel t at step t = 0, 1, ..."), **order_note})
    return [Function("", classify, (images,), (logits,), name + ": whole-sequence classifier", order_note),
            step_fn]


# ---------------------------------------------------------------- FaceNet


def _facedet(workdir, task, *, nms: bool = True) -> list:
    from cnnlab.facedet.train import load_trained

    _, variables, cfg = load_trained(workdir)
    return facedet_functions(cfg, variables, nms=nms)


def facedet_functions(cfg, variables, *, nms: bool = True) -> list:
    """The FaceNet export of config ``cfg`` with ``variables``: after NMS, or every anchor (``nms=False``)."""
    from cnnlab.facedet.detect import NMS_IOU, decoded_detections, image_detections
    from cnnlab.facedet.model import FaceNet

    fields = {f.name for f in dataclasses.fields(cfg)}
    model = inference_model(FaceNet(dataclasses.replace(cfg, grad="autodiff") if "grad" in fields else cfg))
    s = cfg.image_size
    images = Tensor("images", ("N", s, s, 3), "uint8", f"RGB photographs, {s}x{s} (letterbox larger ones: scale "
                                                       "the longer side to fit, pad right/bottom with zeros)")
    name = f"FaceNet {cfg.name} (§5.2)"
    m = 100
    if nms:
        def detect_faces(images):
            # NMS image by image (lax.map) rather than vmapped as in ``detect``: a batched while loop carries
            # its boolean state through selects that onnxruntime has no kernel for.
            boxes, scores = decoded_detections(variables, images.astype(jnp.float32) / 255.0, config=cfg,
                                               model=model)
            return jax.lax.map(lambda bs: image_detections(*bs, max_detections=m), (boxes, scores))

        return [Function("", detect_faces, (images,), (
            Tensor("boxes", ("N", m, 4), "float32", "x1 y1 x2 y2 in input pixels, best first"),
            Tensor("scores", ("N", m), "float32", "face probability of each box"),
            Tensor("valid", ("N", m), "bool", "box kept by NMS (false: padding)")),
            name + f": faces after NMS (IoU {NMS_IOU}); threshold the scores as the use requires (0.5 in cnnlab)")]

    def decoded(images):
        return decoded_detections(variables, images.astype(jnp.float32) / 255.0, config=cfg, model=model)

    a = jax.eval_shape(decoded, jnp.zeros((1, s, s, 3), jnp.uint8))[1].shape[1]
    return [Function("", decoded, (images,), (
        Tensor("boxes", ("N", a, 4), "float32", "x1 y1 x2 y2 in input pixels of every anchor"),
        Tensor("scores", ("N", a), "float32", "face probability of every anchor")),
        name + ": every anchor's decoded box and score, before NMS",
        {"post_processing": f"greedy NMS at IoU {NMS_IOU}: cnnlab.export.postprocess.nms (NumPy only)"})]


# ---------------------------------------------------------------- captioner


def _caption(workdir, task) -> list:
    from cnnlab.caption.model import CaptionModel
    from cnnlab.caption.train import load_trained, load_vocab
    from cnnlab.caption.vocab import EOS_ID, PAD_ID, UKN_ID

    model, variables, config = load_trained(workdir)
    vocab = load_vocab(workdir)
    model = inference_model(model)
    s, e, v = config.image_size, model.embed_dim, model.vocab_size
    feature0 = jnp.zeros((1, e))
    state0 = model.apply(variables, feature0, method=CaptionModel.initial_state)
    _, cache = jax.eval_shape(lambda: model.apply(variables, feature0[:, None], feature0, state0, decode=True,
                                                  method=CaptionModel.decode, mutable=["cache"]))
    layout = cache_layout(cache.get("cache", {}))
    hidden_shape = state0.shape[1:]
    size = state_size(layout) if model.decoder != "gru" else int(np.prod(hidden_shape))

    def encode(images):
        return (model.apply(variables, images, method=CaptionModel.features),)

    def decoder_step(feature, token, state, t):
        embedded = model.apply(variables, token, method=CaptionModel.embed_tokens)
        x_t = jnp.where(t == 0, feature, embedded)  # the feature is the first input word (§7.2)
        if model.decoder == "gru":
            initial = model.apply(variables, feature, method=CaptionModel.initial_state)
            hidden = jnp.where(t == 0, initial, state.reshape(state.shape[0], *hidden_shape))
            (logits, hidden), _ = model.apply(variables, x_t[:, None], feature, hidden, decode=True,
                                              method=CaptionModel.decode, mutable=["cache"])
            return logits[:, 0], hidden.reshape(state.shape[0], -1)
        (logits, _), new = model.apply({**variables, "cache": unpack_state(state, layout)}, x_t[:, None], feature,
                                       jnp.zeros((feature.shape[0], 0)), decode=True, method=CaptionModel.decode,
                                       mutable=["cache"])
        return logits[:, 0], pack_state(new["cache"], layout)

    name = f"captioner, ResNet-18 + {model.decoder} decoder (§7.2)"
    feature = Tensor("feature", ("N", e), "float32", "the image's pooled ResNet-18 feature (the first input word)")
    words = {"vocabulary": list(vocab.words), "special_tokens": {"PAD": PAD_ID, "EOS": EOS_ID, "UKN": UKN_ID},
             "decoding": "never pick <UKN> or <PAD> (§7.2.1); stop at <EOS>. Greedy: token = argmax of the "
                         "allowed logits, fed back at the next step; beam search: keep the best partial "
                         "captions by summed log-softmax and reorder the state rows with the beams."}
    step_fn = Function(
        "decoder_step", decoder_step,
        (feature, Tensor("token", ("N",), "int32", "the previous word's id (ignored at t = 0)"),
         Tensor("state", ("N", size), "float32", "the decoder state (zeros at t = 0)"),
         Tensor("t", (), "int32", "index of this step: 0 reads the feature, t > 0 the word of step t - 1")),
        (Tensor("logits", ("N", v), "float32", "next-word scores over the vocabulary"),
         Tensor("next_state", ("N", size), "float32", "the state to feed at step t + 1")),
        name + ": one decoder step",
        {**_step_notes(size, "the encoder's feature at every step t = 0, 1, ..., and from t = 1 on the word "
                             "chosen at t - 1"), **words})
    return [Function("", encode, (Tensor("images", ("N", s, s, 3), "uint8", f"RGB images resized to "
                                                f"{s}x{s} as cnnlab.caption.data.load_images does"),),
                     (feature,), name + ": image encoder", words), step_fn]
