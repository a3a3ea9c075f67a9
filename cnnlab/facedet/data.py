"""Face-detection data: the official WIDER FACE reader (and tensorflow-datasets' copy), the §5.2.2/§5.3.5
augmentation, and a synthetic composite of real faces on real photographs for CPU over-fitting runs.

Host-side numpy (the usual JAX split: input pipeline in numpy, model in jit). Boxes are x1 y1 x2 y2 pixels.
A batch is ``{"image": [N, S, S, 3] float32 in [0, 1], "boxes": [N, G, 4] float32, "valid": [N, G] bool}``
with the ground truth padded to ``G`` faces.
"""

from pathlib import Path

import numpy as np
from matplotlib.colors import hsv_to_rgb, rgb_to_hsv
from PIL import Image

from cnnlab.errors import CnnlabError

CROP_RANGE = (0.33, 0.95)  # §5.2.2: square crop side as a fraction of the image's short side


def read_wider_annotations(path) -> list:
    """Read ``wider_face_{train,val}_bbx_gt.txt``: per image its relative path and faces as ``[F, 4]`` x1 y1 x2 y2.

    Each entry is the image path, the face count, then ``x y w h blur expression illumination invalid
    occlusion pose`` per face; images without faces carry one dummy row of zeros. Faces marked invalid and
    boxes of zero width or height are skipped; images left without faces are kept (they teach background).
    A malformed entry raises ``CnnlabError`` naming the file and line.
    """
    path = Path(path)
    lines = path.read_text().splitlines()
    records, n = [], 0

    def fail(i, msg):
        raise CnnlabError(f"{path}:{i + 1}: {msg}")

    while n < len(lines):
        name = lines[n].strip()
        if not name:
            n += 1
            continue
        if not name.lower().endswith((".jpg", ".jpeg", ".png")):
            fail(n, f"expected an image path, got {name!r}")
        if n + 1 >= len(lines):
            fail(n + 1, f"missing face count for {name}")
        try:
            count = int(lines[n + 1])
        except ValueError:
            fail(n + 1, f"face count must be an integer, got {lines[n + 1]!r}")
        if count < 0:
            fail(n + 1, f"face count must be >= 0, got {count}")
        rows = max(count, 1) if count == 0 and n + 2 < len(lines) and _is_dummy(lines[n + 2]) else count
        faces = []
        for i in range(n + 2, n + 2 + rows):
            if i >= len(lines):
                fail(i, f"{name} announces {count} faces but the file ends")
            fields = lines[i].split()
            try:
                values = [int(float(v)) for v in fields]
            except ValueError:
                fail(i, f"expected 10 integers 'x y w h blur expression illumination invalid occlusion pose', "
                        f"got {lines[i]!r}")
            if len(values) != 10:
                fail(i, f"expected 10 integers 'x y w h blur expression illumination invalid occlusion pose', "
                        f"got {len(values)} values")
            x, y, w, h, invalid = values[0], values[1], values[2], values[3], values[7]
            if count and not invalid and w > 0 and h > 0:
                faces.append([x, y, x + w, y + h])
        records.append({"path": name, "boxes": np.asarray(faces, np.float32).reshape(-1, 4)})
        n += 2 + rows
    return records


def _is_dummy(line: str) -> bool:
    fields = line.split()
    return len(fields) == 10 and all(f.lstrip("-").isdigit() for f in fields)


def load_wider_split(root, split: str = "train") -> list:
    """Records of the official layout ``root/wider_face_split/wider_face_<split>_bbx_gt.txt`` with image paths
    resolved under ``root/WIDER_<split>/images/``."""
    root = Path(root)
    ann = root / "wider_face_split" / f"wider_face_{split}_bbx_gt.txt"
    if not ann.is_file():
        raise FileNotFoundError(f"load_wider_split: {ann} not found (official WIDER FACE layout expected)")
    records = read_wider_annotations(ann)
    for r in records:
        r["path"] = str(root / f"WIDER_{split}" / "images" / r["path"])
    return records


def tfds_wider_records(split: str = "train", *, data_dir=None):
    """Records of tensorflow-datasets' ``wider_face`` for online users (``pip install "cnnlab[tfds]"``):
    ``{"path": "<event>/<name>.jpg", "image": [H, W, 3] uint8, "boxes": [F, 4] x1 y1 x2 y2 pixels}``, the boxes
    as ``read_wider_annotations`` gives them. An iterator over ``split`` ("train", "validation", "train[:1000]"):
    §5.2.2 trains on WIDER FACE train and evaluates on validation.

    tfds keeps each face's ``bbox`` as [ymin, xmin, ymax, xmax] divided by the image size (clipped to the image)
    and its official flags; as in the official reader, ``invalid`` faces and zero-size boxes are skipped.
    """
    try:
        import tensorflow_datasets as tfds
    except ImportError as e:
        raise CnnlabError('tfds_wider_records: needs tensorflow-datasets and TensorFlow: '
                          'pip install "cnnlab[tfds]"') from e
    return map(_tfds_record, tfds.as_numpy(tfds.load("wider_face", split=split, data_dir=data_dir)))


def _tfds_record(example) -> dict:
    image, faces = example["image"], example["faces"]
    h, w = image.shape[:2]
    # Rounding recovers the official integer pixels from the float32 fractions.
    ymin, xmin, ymax, xmax = np.round(np.reshape(faces["bbox"], (-1, 4)) * [h, w, h, w]).T
    keep = ~np.asarray(faces["invalid"], bool).reshape(-1) & (xmax > xmin) & (ymax > ymin)
    boxes = np.stack([xmin, ymin, xmax, ymax], axis=1)[keep].astype(np.float32)
    return {"path": example["image/filename"].decode(), "image": image, "boxes": boxes}


def random_crop_flip(image, boxes, size: int, rng):
    """§5.2.2: a random square crop of 0.33–0.95 of the short side, resized to ``size``², flipped with p = 0.5.

    image: [H, W, 3] uint8; boxes: [F, 4]. Faces whose centre leaves the crop are dropped, the rest clipped
    to it. Returns (image [size, size, 3] uint8, boxes [F', 4] float32).
    """
    h, w = image.shape[:2]
    side = int(round(rng.uniform(*CROP_RANGE) * min(h, w)))
    x0, y0 = rng.integers(0, w - side + 1), rng.integers(0, h - side + 1)
    crop = Image.fromarray(image[y0:y0 + side, x0:x0 + side]).resize((size, size), Image.BILINEAR)
    return _crop_boxes(boxes, x0, y0, side, size, flip=rng.uniform() < 0.5, image=np.asarray(crop))


def _crop_boxes(boxes, x0, y0, side, size, *, flip, image):
    centre = (boxes[:, :2] + boxes[:, 2:]) / 2
    inside = np.all((centre >= [x0, y0]) & (centre < [x0 + side, y0 + side]), axis=1)
    out = np.clip((boxes[inside] - [x0, y0, x0, y0]) * (size / side), 0, size).astype(np.float32)
    if flip:
        image = image[:, ::-1]
        out = np.stack([size - out[:, 2], out[:, 1], size - out[:, 0], out[:, 3]], axis=1)
    return np.ascontiguousarray(image), out.reshape(-1, 4)


def color_jitter(image, rng, *, max_noise: float = 0.03, max_hue_shift: float = 0.05):
    """§5.3.5 (v2.3): random Gaussian noise and a random hue shift. image: [H, W, 3] float in [0, 1]."""
    hsv = rgb_to_hsv(np.clip(image, 0, 1))
    hsv[..., 0] = (hsv[..., 0] + rng.uniform(-max_hue_shift, max_hue_shift)) % 1.0
    noisy = hsv_to_rgb(hsv) + rng.normal(0, rng.uniform(0, max_noise), image.shape)
    return np.clip(noisy, 0, 1).astype(np.float32)


def pad_boxes(boxes, max_faces: int):
    """[F, 4] -> ([max_faces, 4], valid [max_faces]); keeps the largest faces if there are more."""
    if len(boxes) > max_faces:
        area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
        boxes = boxes[np.argsort(-area, kind="stable")[:max_faces]]
    out = np.zeros((max_faces, 4), np.float32)
    out[:len(boxes)] = boxes
    return out, np.arange(max_faces) < len(boxes)


def make_example(image, boxes, *, size: int, max_faces: int, rng, jitter: bool, augment: bool = True):
    """One training example from an image [H, W, 3] uint8 and its faces [F, 4]."""
    if augment:
        image, boxes = random_crop_flip(image, boxes, size, rng)
    else:
        scale = size / np.array([image.shape[1], image.shape[0]] * 2)
        image = np.asarray(Image.fromarray(image).resize((size, size), Image.BILINEAR))
        boxes = (boxes * scale).astype(np.float32)
    x = image.astype(np.float32) / 255.0
    if jitter:
        x = color_jitter(x, rng)
    padded, valid = pad_boxes(boxes, max_faces)
    return {"image": x, "boxes": padded, "valid": valid}


def batches(records, *, batch_size: int, size: int, max_faces: int, seed: int, jitter: bool, augment: bool = True):
    """Endless shuffled batches from records ``{"path" or "image", "boxes"}``."""
    rng = np.random.default_rng(seed)
    while True:
        order = rng.permutation(len(records))
        for start in range(0, len(order) - batch_size + 1, batch_size):
            examples = []
            for i in order[start:start + batch_size]:
                r = records[i]
                image = r["image"] if "image" in r else np.asarray(Image.open(r["path"]).convert("RGB"))
                examples.append(make_example(image, r["boxes"], size=size, max_faces=max_faces, rng=rng,
                                             jitter=jitter, augment=augment))
            yield {k: np.stack([e[k] for e in examples]) for k in examples[0]}


# Photographs of scikit-image without people in them (astronaut and camera show faces that have no box).
BACKGROUNDS = ("coffee", "chelsea", "hubble_deep_field", "rocket", "immunohistochemistry", "coins")


def synthetic_faces(num_images: int, *, size: int = 256, faces_per_image=(1, 4), face_sizes=(24, 96),
                    seed: int = 0) -> list:
    """Composite images: real LFW faces (``skimage.data.lfw_subset()``, the first 100 of its 200 25×25 crops)
    pasted at known boxes onto real photographs. Proves that the pipeline learns, not WIDER accuracy.

    Returns records ``{"image": [size, size, 3] uint8, "boxes": [F, 4] float32}``; faces do not overlap.
    """
    try:
        import skimage.data
    except ImportError as e:
        raise CnnlabError("synthetic_faces needs scikit-image: pip install 'cnnlab[facedet]'") from e
    rng = np.random.default_rng(seed)
    faces = (skimage.data.lfw_subset()[:100] * 255).astype(np.uint8)
    backgrounds = []
    for name in BACKGROUNDS:
        bg = getattr(skimage.data, name)()
        bg = np.repeat(bg[..., None], 3, -1) if bg.ndim == 2 else bg[..., :3]
        backgrounds.append(np.asarray(Image.fromarray(bg).resize((size, size), Image.BILINEAR)))
    records = []
    for _ in range(num_images):
        image = backgrounds[rng.integers(len(backgrounds))].copy()
        boxes = []
        for _ in range(rng.integers(faces_per_image[0], faces_per_image[1] + 1)):
            s = int(rng.integers(face_sizes[0], face_sizes[1] + 1))
            for _ in range(20):  # a few tries to find a free spot
                x, y = rng.integers(0, size - s + 1, 2)
                box = np.array([x, y, x + s, y + s], np.float32)
                if all(_disjoint(box, b) for b in boxes):
                    face = Image.fromarray(faces[rng.integers(len(faces))]).resize((s, s), Image.BILINEAR)
                    image[y:y + s, x:x + s] = np.asarray(face)[..., None]
                    boxes.append(box)
                    break
        records.append({"image": image, "boxes": np.asarray(boxes, np.float32).reshape(-1, 4)})
    return records


def _disjoint(a, b) -> bool:
    return a[2] <= b[0] or b[2] <= a[0] or a[3] <= b[1] or b[3] <= a[1]
