"""Training FaceNet on the shared engine (``cnnlab.train``): configs, data sources, loss and metrics.

The engine minimises the mean of a per-example loss; FaceNet's losses are batch quantities (normalised by
the positives of the whole batch, OHEM over the batch), so ``loss_fn`` returns the batch loss broadcast to
every example, whose mean — and gradient — is exactly the batch loss.
"""

import dataclasses
import functools
import importlib.util
import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from cnnlab import train
from cnnlab.facedet.anchors import generate_anchors
from cnnlab.facedet.boxes import anchor_targets
from cnnlab.facedet.config import FaceNetConfig
from cnnlab.facedet.data import load_wider_split, make_example, synthetic_faces, tfds_wider_records
from cnnlab.facedet.losses import detection_loss
from cnnlab.facedet.model import FaceNet
from cnnlab.nn.resnet_weights import load_resnet_weights

EXPERIMENTS = Path(__file__).resolve().parents[2] / "experiments"


def load_config(name: str) -> FaceNetConfig:
    """``v2_4`` (or ``v2.4``) -> ``experiments/facedet_v2_4.py``'s ``get_config()``; a path to a .py file works too."""
    path = Path(name) if name.endswith(".py") else EXPERIMENTS / f"facedet_{name.replace('.', '_')}.py"
    if not path.is_file():
        known = sorted(p.stem.removeprefix("facedet_") for p in EXPERIMENTS.glob("facedet_v*.py"))
        raise ValueError(f"load_config: no config {name!r} ({path}); known: {', '.join(known)}")
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config()


class FaceSource:
    """Training examples for the engine: ``source[indices]`` -> {"image" uint8, "boxes", "valid"}.

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
            ex["image"] = np.round(ex["image"] * 255).astype(np.uint8)  # uint8 keeps the host->device copy small
            examples.append(ex)
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
        return (batch["image"].astype(jnp.float32) / 255.0,)

    return loss_fn, metrics_fn, inputs_fn, anchors


def synthetic_split(cfg: FaceNetConfig, num_images: int, seed: int) -> tuple[list, list]:
    """The synthetic composite's training and held-out records, as ``train_facedet`` trains and validates on."""
    size = max(cfg.image_size, 256)
    return (synthetic_faces(num_images, size=size, seed=seed),
            synthetic_faces(max(num_images // 4, cfg.batch_size), size=size, seed=seed + 1))


def train_facedet(cfg: FaceNetConfig, workdir, *, data="synthetic", num_images: int = 64, seed: int = 0,
                  eval_every: int | None = None, progress: bool = True, backbone_weights=None) -> dict:
    """Train ``cfg`` on the synthetic composite (``data="synthetic"``), an official WIDER FACE folder or
    tensorflow-datasets' ``wider_face`` (``"tfds"``, or ``"tfds:<train split>"`` such as ``"tfds:train[:2000]"``), then
    detect on the validation images and score them with the official protocol's steps. Returns the results.
    ``backbone_weights``: a torchvision ResNet checkpoint the backbone starts from (§5.2.1); None: random."""
    if data == "synthetic":
        # At most 4 faces per composite: padding to 256 would make the [anchors, faces] IoU matrix 30x larger.
        cfg = dataclasses.replace(cfg, max_faces=min(cfg.max_faces, 8))
        train_records, val_records = synthetic_split(cfg, num_images, seed)
    elif data == "tfds" or str(data).startswith("tfds:"):
        # The decoded images stay in memory: a sliced train split keeps that small.
        split = str(data).partition(":")[2] or "train"
        train_records, val_records = list(tfds_wider_records(split)), list(tfds_wider_records("validation"))
    else:
        train_records, val_records = load_wider_split(data, "train"), load_wider_split(data, "val")
    repeats = -(-cfg.steps * cfg.batch_size // len(train_records))
    train_source = FaceSource(train_records, cfg, seed=seed, augment=True, repeats=repeats)
    val_source = FaceSource(val_records, cfg, seed=seed, augment=False)
    loss_fn, metrics_fn, inputs_fn, _ = make_loss_fns(cfg)
    config = train.TrainConfig(steps=cfg.steps, batch_size=cfg.batch_size, learning_rate=cfg.learning_rate,
                               lr_boundaries=cfg.lr_boundaries, lr_scales=cfg.lr_scales, grad_clip_norm=10.0,
                               eval_every=eval_every or cfg.steps, checkpoint_every=eval_every or cfg.steps,
                               eval_batch_size=cfg.batch_size, log_every=max(1, min(10, cfg.steps)), seed=seed,
                               progress=progress)
    model = FaceNet(cfg)
    start = "random (from scratch)" if backbone_weights is None else str(backbone_weights)
    print(f"FaceNet backbone ResNet-{cfg.depth}: {start}")
    init = None if backbone_weights is None else functools.partial(
        load_resnet_weights, backbone_weights, cfg.depth, at="backbone")
    results = train.train_and_evaluate(
        config, workdir, model=model, loss_fn=loss_fn, metrics_fn=metrics_fn, inputs_fn=inputs_fn,
        train_source=train_source, val_source=val_source, init_variables=init,
        task_config={"facedet": dataclasses.asdict(cfg), "data": str(data), "num_images": num_images,
                     "backbone_weights": start})
    results["backbone_weights"] = start
    results["grad"] = cfg.grad
    variables, _ = train.load_best_variables(workdir, _variables_template(model, cfg))
    from cnnlab.facedet.detect import average_precision
    results["val_ap"] = average_precision(variables, cfg, val_source)
    Path(workdir, "results.json").write_text(json.dumps(results, indent=2) + "\n")
    return results


def _variables_template(model, cfg: FaceNetConfig):
    shapes = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, cfg.image_size, cfg.image_size, 3))))
    return jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)


def load_trained(workdir):
    """(config, variables) of a run written by ``train_facedet``."""
    saved = json.loads(Path(workdir, "config.json").read_text())["task"]["facedet"]
    cfg = FaceNetConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in saved.items()})
    variables, _ = train.load_best_variables(workdir, _variables_template(FaceNet(cfg), cfg))
    return cfg, variables
