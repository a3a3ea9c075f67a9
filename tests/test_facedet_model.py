"""ResNet backbone and FaceNet: sizes against torchvision's published parameter counts and the anchor layout,
the prior-probability bias, the 16 Table 4 configs, and ``cnnlab detect`` on video files."""

import dataclasses
import json
import sys

import av
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from cnnlab import configs
from cnnlab.cli import main
from cnnlab.errors import CnnlabError
from cnnlab.facedet.anchors import generate_anchors
from cnnlab.facedet.detect import detect, detect_files
from cnnlab.facedet.model import FaceNet
from cnnlab.nn.resnet import ResNet

# torchvision resnet*.parameters() counts minus the 1000-way fc layer (C5 · 1000 + 1000).
TORCHVISION_PARAMS = {18: 11_689_512 - 513_000, 34: 21_797_672 - 513_000, 50: 25_557_032 - 2_049_000}


@pytest.mark.parametrize("depth", [18, 34, 50])
def test_resnet_matches_torchvision_parameter_count_and_feature_shapes(depth):
    model = ResNet(depth)
    x = jnp.zeros((1, 64, 96, 3))
    variables = jax.eval_shape(lambda: model.init(jax.random.key(0), x))
    assert sum(np.prod(p.shape) for p in jax.tree.leaves(variables["params"])) == TORCHVISION_PARAMS[depth]
    out = jax.eval_shape(model.apply, variables, x)
    c = 1 if depth < 50 else 4
    assert out["conv2"].shape == (1, 16, 24, 64 * c) and out["conv5"].shape == (1, 2, 3, 512 * c)
    assert out["pooled"].shape == (1, 512 * c)


def test_all_sixteen_table4_configs_load_and_differ_from_the_baseline_only_where_the_paper_says():
    names = list(configs.named_configs("facedet"))
    assert names == ["v1_0", "v1_1", "v1_2", "v1_3", "v1_4", "v1_5", "v1_6", "v1_7", "v1_8", "v1_9",
                     "v2_0", "v2_1", "v2_2", "v2_3", "v2_4", "v2_5"]
    cfg = {n: configs.load("facedet", n) for n in names}
    diff = lambda a, b: {f.name for f in dataclasses.fields(cfg[a])
                         if getattr(cfg[a], f.name) != getattr(cfg[b], f.name)} - {"name"}
    assert diff("v1_1", "v1_0") == {"classification", "normalisation"}
    assert diff("v1_3", "v1_1") == {"fpn"}
    assert diff("v1_5", "v1_3") == {"normalisation"} and cfg["v1_5"].normalisation == "level"
    assert diff("v1_7", "v1_3") == {"ohem"} and diff("v1_8", "v1_7") == {"ohem"}
    assert diff("v1_9", "v1_3") == {"aspect_ratios", "iou_threshold"}
    assert diff("v2_0", "v1_9") == {"levels"} and diff("v2_1", "v2_0") == {"upsample"}
    assert diff("v2_2", "v2_1") == {"iou_threshold"} and diff("v2_3", "v2_1") == {"color_jitter"}
    assert diff("v2_4", "v2_3") == {"levels", "min_anchor_size"} and diff("v2_5", "v2_4") == {"depth"}
    assert cfg["v1_2"].focal_gamma == 3.0 and cfg["v1_7"].ohem_top_k == 128


@pytest.mark.parametrize("name", ["v1_0", "v2_4"])  # softmax, no FPN / FPN, conv2–conv7, up-sampling
def test_facenet_emits_one_prediction_per_anchor(name):
    cfg = dataclasses.replace(configs.load("facedet", name), image_size=128, channels=32)
    model, x = FaceNet(cfg), jnp.zeros((2, 128, 128, 3))
    variables = jax.eval_shape(lambda: model.init(jax.random.key(0), x))
    cls, reg = jax.eval_shape(model.apply, variables, x)
    anchors, _ = generate_anchors(128, cfg.levels, min_size=cfg.min_anchor_size, aspect_ratios=cfg.aspect_ratios,
                                  upsample=cfg.upsample)
    assert cls.shape == (2, anchors.shape[0], cfg.num_classes) and reg.shape == (2, anchors.shape[0], 4)


@pytest.fixture(scope="module")
def tiny():
    cfg = dataclasses.replace(configs.load("facedet", "v1_3"), levels=("conv4", "conv5"), image_size=64, channels=16)
    model = FaceNet(cfg)
    variables = jax.jit(lambda x: model.init(jax.random.key(0), x))(jnp.zeros((1, 64, 64, 3)))
    return cfg, variables


def test_prior_bias_makes_every_anchor_start_at_probability_pi(tiny):
    cfg, variables = tiny
    x = jax.random.uniform(jax.random.key(1), (2, 64, 64, 3))
    cls, _ = FaceNet(cfg).apply(variables, x)
    # Head weights start at N(0, 0.01): the logits stay near b = −log((1−π)/π), so p(face) ≈ π everywhere.
    p = np.asarray(jax.nn.sigmoid(cls))
    assert p.mean() == pytest.approx(cfg.prior, rel=0.1) and p.max() < 2 * cfg.prior
    boxes, scores, valid = detect(variables, x, config=cfg, max_detections=10)
    np.testing.assert_allclose(scores[:, 0], p[..., 0].max(axis=1), rtol=1e-5)  # best first, then NMS order
    assert bool(jnp.all(jnp.diff(scores, axis=1) <= 0)) and bool(jnp.all(valid))
    assert boxes.shape == (2, 10, 4) and bool(jnp.all((boxes >= 0) & (boxes <= 64)))


def test_detect_rejects_images_of_another_size(tiny):
    cfg, variables = tiny
    with pytest.raises(ValueError, match=r"detect: images must be \[N, 64, 64, 3\]"):
        detect(variables, jnp.zeros((1, 32, 32, 3)), config=cfg)


def _write_video(path, frames, fps):
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        for frame in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())


def _read_video(path):
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        return float(stream.average_rate), np.stack([f.to_ndarray(format="rgb24") for f in container.decode(stream)])


def test_detect_cli_on_a_video_writes_every_frame_at_its_fps_and_detects_frames_as_images(tiny, tmp_path,
                                                                                          monkeypatch, capsys):
    cfg, variables = tiny
    monkeypatch.setattr("cnnlab.facedet.train.load_trained", lambda path: (FaceNet(tiny[0]), tiny[1], tiny[0]))
    frames = np.random.default_rng(0).integers(0, 256, (5, 64, 96, 3), dtype=np.uint8)
    _write_video(tmp_path / "clip.mp4", frames, fps=12)
    main(["detect", str(tmp_path / "clip.mp4"), "--checkpoint", str(tmp_path), "--out", str(tmp_path / "out"),
          "--threshold", "0", "--max-frames", "4", "--every", "2"])
    assert "in 0 images and 2 detected frames of 1 videos" in capsys.readouterr().out
    fps, written = _read_video(tmp_path / "out" / "clip.mp4")
    assert fps == 12 and written.shape == (4, 64, 96, 3)
    (video,) = json.loads((tmp_path / "out" / "detections.json").read_text())
    assert [f["frame"] for f in video["frames"]] == [0, 2]
    # The decoded frame 2, saved as an image, gets the same detections: frames are letterboxed like images.
    _, decoded = _read_video(tmp_path / "clip.mp4")
    Image.fromarray(decoded[2]).save(tmp_path / "frame2.png")
    (image,) = detect_files(variables, cfg, [tmp_path / "frame2.png"], tmp_path / "images", threshold=0)
    assert video["frames"][1]["faces_x1y1x2y2_score"] == image["faces_x1y1x2y2_score"]
    boxes = np.array([f[:4] for f in image["faces_x1y1x2y2_score"]])
    # In the frame's 96 x 64 pixels, not the detector's 64² letterbox.
    assert len(boxes) > 10 and boxes[:, 2].max() > 64 and (boxes >= 0).all() and (boxes[:, 3] <= 64).all()


def test_detect_names_a_corrupt_video_and_a_missing_pyav(tiny, tmp_path, monkeypatch):
    cfg, variables = tiny
    (tmp_path / "broken.mp4").write_bytes(np.random.default_rng(0).bytes(2000))
    with pytest.raises(ValueError, match=r"detect: cannot read video .*broken\.mp4"):
        detect_files(variables, cfg, [tmp_path / "broken.mp4"], tmp_path / "out")
    monkeypatch.setitem(sys.modules, "av", None)
    with pytest.raises(CnnlabError, match=r'pip install "cnnlab\[facedet\]"'):
        detect_files(variables, cfg, [tmp_path / "broken.mp4"], tmp_path / "out2")
    assert not (tmp_path / "out2").exists()  # failed before any work
