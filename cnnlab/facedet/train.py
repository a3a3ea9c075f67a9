"""Training FaceNet on the shared engine (``cnnlab.train``): data sources, loss and metrics;
``train(config, workdir)`` trains, ``evaluate(workdir)`` scores a run's best weights again on its held-out images.

The engine minimises the mean of a per-example loss; FaceNet's losses are batch quantities (normalised by
the positives of the whole batch, OHEM over the batch), so ``loss_fn`` returns the batch loss broadcast to
every example, whose mean — and gradient — is exactly the batch loss.
"""

import dataclasses
import functools
import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from cnnlab import train as engine
from cnnlab.facedet.anchors import generate_anchors
from cnnlab.facedet.boxes import anchor_targets
from cnnlab.facedet.config import FaceNetConfig
from cnnlab.facedet.data import load_wider_split, make_example, synthetic_faces, tfds_wider_records
from cnnlab.facedet.losses import detection_loss
from cnnlab.facedet.model import FaceNet
from cnnlab.nn.resnet_weights import load_resnet_weights
from cnnlab.train import tasks

TASK = "facedet"

class FaceSource:
    """Training examples for the engine: ``source[indices]`` -> {"x": uint8 images, "boxes", "valid"}.

    Index ``i`` is record ``i mod len(records)`` with its own augmentation drawn from ``(seed, i)``, so the
    source can be made ``repeats`` times longer than the records (fresh crops every pass) and stays a pure
    function of the index, as the engine's resumable pipeline needs.
    """

    def __init__(self, records, cfg: FaceNetConfig, *, seed: int, augment: bool, repeats: int = 1):
        self.records, self.cfg, self.seed, self.augment, self.repeats = records, cfg, seed, augment, repeats

    def __len__(self):
        return len(self.records) * self.repeats

    def __getitem__(self, indices):
        examples = []
        for i in np.asarray(indices).reshape(-1):
            r = self.records[i % len(self.records)]
            rng = np.random.default_rng([self.seed, int(i)])
            image = r["image"] if "image" in r else _read_image(r["path"])
            ex = make_example(image, r["boxes"], size=self.cfg.image_size, max_faces=self.cfg.max_faces, rng=rng,
                              jitter=self.cfg.color_jitter and self.augment, augment=self.augment)
            # uint8 keeps the host->device copy small
            examples.append({"x": np.round(ex["image"] * 255).astype(np.uint8), "boxes": ex["boxes"],
                             "valid": ex["valid"]})
        return {k: np.stack([e[k] for e in examples]) for k in examples[0]}


def _read_image(path):
    from PIL import Image
    return np.asarray(Image.open(path).convert("RGB"))


def make_loss_fns(cfg: FaceNetConfig):
    """(loss_fn, metrics_fn, inputs_fn, anchors) for the engine."""
    anchors, level_ids = generate_anchors(cfg.image_size, cfg.levels, min_size=cfg.min_anchor_size,
                                          aspect_ratios=cfg.aspect_ratios, upsample=cfg.upsample)

    def parts(outputs, batch):
        cls_logits, box_offsets = outputs
        labels, targets = jax.vmap(lambda b, v: anchor_targets(anchors, b, v, threshold=cfg.iou_threshold))(
            batch["boxes"], batch["valid"])
        return detection_loss(cls_logits, box_offsets, labels, targets, anchors, level_ids,
                              classification=cfg.classification, normalisation=cfg.normalisation,
                              gamma=cfg.focal_gamma, ohem=cfg.ohem, ohem_top_k=cfg.ohem_top_k,
                              num_levels=len(cfg.levels))

    def loss_fn(outputs, batch):
        loss, _ = parts(outputs, batch)
        return jnp.full(batch["valid"].shape[:1], loss)

    def metrics_fn(outputs, batch):
        _, aux = parts(outputs, batch)
        n = batch["valid"].shape[:1]
        return {"cls_loss": jnp.full(n, aux["cls"]), "reg_loss": jnp.full(n, aux["reg"]),
                "positives": jnp.full(n, aux["num_pos"])}

    def inputs_fn(batch):
        return (batch["x"].astype(jnp.float32) / 255.0,)

    return loss_fn, metrics_fn, inputs_fn, anchors


def synthetic_split(cfg: FaceNetConfig, num_images: int, seed: int) -> tuple[list, list]:
    """The synthetic composite's training and held-out records, as ``train`` trains and validates on."""
    size = max(cfg.image_size, 256)
    return (synthetic_faces(num_images, size=size, seed=seed),
            synthetic_faces(max(num_images // 4, cfg.batch_size), size=size, seed=seed + 1))


def _for_data(cfg: FaceNetConfig) -> FaceNetConfig:
    # At most 8 faces per synthetic composite: padding to 256 would make the [anchors, faces] IoU matrix 30x larger.
    return dataclasses.replace(cfg, max_faces=min(cfg.max_faces, 8)) if cfg.data == "synthetic" else cfg


def records(cfg: FaceNetConfig) -> tuple[list, list]:
    """Training and validation records of ``cfg.data``: the synthetic composite (``"synthetic"``), tensorflow-
    datasets' ``wider_face`` (``"tfds"``, or ``"tfds:<train split>"`` such as ``"tfds:train[:2000]"``; the decoded
    images stay in memory, a sliced train split keeps that small) or an official WIDER FACE folder."""
    if cfg.data == "synthetic":
        return synthetic_split(cfg, cfg.num_images, cfg.seed)
    if cfg.data == "tfds" or cfg.data.startswith("tfds:"):
        split = cfg.data.partition(":")[2] or "train"
        return list(tfds_wider_records(split)), list(tfds_wider_records("validation"))
    return load_wider_split(cfg.data, "train"), load_wider_split(cfg.data, "val")


def train(cfg: FaceNetConfig, workdir, *, backbone_weights=None) -> dict:
    """Train ``cfg`` on ``cfg.data`` (``records``), then detect on the validation images and score them with the
    official protocol's steps (``val_ap``). Returns the results.
    ``backbone_weights``: a torchvision ResNet checkpoint the backbone starts from (§5.2.1); None: random."""
    cfg = _for_data(cfg)
    train_records, val_records = records(cfg)
    repeats = -(-cfg.steps * cfg.batch_size // len(train_records))
    train_source = FaceSource(train_records, cfg, seed=cfg.seed, augment=True, repeats=repeats)
    val_source = FaceSource(val_records, cfg, seed=cfg.seed, augment=False)
    loss_fn, metrics_fn, inputs_fn, _ = make_loss_fns(cfg)
    model = FaceNet(cfg, dtype=engine.compute_dtype(cfg.precision))
    start = "random (from scratch)" if backbone_weights is None else str(backbone_weights)
    print(f"FaceNet backbone ResNet-{cfg.depth}: {start}")
    init = None if backbone_weights is None else functools.partial(
        load_resnet_weights, backbone_weights, cfg.depth, at="backbone")
    results = engine.train_and_evaluate(
        tasks.engine_config(cfg), workdir, model=model, loss_fn=loss_fn, metrics_fn=metrics_fn,
        inputs_fn=inputs_fn, train_source=train_source, val_source=val_source, init_variables=init,
        task_config={**tasks.task_settings(cfg, TASK), "backbone_weights": start})
    results["backbone_weights"] = start
    results["grad"] = cfg.grad
    variables = tasks.load_best(workdir, model, *_example(cfg))
    from cnnlab.facedet.detect import average_precision
    results["val_ap"] = average_precision(variables, cfg, val_source)
    Path(workdir, "results.json").write_text(json.dumps(results, indent=2) + "\n")
    return results


def _example(cfg: FaceNetConfig):
    return (np.zeros((1, cfg.image_size, cfg.image_size, 3), np.float32),)


def load_trained(workdir):
    """(model, best variables, config) of a run written by ``train``."""
    cfg = tasks.read_run(workdir, TASK, FaceNetConfig)
    model = FaceNet(cfg, dtype=engine.compute_dtype(cfg.precision))
    return model, tasks.load_best(workdir, model, *_example(cfg)), cfg


def evaluate(workdir) -> dict:
    """AP of a run's best weights on the validation images of its data (every face counting)."""
    from cnnlab.facedet.detect import average_precision

    _, variables, cfg = load_trained(workdir)
    _, val_records = records(cfg)
    val_source = FaceSource(val_records, cfg, seed=cfg.seed, augment=False)
    return {"name": cfg.name, "data": cfg.data, "val_images": len(val_source),
            "val_ap": average_precision(variables, cfg, val_source)}
