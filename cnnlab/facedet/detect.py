"""Inference: the jit-compiled ``detect(variables, images, config=...)``, drawing, timing, and AP on a source.

Scores are the face probabilities (sigmoid, or the softmax's face column for v1.0); boxes are decoded from
the anchors and pass NMS per image.
"""

import functools
import json
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from PIL import Image, ImageDraw

from cnnlab.facedet.anchors import generate_anchors
from cnnlab.facedet.boxes import decode, nms
from cnnlab.facedet.config import FaceNetConfig
from cnnlab.facedet.evaluation import SETTINGS, GroundTruth, evaluate
from cnnlab.facedet.model import FaceNet

NMS_IOU = 0.4  # as RetinaFace-style face detectors; the paper does not give its value


@functools.partial(jax.jit, static_argnames=("config", "max_detections"))
def detect(variables, images, *, config: FaceNetConfig, max_detections: int = 100):
    """images: [N, S, S, 3] RGB in [0, 1], S = ``config.image_size``.

    Returns (boxes [N, M, 4] x1 y1 x2 y2 pixels, scores [N, M], valid [N, M]) with M = ``max_detections``,
    best first; threshold the scores as the use requires.
    """
    if images.shape[1:] != (config.image_size, config.image_size, 3):
        raise ValueError(f"detect: images must be [N, {config.image_size}, {config.image_size}, 3], got {images.shape}")
    anchors, _ = generate_anchors(config.image_size, config.levels, min_size=config.min_anchor_size,
                                  aspect_ratios=config.aspect_ratios, upsample=config.upsample)
    cls_logits, box_offsets = FaceNet(config).apply(variables, images, train=False)
    if config.num_classes == 2:
        scores = jax.nn.softmax(cls_logits, axis=-1)[..., 1]
    else:
        scores = jax.nn.sigmoid(cls_logits[..., 0])
    boxes = jnp.clip(decode(box_offsets, anchors[None]), 0, config.image_size)

    def one(b, s):
        idx, valid = nms(b, s, iou_threshold=NMS_IOU, max_outputs=max_detections)
        return b[idx], s[idx], valid

    return jax.vmap(one)(boxes, scores)


def average_precision(variables, cfg: FaceNetConfig, source, batch_size: int | None = None) -> float:
    """AP of the detector on ``source`` (images with boxes) by the official WIDER protocol's steps, every face
    counting (there is no easy/medium/hard split outside WIDER FACE val)."""
    batch_size = batch_size or cfg.batch_size
    preds, faces = [], []
    for start in range(0, len(source), batch_size):
        batch = source[np.arange(start, min(start + batch_size, len(source)))]
        boxes, scores, valid = jax.device_get(detect(variables, jnp.asarray(batch["image"], jnp.float32) / 255.0,
                                                     config=cfg))
        for b, s, v, gt, gv in zip(boxes, scores, valid, batch["boxes"], batch["valid"]):
            preds.append(np.column_stack([b[v, :2], b[v, 2:] - b[v, :2], s[v]]))
            faces.append(np.column_stack([gt[gv, :2], gt[gv, 2:] - gt[gv, :2]]))
    keep = [[np.arange(len(f)) for f in faces]]
    gt = GroundTruth(["source"], [[str(i) for i in range(len(faces))]], [faces], {s: keep for s in SETTINGS})
    return evaluate([preds], gt)["ap_hard"]


def letterbox(image, size: int):
    """Scale an [H, W, 3] uint8 image to fit ``size``² (aspect kept), zero-pad right/bottom; returns (x, scale)."""
    h, w = image.shape[:2]
    scale = size / max(h, w)
    resized = np.asarray(Image.fromarray(image).resize((max(1, round(w * scale)), max(1, round(h * scale))),
                                                         Image.BILINEAR))
    canvas = np.zeros((size, size, 3), np.uint8)
    canvas[:resized.shape[0], :resized.shape[1]] = resized
    return canvas, scale


IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")


def image_paths(paths) -> list:
    out = []
    for p in map(Path, paths):
        if p.is_dir():
            out += sorted(q for q in p.rglob("*") if q.suffix.lower() in IMAGE_SUFFIXES)
        elif p.suffix.lower() in IMAGE_SUFFIXES and p.is_file():
            out.append(p)
        else:
            raise ValueError(f"detect: {p} is neither an image ({', '.join(IMAGE_SUFFIXES)}) nor a folder")
    return out


def detect_files(variables, cfg: FaceNetConfig, paths, out_dir, *, threshold: float = 0.5) -> list:
    """Detect faces in image files/folders; write ``out_dir/<name>.jpg`` with boxes drawn and
    ``out_dir/detections.json``. Returns the detections."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    results = []
    for path in image_paths(paths):
        image = np.asarray(Image.open(path).convert("RGB"))
        x, scale = letterbox(image, cfg.image_size)
        boxes, scores, valid = jax.device_get(detect(variables, jnp.asarray(x[None], jnp.float32) / 255.0, config=cfg))
        keep = valid[0] & (scores[0] >= threshold)
        faces = [[*(np.asarray(b) / scale).round(1).tolist(), round(float(s), 4)]
                 for b, s in zip(boxes[0][keep], scores[0][keep])]
        drawn = Image.fromarray(image)
        draw = ImageDraw.Draw(drawn)
        for x1, y1, x2, y2, s in faces:
            draw.rectangle([x1, y1, x2, y2], outline=(0, 255, 0), width=2)
            draw.text((x1, max(0, y1 - 10)), f"{s:.2f}", fill=(0, 255, 0))
        drawn.save(out_dir / f"{path.stem}.jpg")
        results.append({"image": str(path), "faces_x1y1x2y2_score": faces})
    (out_dir / "detections.json").write_text(json.dumps(results, indent=1) + "\n")
    return results


def time_detect(variables, cfg: FaceNetConfig, *, repeats: int = 5) -> float:
    """Milliseconds per ``config.image_size``² image (batch 1, compile excluded, median of ``repeats``)."""
    x = jnp.zeros((1, cfg.image_size, cfg.image_size, 3))
    jax.block_until_ready(detect(variables, x, config=cfg))
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        jax.block_until_ready(detect(variables, x, config=cfg))
        times.append(time.perf_counter() - t)
    return 1000 * float(np.median(times))


def predict_widerface(variables, cfg: FaceNetConfig, gt: GroundTruth, images_dir, pred_dir) -> int:
    """Run the detector over every WIDER FACE val image of ``gt`` (``images_dir/<event>/<image>.jpg``) and write
    the official submission files to ``pred_dir``. Returns the number of images. Scores are not thresholded."""
    from cnnlab.facedet.evaluation import write_prediction_file

    count = 0
    for event, files in zip(gt.events, gt.files):
        for name in files:
            path = Path(images_dir) / event / f"{name}.jpg"
            if not path.is_file():
                raise FileNotFoundError(f"predict_widerface: {path} not found (WIDER_val/images layout expected)")
            x, scale = letterbox(np.asarray(Image.open(path).convert("RGB")), cfg.image_size)
            boxes, scores, valid = jax.device_get(detect(variables, jnp.asarray(x[None], jnp.float32) / 255.0,
                                                         config=cfg))
            b, s = boxes[0][valid[0]] / scale, scores[0][valid[0]]
            write_prediction_file(Path(pred_dir) / event / f"{name}.txt", f"{name}.jpg",
                                  np.column_stack([b[:, :2], b[:, 2:] - b[:, :2]]), s)
            count += 1
    return count
