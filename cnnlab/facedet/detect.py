"""Inference: the jit-compiled ``detect(variables, images, config=...)``, detection in image and video files,
timing, and AP on a source.

Scores are the face probabilities (sigmoid, or the softmax's face column for v1.0); boxes are decoded from
the anchors and pass NMS per image.
"""

import functools
import itertools
import json
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from PIL import Image, ImageDraw

from cnnlab.errors import CnnlabError
from cnnlab.facedet.anchors import generate_anchors
from cnnlab.facedet.boxes import decode, nms
from cnnlab.facedet.config import FaceNetConfig
from cnnlab.facedet.evaluation import SETTINGS, GroundTruth, evaluate
from cnnlab.facedet.model import FaceNet
from cnnlab.train.state import compute_dtype

NMS_IOU = 0.4  # as RetinaFace-style face detectors; the paper does not give its value


def decoded_detections(variables, images, *, config: FaceNetConfig, model: FaceNet | None = None):
    """images: [N, S, S, 3] RGB in [0, 1] -> (boxes [N, A, 4] x1 y1 x2 y2 pixels, scores [N, A]) of every
    anchor, before NMS. ``model``: ``FaceNet`` at the config's precision unless given (e.g. with other layer
    implementations); scores and boxes are float32 either way."""
    if images.shape[1:] != (config.image_size, config.image_size, 3):
        raise ValueError(f"detect: images must be [N, {config.image_size}, {config.image_size}, 3], got {images.shape}")
    anchors, _ = generate_anchors(config.image_size, config.levels, min_size=config.min_anchor_size,
                                  aspect_ratios=config.aspect_ratios, upsample=config.upsample)
    model = model or FaceNet(config, dtype=compute_dtype(config.precision))
    cls_logits, box_offsets = (o.astype(jnp.float32) for o in model.apply(variables, images, train=False))
    if config.num_classes == 2:
        scores = jax.nn.softmax(cls_logits, axis=-1)[..., 1]
    else:
        scores = jax.nn.sigmoid(cls_logits[..., 0])
    return jnp.clip(decode(box_offsets, anchors[None]), 0, config.image_size), scores


@functools.partial(jax.jit, static_argnames=("config", "max_detections"))
def detect(variables, images, *, config: FaceNetConfig, max_detections: int = 100):
    """images: [N, S, S, 3] RGB in [0, 1], S = ``config.image_size``.

    Returns (boxes [N, M, 4] x1 y1 x2 y2 pixels, scores [N, M], valid [N, M]) with M = ``max_detections``,
    best first; threshold the scores as the use requires.
    """
    boxes, scores = decoded_detections(variables, images, config=config)
    return jax.vmap(functools.partial(image_detections, max_detections=max_detections))(boxes, scores)


def image_detections(boxes, scores, *, max_detections: int = 100):
    """NMS on one image's boxes [A, 4] and scores [A] -> (boxes [M, 4], scores [M], valid [M]), best first."""
    idx, valid = nms(boxes, scores, iou_threshold=NMS_IOU, max_outputs=max_detections)
    return boxes[idx], scores[idx], valid


def average_precision(variables, cfg: FaceNetConfig, source, batch_size: int | None = None) -> float:
    """AP of the detector on ``source`` (images with boxes) by the official WIDER protocol's steps, every face
    counting (there is no easy/medium/hard split outside WIDER FACE val)."""
    batch_size = batch_size or cfg.batch_size
    preds, faces = [], []
    for start in range(0, len(source), batch_size):
        batch = source[np.arange(start, min(start + batch_size, len(source)))]
        boxes, scores, valid = jax.device_get(detect(variables, jnp.asarray(batch["x"], jnp.float32) / 255.0,
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
VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm")


def input_paths(paths) -> list:
    """Image and video files, the folders expanded (sorted, recursive)."""
    suffixes = IMAGE_SUFFIXES + VIDEO_SUFFIXES
    out = []
    for p in map(Path, paths):
        if p.is_dir():
            out += sorted(q for q in p.rglob("*") if q.suffix.lower() in suffixes)
        elif p.suffix.lower() in suffixes and p.is_file():
            out.append(p)
        else:
            raise ValueError(f"detect: {p} is neither an image ({', '.join(IMAGE_SUFFIXES)}), a video "
                             f"({', '.join(VIDEO_SUFFIXES)}) nor a folder")
    return out


def detect_image(variables, cfg: FaceNetConfig, image, *, threshold: float = 0.5) -> list:
    """Faces in one image [H, W, 3] uint8 as ``[x1, y1, x2, y2, score]`` lists in its own pixels."""
    x, scale = letterbox(image, cfg.image_size)
    boxes, scores, valid = jax.device_get(detect(variables, jnp.asarray(x[None], jnp.float32) / 255.0, config=cfg))
    keep = valid[0] & (scores[0] >= threshold)
    h, w = image.shape[:2]
    # Boxes may reach into the letterbox padding: clip them to the picture, drop those left empty.
    boxes = np.minimum(boxes[0][keep] / scale, [w, h, w, h])
    return [[*b.round(1).tolist(), round(float(s), 4)] for b, s in zip(boxes, scores[0][keep])
            if b[2] > b[0] and b[3] > b[1]]


def draw_faces(image, faces) -> Image.Image:
    """image: [H, W, 3] uint8; faces: ``[x1, y1, x2, y2, score]`` lists. Returns a copy with boxes and scores."""
    drawn = Image.fromarray(image)
    draw = ImageDraw.Draw(drawn)
    for x1, y1, x2, y2, s in faces:
        draw.rectangle([x1, y1, x2, y2], outline=(0, 255, 0), width=2)
        draw.text((x1, max(0, y1 - 10)), f"{s:.2f}", fill=(0, 255, 0))
    return drawn


def _import_av():
    try:
        import av
    except ImportError as e:
        raise CnnlabError('detect: video input needs PyAV: pip install "cnnlab[facedet]"') from e
    return av


def detect_video(variables, cfg: FaceNetConfig, path, out_path, *, threshold: float = 0.5,
                 max_frames: int | None = None, every: int = 1) -> dict:
    """Detect faces in a video's frames (the real-time video use of §5.3.7); write them with boxes drawn to
    ``out_path`` (H.264, same fps).

    Every ``every``-th frame goes through the detector, letterboxed like an image; the frames between are
    drawn with the last detections, so the output keeps every frame and the timing. ``max_frames`` stops
    early. Returns ``{"video", "output", "fps", "size", "frames": [{"frame", "faces_x1y1x2y2_score"}]}``.
    """
    av = _import_av()
    frames, faces = [], []
    try:
        with av.open(str(path)) as src:
            if not src.streams.video:
                raise ValueError(f"detect: {path} has no video stream")
            stream = src.streams.video[0]
            fps = stream.average_rate or stream.guessed_rate
            with av.open(str(out_path), "w") as dst:
                out = dst.add_stream("libx264", rate=fps)
                # yuv420p, which every player reads, needs even sizes: an odd last row/column is dropped
                out.width, out.height, out.pix_fmt = stream.width // 2 * 2, stream.height // 2 * 2, "yuv420p"
                for i, frame in enumerate(itertools.islice(src.decode(stream), max_frames)):
                    image = frame.to_ndarray(format="rgb24")
                    if i % every == 0:
                        faces = detect_image(variables, cfg, image, threshold=threshold)
                        frames.append({"frame": i, "faces_x1y1x2y2_score": faces})
                    drawn = np.asarray(draw_faces(image, faces))[:out.height, :out.width]
                    dst.mux(out.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(drawn), format="rgb24")))
                dst.mux(out.encode())  # flush the encoder's delayed frames
    except av.FFmpegError as e:
        raise ValueError(f"detect: cannot read video {path}: {e}") from e
    return {"video": str(path), "output": str(out_path), "fps": float(fps), "size": [stream.width, stream.height],
            "frames": frames}


def detect_files(variables, cfg: FaceNetConfig, paths, out_dir, *, threshold: float = 0.5,
                 max_frames: int | None = None, every: int = 1) -> list:
    """Detect faces in image and video files and folders of them; write ``out_dir/<name>.jpg`` (images) and
    ``out_dir/<name>.mp4`` (videos, see ``detect_video``) with boxes drawn, and ``out_dir/detections.json``.
    Returns the detections."""
    if every < 1 or (max_frames is not None and max_frames < 1):
        raise ValueError(f"detect_files: every and max_frames must be >= 1, got {every} and {max_frames}")
    paths = input_paths(paths)
    if any(p.suffix.lower() in VIDEO_SUFFIXES for p in paths):
        _import_av()  # a missing package fails before any work
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    results = []
    for path in paths:
        if path.suffix.lower() in VIDEO_SUFFIXES:
            results.append(detect_video(variables, cfg, path, out_dir / f"{path.stem}.mp4", threshold=threshold,
                                        max_frames=max_frames, every=every))
            continue
        image = np.asarray(Image.open(path).convert("RGB"))
        faces = detect_image(variables, cfg, image, threshold=threshold)
        draw_faces(image, faces).save(out_dir / f"{path.stem}.jpg")
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
