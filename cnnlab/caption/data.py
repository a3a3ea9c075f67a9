"""MS-COCO captions in the official layout (§7.1.1), and training batches (§7.3).

``root/annotations/captions_{train,val}2017.json`` and ``root/{train,val}2017/*.jpg``, as downloaded from
cocodataset.org; COCO-MINI (``$CNNLAB_DATA_DIR/coco/mini``) has the same layout. Images are resized to
224×224 (§7.3) with Pillow. Training examples are (image, caption) pairs, so every image is seen with each
of its (about five) captions, in random order.
"""

import json
from pathlib import Path

import numpy as np
from PIL import Image

from cnnlab.errors import CnnlabError
from cnnlab.caption.vocab import Vocab

IMAGE_SIZE = 224  # §7.3: "images resized to 224×224 pixels"


def read_annotations(path) -> tuple[dict[int, str], dict[int, list[str]]]:
    """Official caption annotations -> (``{image_id: file_name}``, ``{image_id: [caption, ...]}``).

    ``file_name`` is absent for annotation files without an ``images`` list (references only).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"read_annotations: caption file {path} does not exist")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"read_annotations: caption file {path} is not valid JSON ({e})") from e
    if not isinstance(data, dict) or not isinstance(data.get("annotations"), list) or not data["annotations"]:
        raise ValueError(f"read_annotations: {path} must be COCO caption annotations: an object with a "
                         'non-empty "annotations" list of {"image_id": int, "caption": str}')
    captions = {}
    for i, a in enumerate(data["annotations"]):
        if not isinstance(a, dict) or not isinstance(a.get("caption"), str) or \
                isinstance(a.get("image_id"), bool) or not isinstance(a.get("image_id"), int):
            raise ValueError(f"read_annotations: annotation {i} of {path} must have an integer 'image_id' "
                             f"and a string 'caption', got {str(a)[:80]}")
        captions.setdefault(a["image_id"], []).append(a["caption"])
    files = {im["id"]: im["file_name"] for im in data.get("images", []) if isinstance(im, dict) and "id" in im}
    return files, captions


def load_split(root, split: str) -> tuple[list[Path], list[int], list[list[str]]]:
    """Images and captions of ``split`` ("train" or "val") of a COCO-layout folder.

    Returns (image paths, image ids, captions per image), in image-id order. Raises if an annotated image
    is missing on disk.
    """
    if split not in ("train", "val"):
        raise ValueError(f"load_split: split must be 'train' or 'val', got {split!r}")
    root = Path(root)
    files, captions = read_annotations(root / "annotations" / f"captions_{split}2017.json")
    ids = sorted(captions)
    missing = [i for i in ids if i not in files]
    if missing:
        raise ValueError(f"load_split: {len(missing)} captioned image ids of {split} have no entry in "
                         f"'images', e.g. {missing[:5]}")
    paths = [root / f"{split}2017" / files[i] for i in ids]
    absent = [p for p in paths if not p.is_file()]
    if absent:
        raise FileNotFoundError(f"load_split: {len(absent)} images of {split} are missing, e.g. {absent[0]}")
    return paths, ids, [captions[i] for i in ids]


def load_image(path, size: int = IMAGE_SIZE) -> np.ndarray:
    """An RGB image resized to ``size``×``size``: uint8 ``[size, size, 3]``."""
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB").resize((size, size), Image.BILINEAR), np.uint8)


def load_images(paths, size: int = IMAGE_SIZE) -> np.ndarray:
    """uint8 ``[N, size, size, 3]``; COCO-MINI fits in memory (80 images: 12 MB)."""
    return np.stack([load_image(p, size) for p in paths])


def encode_captions(vocab: Vocab, captions: list[list[str]], length: int) -> np.ndarray:
    """Token ids ``[N, C, length]``: ``C`` = the most captions of an image; images with fewer repeat theirs."""
    most = max(len(c) for c in captions)
    return np.stack([np.stack([vocab.encode(c[k % len(c)], length) for k in range(most)]) for c in captions])


class CaptionSource:
    """(image, caption) pairs for ``cnnlab.train``: ``source[indices] -> {"x": images, "tokens"}``.

    images: uint8 ``[N, H, W, 3]``; tokens: int32 ``[N, C, L]`` (``encode_captions``). Example ``i`` is image
    ``i // C`` with its caption ``i % C``, so one epoch of the engine's shuffled batches shows every image
    with each of its ~5 captions once, in random order (§7.3), and the order stays a function of the step
    (resumable).
    """

    def __init__(self, images: np.ndarray, tokens: np.ndarray):
        if images.ndim != 4 or tokens.ndim != 3 or len(images) != len(tokens):
            raise ValueError(f"CaptionSource: images [N, H, W, 3] {images.shape} and tokens [N, C, L] "
                             f"{tokens.shape} must share N")
        self.images, self.tokens = images, tokens

    def __len__(self):
        return self.tokens.shape[0] * self.tokens.shape[1]

    def __getitem__(self, indices):
        image, caption = np.divmod(np.asarray(indices), self.tokens.shape[1])
        return {"x": self.images[image], "tokens": self.tokens[image, caption]}


def tfds_split(split: str, size: int = IMAGE_SIZE):
    """Yield (uint8 image ``[size, size, 3]``, [caption, ...]) from tensorflow-datasets ``coco_captions``.

    For online users with ``pip install 'cnnlab[tfds]'`` (downloads COCO 2014 through TensorFlow; the
    builder's "train"/"val" splits). Local files (``load_split``) are the primary path.
    """
    try:
        import tensorflow_datasets as tfds
    except ImportError as e:
        raise CnnlabError("tfds_split: needs tensorflow-datasets and TensorFlow: pip install 'cnnlab[tfds]'") from e
    for example in tfds.as_numpy(tfds.load("coco_captions", split=split)):
        image = Image.fromarray(example["image"]).convert("RGB").resize((size, size), Image.BILINEAR)
        texts = [t.decode() for t in example["captions"]["text"]]
        yield np.asarray(image, np.uint8), texts
