"""WIDER FACE reader, its tensorflow-datasets twin, augmentation box transforms and the synthetic composite."""

import sys
import types

import numpy as np
import pytest

from cnnlab.facedet.data import (_crop_boxes, color_jitter, pad_boxes, random_crop_flip, read_wider_annotations,
                                 synthetic_faces, tfds_wider_records)

GOOD = """0--Parade/0_Parade_marchingband_1_849.jpg
1
449 330 122 149 0 0 0 0 0 0
0--Parade/0_Parade_Parade_0_904.jpg
3
361 98 263 339 0 0 0 0 0 0
10 10 5 5 0 0 0 1 0 0
20 20 0 7 0 0 0 0 0 0
0--Parade/0_Parade_marchingband_1_empty.jpg
0
0 0 0 0 0 0 0 0 0 0
0--Parade/0_Parade_nodummy.jpg
0
1--Handshaking/1_Handshaking_1.jpg
1
1 2 3 4 2 0 0 0 1 0
"""


def test_reader_skips_invalid_and_zero_size_faces_and_keeps_zero_face_images(tmp_path):
    path = tmp_path / "wider_face_train_bbx_gt.txt"
    path.write_text(GOOD)
    records = read_wider_annotations(path)
    assert [r["path"].split("/")[-1] for r in records] == [
        "0_Parade_marchingband_1_849.jpg", "0_Parade_Parade_0_904.jpg", "0_Parade_marchingband_1_empty.jpg",
        "0_Parade_nodummy.jpg", "1_Handshaking_1.jpg"]
    np.testing.assert_array_equal(records[0]["boxes"], [[449, 330, 571, 479]])
    np.testing.assert_array_equal(records[1]["boxes"], [[361, 98, 624, 437]])  # invalid and w=0 skipped
    assert records[2]["boxes"].shape == (0, 4) and records[3]["boxes"].shape == (0, 4)
    np.testing.assert_array_equal(records[4]["boxes"], [[1, 2, 4, 6]])


def _tfds_example(name, height, width, faces):
    """The first entries of GOOD as tfds' wider_face builder stores them: bbox = [ymin, xmin, ymax, xmax] / size
    in float32, flags per face. faces: (x, y, w, h, invalid) official pixels."""
    bbox = [[y / height, x / width, (y + h) / height, (x + w) / width] for x, y, w, h, _ in faces]
    return {"image": np.zeros((height, width, 3), np.uint8), "image/filename": name.encode(),
            "faces": {"bbox": np.asarray(bbox, np.float32).reshape(-1, 4),
                      "invalid": np.array([f[4] for f in faces], bool), "blur": np.zeros(len(faces), np.uint8)}}


def test_tfds_records_equal_the_official_readers_and_drop_invalid_and_zero_size_faces(tmp_path, monkeypatch):
    examples = [_tfds_example("0--Parade/0_Parade_marchingband_1_849.jpg", 683, 1024, [(449, 330, 122, 149, 0)]),
                _tfds_example("0--Parade/0_Parade_Parade_0_904.jpg", 1366, 1024,
                              [(361, 98, 263, 339, 0), (10, 10, 5, 5, 1), (20, 20, 0, 7, 0)]),
                _tfds_example("0--Parade/0_Parade_marchingband_1_empty.jpg", 768, 1024, [])]
    fake = types.ModuleType("tensorflow_datasets")
    fake.load = lambda name, split, data_dir=None: examples if (name, split) == ("wider_face", "validation") else None
    fake.as_numpy = iter
    monkeypatch.setitem(sys.modules, "tensorflow_datasets", fake)
    records = list(tfds_wider_records("validation"))
    path = tmp_path / "wider_face_val_bbx_gt.txt"
    path.write_text(GOOD)
    official = read_wider_annotations(path)[:3]
    assert [r["path"] for r in records] == [r["path"] for r in official]
    for tfds_record, record in zip(records, official):
        assert tfds_record["boxes"].dtype == np.float32
        np.testing.assert_array_equal(tfds_record["boxes"], record["boxes"])
    np.testing.assert_array_equal(records[1]["boxes"], [[361, 98, 624, 437]])
    assert records[2]["boxes"].shape == (0, 4) and records[1]["image"].shape == (1366, 1024, 3)


def test_tfds_source_without_the_package_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorflow_datasets", None)
    with pytest.raises(ImportError, match=r'tfds_wider_records: .*pip install "cnnlab\[tfds\]"'):
        tfds_wider_records("train")


@pytest.mark.parametrize("text,line,message", [
    ("a.jpg\nthree\n", 2, "face count must be an integer"),
    ("a.jpg\n2\n1 2 3 4 0 0 0 0 0 0\n", 4, "announces 2 faces but the file ends"),
    ("a.jpg\n1\n1 2 3 4 0 0\n", 3, "got 6 values"),
    ("a.jpg\n1\n1 2 x 4 0 0 0 0 0 0\n", 3, "expected 10 integers"),
    ("a.jpg\n1\n1 2 3 4 0 0 0 0 0 0\nnot-an-image\n", 4, "expected an image path"),
    ("a.jpg\n-1\n", 2, "face count must be >= 0"),
])
def test_reader_errors_name_file_and_line(tmp_path, text, line, message):
    path = tmp_path / "gt.txt"
    path.write_text(text)
    with pytest.raises(ValueError, match=f"gt.txt:{line}: .*{message}"):
        read_wider_annotations(path)


def _box_of_white(image):
    ys, xs = np.nonzero(image[..., 0] > 127)
    return np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], float)


# Seeds whose crops hold the face's centre (seeds 2, 3 and 11 draw crops that drop it); both flips occur.
@pytest.mark.parametrize("seed", [0, 1, 4, 5, 6, 7])
def test_crop_flip_moves_boxes_with_the_pixels(seed):
    rng = np.random.default_rng(seed)
    image = np.zeros((300, 400, 3), np.uint8)
    box = np.array([[150, 120, 230, 200]], np.float32)
    image[120:200, 150:230] = 255
    out, boxes = random_crop_flip(image, box, 128, rng)
    assert out.shape == (128, 128, 3)
    assert boxes.shape == (1, 4)  # the face survives
    np.testing.assert_allclose(boxes[0], np.clip(_box_of_white(out), 0, 128), atol=2.0)


def test_crop_drops_faces_whose_centre_leaves_and_clips_the_rest():
    boxes = np.array([[0, 0, 10, 10], [45, 45, 70, 70], [90, 90, 120, 120]], np.float32)
    _, out = _crop_boxes(boxes, 40, 40, 50, 100, flip=False, image=np.zeros((100, 100, 3)))
    np.testing.assert_allclose(out, [[10, 10, 60, 60]])  # [45,70] - 40 = [5, 30], x2 scale → clipped 60
    _, flipped = _crop_boxes(boxes, 40, 40, 50, 100, flip=True, image=np.zeros((100, 100, 3)))
    np.testing.assert_allclose(flipped, [[40, 10, 90, 60]])


def test_color_jitter_without_noise_or_shift_is_identity_and_stays_in_range():
    rng = np.random.default_rng(0)
    x = rng.uniform(size=(8, 8, 3)).astype(np.float32)
    np.testing.assert_allclose(color_jitter(x, rng, max_noise=0.0, max_hue_shift=0.0), x, atol=1e-5)
    y = color_jitter(x, rng)
    assert y.shape == x.shape and y.min() >= 0 and y.max() <= 1 and not np.allclose(y, x)


def test_pad_boxes_keeps_largest_faces():
    boxes = np.array([[0, 0, 1, 1], [0, 0, 5, 5], [0, 0, 3, 3]], np.float32)
    padded, valid = pad_boxes(boxes, 2)
    np.testing.assert_array_equal(padded, [[0, 0, 5, 5], [0, 0, 3, 3]])
    assert valid.tolist() == [True, True]
    assert pad_boxes(boxes, 5)[1].tolist() == [True, True, True, False, False]


def test_synthetic_faces_paste_real_lfw_faces_at_their_boxes():
    skimage_data = pytest.importorskip("skimage.data")
    records = synthetic_faces(4, size=128, faces_per_image=(2, 3), face_sizes=(25, 25), seed=0)
    faces = (skimage_data.lfw_subset()[:100] * 255).astype(np.uint8)
    for r in records:
        assert 2 <= len(r["boxes"]) <= 3 and r["image"].shape == (128, 128, 3)
        for x1, y1, x2, y2 in r["boxes"].astype(int):
            patch = r["image"][y1:y2, x1:x2, 0]
            # At 25 px the paste is the LFW crop itself: it must equal one of the 100 faces exactly.
            assert np.any(np.all(np.abs(faces.astype(int) - patch.astype(int)) <= 1, axis=(1, 2)))
