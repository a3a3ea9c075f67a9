"""Import of torchvision ResNet checkpoints: cnnlab's forward equals torch's on the same weights and images.

The torch reference is a ResNet written here with torchvision's module names (torchvision itself does not
import beside torch 2.13), with random weights and random BN running statistics. The numpy-only tests build a
state_dict from torchvision's key list written out below, so they run without torch.
"""

import argparse
import functools
import hashlib
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from cnnlab import cli
from cnnlab.nn.resnet import ResNet, normalize_imagenet
from cnnlab.nn.resnet_weights import (add_pretrained_arguments, download, infer_depth, load_resnet_weights,
                                      pretrained_weights, read_state_dict, torchvision_to_flax)

# He et al. 2016, Table 1 (written out again here, not taken from cnnlab).
BLOCKS = {18: ("basic", (2, 2, 2, 2)), 34: ("basic", (3, 4, 6, 3)), 50: ("bottleneck", (3, 4, 6, 3)),
          101: ("bottleneck", (3, 4, 23, 3)), 152: ("bottleneck", (3, 8, 36, 3))}


def torchvision_shapes(depth):
    """torchvision's resnet{depth}().state_dict() key -> shape, written out from its source layout."""
    kind, blocks = BLOCKS[depth]
    expansion = 1 if kind == "basic" else 4
    shapes = {"conv1.weight": (64, 3, 7, 7)}

    def bn(prefix, c):
        shapes.update({f"{prefix}.{n}": (c,) for n in ("weight", "bias", "running_mean", "running_var")})
        shapes[f"{prefix}.num_batches_tracked"] = ()

    bn("bn1", 64)
    inplanes = 64
    for s, (n, planes) in enumerate(zip(blocks, (64, 128, 256, 512))):
        for i in range(n):
            p = f"layer{s + 1}.{i}"
            if kind == "basic":
                convs = [(planes, inplanes, 3), (planes, planes, 3)]
            else:
                convs = [(planes, inplanes, 1), (planes, planes, 3), (planes * 4, planes, 1)]
            for j, (o, c, k) in enumerate(convs, 1):
                shapes[f"{p}.conv{j}.weight"] = (o, c, k, k)
                bn(f"{p}.bn{j}", o)
            if i == 0 and (s > 0 or inplanes != planes * expansion):
                shapes[f"{p}.downsample.0.weight"] = (planes * expansion, inplanes, 1, 1)
                bn(f"{p}.downsample.1", planes * expansion)
            inplanes = planes * expansion
    shapes.update({"fc.weight": (1000, inplanes), "fc.bias": (1000,)})
    return shapes


def random_state_dict(depth, seed=0):
    rng = np.random.default_rng(seed)
    return {k: (np.array(7, np.int64) if k.endswith("num_batches_tracked")
                else rng.uniform(0.5, 1.5, s).astype(np.float32)) for k, s in torchvision_shapes(depth).items()}


@pytest.fixture(scope="module")
def resnet18_safetensors(tmp_path_factory):
    path = tmp_path_factory.mktemp("weights") / "r18.safetensors"
    state_dict = random_state_dict(18)
    save_file(state_dict, str(path))
    return path, state_dict


# ---- numpy only (no torch) ----------------------------------------------------------------------------------

def test_safetensors_maps_each_torchvision_key_to_flax_without_torch(resnet18_safetensors):
    path, sd = resnet18_safetensors
    v = load_resnet_weights(path, 18)
    p, s = v["params"], v["batch_stats"]
    np.testing.assert_array_equal(p["conv1"]["kernel"], sd["conv1.weight"].transpose(2, 3, 1, 0))
    np.testing.assert_array_equal(p["layer2_0"]["downsample_conv"]["kernel"][0, 0],
                                  sd["layer2.0.downsample.0.weight"][:, :, 0, 0].T)
    np.testing.assert_array_equal(p["layer3_1"]["bn2"]["scale"], sd["layer3.1.bn2.weight"])
    np.testing.assert_array_equal(p["layer4_0"]["downsample_bn"]["bias"], sd["layer4.0.downsample.1.bias"])
    np.testing.assert_array_equal(s["bn1"]["mean"], sd["bn1.running_mean"])
    np.testing.assert_array_equal(s["layer1_1"]["bn1"]["var"], sd["layer1.1.bn1.running_var"])
    # fc (2 keys) and num_batches_tracked (one per BN) are the only keys not carried over.
    assert len(jax.tree.leaves(v)) == len(sd) - 2 - sum(k.endswith("num_batches_tracked") for k in sd)


def test_pth_without_torch_says_how_to_get_on(tmp_path, monkeypatch):
    (tmp_path / "w.pth").write_bytes(b"PK")
    monkeypatch.setitem(sys.modules, "torch", None)  # as on a machine without torch
    with pytest.raises(ImportError, match=r"w\.pth needs torch \(pip install torch==2\.13\.0\).*\.safetensors"):
        read_state_dict(tmp_path / "w.pth")


@pytest.mark.parametrize("depth", [34, 101, 152])
def test_every_depth_takes_exactly_torchvision_keys(depth):
    # Read-only broadcast views: the key and shape check without allocating 60M random numbers.
    sd = {k: np.broadcast_to(np.float32(0.5), s) for k, s in torchvision_shapes(depth).items()}
    v = torchvision_to_flax(sd, depth)
    assert v["params"][f"layer3_{BLOCKS[depth][1][2] - 1}"]["bn1"]["scale"].shape == (256,)
    assert len(jax.tree.leaves(v)) == len(sd) - 2 - sum(k.endswith("num_batches_tracked") for k in sd)


def test_infer_depth_reads_block_counts():
    for depth in BLOCKS:
        assert infer_depth(torchvision_shapes(depth)) == depth
    assert infer_depth({"conv1.weight": 0}) is None


def test_truncated_safetensors_names_the_file(resnet18_safetensors, tmp_path):
    bad = tmp_path / "cut.safetensors"
    bad.write_bytes(resnet18_safetensors[0].read_bytes()[:5000])
    with pytest.raises(ValueError, match=r"cut\.safetensors is not a readable \.safetensors file"):
        load_resnet_weights(bad, 18)


def test_missing_key_is_named(tmp_path):
    sd = random_state_dict(18)
    del sd["layer3.1.bn2.running_var"]
    save_file(sd, str(tmp_path / "m.safetensors"))
    with pytest.raises(ValueError, match=r"1 missing keys: layer3\.1\.bn2\.running_var"):
        load_resnet_weights(tmp_path / "m.safetensors", 18)


def test_unexpected_key_is_named():
    sd = random_state_dict(18)
    sd["layer2.0.se.weight"] = np.zeros(3, np.float32)
    with pytest.raises(ValueError, match=r"1 unexpected keys: layer2\.0\.se\.weight"):
        torchvision_to_flax(sd, 18)


def test_misshaped_key_names_both_shapes_in_torch_layout():
    sd = random_state_dict(18)
    sd["layer2.1.conv1.weight"] = np.zeros((128, 64, 3, 3), np.float32)
    with pytest.raises(ValueError, match=r"layer2\.1\.conv1\.weight expected \(128, 128, 3, 3\), "
                                         r"got \(128, 64, 3, 3\)"):
        torchvision_to_flax(sd, 18)


def test_wrong_architecture_says_what_the_file_is():
    with pytest.raises(ValueError, match=r"ResNet-18: .*unexpected keys: .*layer1\.0\.conv3\.weight.*"
                                         r"looks like a ResNet-50"):
        torchvision_to_flax(random_state_dict(50), 18)


def test_load_into_a_model_replaces_only_the_backbone_subtree(resnet18_safetensors):
    path, sd = resnet18_safetensors
    head = {"kernel": jnp.ones((512, 2))}
    model = {"params": {"backbone": {"conv1": {"kernel": jnp.zeros((7, 7, 3, 64))}}, "head": head},
             "batch_stats": {}}
    model["params"]["backbone"] = load_resnet_weights(path, 18)["params"]  # the right shapes, other values
    model["batch_stats"]["backbone"] = load_resnet_weights(path, 18)["batch_stats"]
    out = load_resnet_weights(path, 18, model, at="backbone")
    assert out["params"]["head"] is head
    np.testing.assert_array_equal(out["params"]["backbone"]["layer1_0"]["conv2"]["kernel"],
                                  sd["layer1.0.conv2.weight"].transpose(2, 3, 1, 0))
    with pytest.raises(ValueError, match=r"params\['backbone'\] of the model is not a ResNet-34"):
        save_file(random_state_dict(34), str(path.with_name("r34.safetensors")))
        load_resnet_weights(path.with_name("r34.safetensors"), 34, model, at="backbone")
    with pytest.raises(ValueError, match="pass at="):
        load_resnet_weights(path, 18, model)


def test_training_engine_starts_from_init_variables():
    import flax.linen as nn

    from cnnlab import train

    class Net(nn.Module):  # small on purpose: jit-initialising a ResNet here would cost ~20 s of CPU
        @nn.compact
        def __call__(self, x, train):
            return nn.Dense(2, name="head")(nn.BatchNorm(use_running_average=not train, name="backbone")(x))

    def init(variables):
        return {"params": {**variables["params"], "backbone": {"scale": jnp.full(3, 7.0), "bias": jnp.ones(3)}},
                "batch_stats": {"backbone": {"mean": jnp.full(3, 2.0), "var": jnp.full(3, 5.0)}}}

    config = train.TrainConfig(steps=1, batch_size=1, learning_rate=0.1)
    state = train.create_train_state(Net(), config, (jnp.zeros((1, 3)),), init_variables=init)
    np.testing.assert_array_equal(state.params["backbone"]["scale"], np.full(3, 7.0))
    np.testing.assert_array_equal(state.batch_stats["backbone"]["var"], np.full(3, 5.0))
    assert state.params["head"]["kernel"].shape == (3, 2)


def test_training_needs_weights_or_from_scratch(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("CNNLAB_WEIGHTS_DIR", str(tmp_path))
    parser = argparse.ArgumentParser()
    add_pretrained_arguments(parser, "--encoder-weights")
    args = parser.parse_args(["--encoder-weights", str(tmp_path / "w.safetensors")])
    with pytest.raises(SystemExit, match=r"--encoder-weights .*w\.safetensors: no such file"):
        pretrained_weights(args.encoder_weights, 18, from_scratch=args.from_scratch, flag="--encoder-weights")
    (tmp_path / "w.safetensors").write_bytes(b"")
    assert pretrained_weights(args.encoder_weights, 18, from_scratch=False, flag="") == tmp_path / "w.safetensors"
    with pytest.raises(SystemExit, match=r"--backbone-weights PATH.*resnet18-f37072fd\.pth.*--from-scratch"):
        pretrained_weights(None, 18, from_scratch=False, flag="--backbone-weights")
    assert pretrained_weights(None, 18, from_scratch=True, flag="--backbone-weights") is None
    assert "WARNING: --from-scratch" in capsys.readouterr().err
    (tmp_path / "resnet18-f37072fd.safetensors").write_bytes(b"")
    assert pretrained_weights(None, 18, from_scratch=False, flag="-w").name == "resnet18-f37072fd.safetensors"
    with pytest.raises(SystemExit, match="exclude each other"):
        pretrained_weights("x.pth", 18, from_scratch=True, flag="--encoder-weights")


def test_download_checks_the_published_sha256_prefix(tmp_path):
    payload = b"not really a checkpoint"
    good = tmp_path / f"resnet18-{hashlib.sha256(payload).hexdigest()[:8]}.pth"
    good.write_bytes(payload)
    assert download(good.as_uri(), tmp_path / "out" / "a.pth").read_bytes() == payload
    bad = tmp_path / "resnet18-00000000.pth"
    bad.write_bytes(payload)
    with pytest.raises(ValueError, match="does not start with the published 00000000"):
        download(bad.as_uri(), tmp_path / "b.pth")
    assert not (tmp_path / "b.pth").exists() and not (tmp_path / "b.pth.part").exists()


def test_download_offline_is_a_clear_error(tmp_path):
    # Port 9 (discard) on localhost refuses the connection, as an offline machine would.
    with pytest.raises(ConnectionError, match="cannot fetch .*offline"):
        download("http://127.0.0.1:9/resnet18-f37072fd.pth", tmp_path / "r.pth")


# ---- against a torch reference --------------------------------------------------------------------------------

def torch_resnet(depth):
    """A torchvision-layout ResNet (v1.5: stride on the bottleneck's 3x3) returning conv2..conv5 + pooled."""
    torch = pytest.importorskip("torch", reason="torch==2.13.0 (CPU) is the reference for the weight import")
    nn = torch.nn

    class Block(nn.Module):
        def __init__(self, kind, inplanes, planes, stride):
            super().__init__()
            out = planes * (1 if kind == "basic" else 4)
            sizes = ([(inplanes, planes, 3, stride), (planes, planes, 3, 1)] if kind == "basic" else
                     [(inplanes, planes, 1, 1), (planes, planes, 3, stride), (planes, out, 1, 1)])
            for j, (c, o, k, st) in enumerate(sizes, 1):
                setattr(self, f"conv{j}", nn.Conv2d(c, o, k, st, padding=k // 2, bias=False))
                setattr(self, f"bn{j}", nn.BatchNorm2d(o))
            self.n = len(sizes)
            self.downsample = None
            if stride != 1 or inplanes != out:
                self.downsample = nn.Sequential(nn.Conv2d(inplanes, out, 1, stride, bias=False), nn.BatchNorm2d(out))

        def forward(self, x):
            y = x
            for j in range(1, self.n + 1):
                y = getattr(self, f"bn{j}")(getattr(self, f"conv{j}")(y))
                y = torch.relu(y) if j < self.n else y
            return torch.relu(y + (x if self.downsample is None else self.downsample(x)))

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            kind, blocks = BLOCKS[depth]
            self.conv1, self.bn1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False), nn.BatchNorm2d(64)
            self.maxpool = nn.MaxPool2d(3, 2, 1)
            inplanes = 64
            for s, (n, planes) in enumerate(zip(blocks, (64, 128, 256, 512))):
                layer = []
                for i in range(n):
                    layer.append(Block(kind, inplanes, planes, 2 if i == 0 and s > 0 else 1))
                    inplanes = planes * (1 if kind == "basic" else 4)
                setattr(self, f"layer{s + 1}", nn.Sequential(*layer))
            self.fc = nn.Linear(inplanes, 1000)

        def forward(self, x):
            x = self.maxpool(torch.relu(self.bn1(self.conv1(x))))
            out = {}
            for s in range(1, 5):
                x = out[f"conv{s + 1}"] = getattr(self, f"layer{s}")(x)
            out["pooled"] = x.mean(dim=(2, 3))
            return out

    torch.manual_seed(depth)
    net = Net()
    with torch.no_grad():  # random BN parameters and running statistics, so that every tensor matters
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5), m.bias.normal_(0, 0.2)
                m.running_mean.normal_(0, 0.2), m.running_var.uniform_(0.5, 2.0)
    return torch, net.eval()


# torchvision's published ImageNet statistics (the docs of every torchvision classification model), written
# out here rather than taken from cnnlab.
TORCHVISION_MEAN, TORCHVISION_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
# Neither square nor a multiple of 32: odd sizes at every stride (70x45 -> 35x23 -> 18x12 -> 9x6 -> 5x3 -> 3x2),
# where padding conventions that agree on 64x64 part ways.
IMAGE_SHAPE = (2, 70, 45, 3)


def _torch_normalize(torch, images):
    """torchvision's transforms.Normalize with the ImageNet statistics, [N, H, W, 3] -> NCHW."""
    return (torch.from_numpy(images).permute(0, 3, 1, 2) - torch.tensor(TORCHVISION_MEAN)[:, None, None]) \
        / torch.tensor(TORCHVISION_STD)[:, None, None]


def _nhwc(out):
    return {k: (v.permute(0, 2, 3, 1) if v.ndim == 4 else v).detach().numpy() for k, v in out.items()}


def _assert_features_close(out, ref):
    for name in ("conv2", "conv3", "conv4", "conv5", "pooled"):
        got, want = np.asarray(out[name]), ref[name]
        assert got.shape == want.shape, name
        assert np.abs(got - want).max() <= 1e-4 * np.abs(want).max(), name


@pytest.fixture(scope="module", params=[18, 50])
def torch_reference(request, tmp_path_factory):
    depth = request.param
    torch, net = torch_resnet(depth)
    images = np.random.default_rng(depth).uniform(0, 1, IMAGE_SHAPE).astype(np.float32)
    x = _torch_normalize(torch, images)
    with torch.no_grad():
        ref = _nhwc(net(x))
    folder = tmp_path_factory.mktemp(f"resnet{depth}")
    torch.save(net.state_dict(), folder / "w.pth")
    save_file({k: v.numpy() for k, v in net.state_dict().items()}, str(folder / "w.safetensors"))
    return depth, images, ref, folder


@functools.cache
def inference(depth):
    return jax.jit(functools.partial(ResNet(depth).apply, train=False))  # compiled once for both formats


@pytest.mark.parametrize("fmt", ["pth", "safetensors"])
def test_imported_resnet_forward_matches_torch(torch_reference, fmt):
    depth, images, ref, folder = torch_reference
    variables = load_resnet_weights(folder / f"w.{fmt}", depth)
    out = inference(depth)(variables, normalize_imagenet(jnp.asarray(images)))
    _assert_features_close(out, ref)


def _flax_path(torch_bn_name):
    """torchvision's BN module name -> the path of cnnlab's batch_stats ("layer2.0.downsample.1" ->
    ("layer2_0", "downsample_bn"))."""
    parts = torch_bn_name.replace("downsample.1", "downsample_bn").split(".")
    return (f"{parts[0]}_{parts[1]}", *parts[2:]) if parts[0].startswith("layer") else tuple(parts)


def test_training_mode_forward_and_running_statistics_follow_torch_momentum():
    torch, net = torch_resnet(18)
    # Copies: the running statistics are updated in place by torch's forward below.
    variables = torchvision_to_flax({k: v.numpy().copy() for k, v in net.state_dict().items()}, 18)
    images = np.random.default_rng(5).uniform(0, 1, IMAGE_SHAPE).astype(np.float32)
    bns = {name: m for name, m in net.named_modules() if isinstance(m, torch.nn.BatchNorm2d)}
    old = {name: (m.running_mean.clone().numpy(), m.running_var.clone().numpy()) for name, m in bns.items()}
    counts = {}  # values per channel each BN averages over: N * H * W of its input
    hooks = [m.register_forward_pre_hook(lambda m, args, name=name: counts.__setitem__(
        name, args[0].shape[0] * args[0].shape[2] * args[0].shape[3])) for name, m in bns.items()]
    net.train()  # batch statistics, and running averages updated with torch's momentum 0.1
    with torch.no_grad():
        ref = _nhwc(net(_torch_normalize(torch, images)))
    for h in hooks:
        h.remove()
    out, updated = jax.jit(functools.partial(ResNet(18).apply, train=True, mutable=["batch_stats"]))(
        variables, normalize_imagenet(jnp.asarray(images)))
    _assert_features_close(out, ref)
    assert len(bns) == 20 and min(counts.values()) == 2 * 3 * 2  # conv5's maps are 3 x 2
    for name, m in bns.items():
        stats = updated["batch_stats"]
        for key in _flax_path(name):
            stats = stats[key]
        (mean0, var0), n = old[name], counts[name]
        # Mean: new = 0.9 old + 0.1 batch mean, in both. Variance: torch averages in the unbiased batch
        # variance (n / (n - 1) times Eq. (35)'s); cnnlab Eq. (39)'s sigma_c^2 is Eq. (35)'s biased one.
        batch_var_unbiased = (m.running_var.numpy() - 0.9 * var0) / 0.1
        np.testing.assert_allclose(stats["mean"], m.running_mean.numpy(), rtol=1e-4, atol=1e-5, err_msg=name)
        np.testing.assert_allclose(stats["var"], 0.9 * var0 + 0.1 * batch_var_unbiased * (n - 1) / n,
                                   rtol=1e-4, atol=1e-5, err_msg=name)
        assert not np.allclose(stats["mean"], mean0)  # the averages really moved


def test_truncated_pth_or_training_checkpoint_names_the_file(torch_reference, tmp_path):
    folder = torch_reference[3]
    bad = tmp_path / "cut.pth"
    bad.write_bytes((folder / "w.pth").read_bytes()[:20000])
    with pytest.raises(ValueError, match=r"cut\.pth is not a readable torch file"):
        read_state_dict(bad)
    torch = pytest.importorskip("torch")
    torch.save({"state_dict": torch.load(folder / "w.pth"), "epoch": 3}, tmp_path / "ckpt.pth")
    with pytest.raises(ValueError, match=r"ckpt\.pth is not a state_dict \{name: tensor\} \(at 'state_dict'\)"):
        read_state_dict(tmp_path / "ckpt.pth")


def test_cli_checks_a_pth_and_converts_it_to_safetensors(torch_reference, tmp_path):
    depth, _, _, folder = torch_reference
    out = tmp_path / "w.safetensors"
    assert cli.main(["weights", f"resnet{depth}", "--from", str(folder / "w.pth"), "--out", str(out)]) == 0
    a, b = load_file(str(out)), read_state_dict(folder / "w.pth")
    assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)
    with pytest.raises(SystemExit, match=r"w\.pth does not fit a torchvision ResNet-34"):
        cli.main(["weights", "resnet34", "--from", str(folder / "w.pth"), "--out", str(out)])

