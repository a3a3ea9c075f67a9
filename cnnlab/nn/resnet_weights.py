"""torchvision's ImageNet ResNet checkpoints -> ``cnnlab.nn.resnet.ResNet`` variables (§5.2.1, §7.2.3).

The paper's detector and captioner start from an ImageNet-trained ResNet-18 (the author's code calls
torchvision's ``resnet18(pretrained=True)``). This module reads torchvision's state_dict — a ``.pth`` file
(needs torch) or a ``.safetensors`` file (numpy only) — and maps it one name at a time onto the Flax ResNet:
``layer1.0.conv1.weight`` [O, I, kh, kw] -> ``params/layer1_0/conv1/kernel`` [kh, kw, I, O]; BN ``weight`` /
``bias`` -> ``scale`` / ``bias``, ``running_mean`` / ``running_var`` -> ``batch_stats`` ``mean`` / ``var``;
``downsample.0`` / ``downsample.1`` -> ``downsample_conv`` / ``downsample_bn``. ``fc`` (the ImageNet classifier)
is dropped and ``num_batches_tracked`` ignored; any other key that is missing, unexpected or mis-shaped is an
error naming it. The images must be normalised as the weights expect: ``resnet.normalize_imagenet``.

Nothing downloads implicitly: ``cnnlab weights resnet18`` fetches torchvision's file on request, checking
the SHA-256 prefix torchvision writes into its file name.
"""

import functools
import hashlib
import os
import re
import sys
import urllib.error
import urllib.request
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

from cnnlab.errors import CnnlabError
from cnnlab.nn.resnet import DEPTHS, ResNet

# torchvision's IMAGENET1K_V1 files, "<name>-<first 8 hex digits of the SHA-256>.pth" (torchvision >= 0.13).
TORCHVISION_FILES = {18: "resnet18-f37072fd.pth", 34: "resnet34-b627a593.pth", 50: "resnet50-0676ba61.pth",
                     101: "resnet101-63fe2227.pth", 152: "resnet152-394f9c45.pth"}
# What torchvision served for pretrained=True in 2018 (torch.utils.model_zoo), when the paper's code ran.
LEGACY_FILES = {18: "resnet18-5c106cde.pth", 34: "resnet34-333f7ec4.pth", 50: "resnet50-19c8e357.pth",
                101: "resnet101-5d3b4d8f.pth", 152: "resnet152-b121ed2d.pth"}
DOWNLOAD_ROOT = "https://download.pytorch.org/models/"
WEIGHTS_DIR_ENV = "CNNLAB_WEIGHTS_DIR"
# Keys of a torchvision classifier that a backbone does not use.
DROPPED = ("fc.weight", "fc.bias")
# Flax leaf name -> torchvision tensor name (conv kernel, BN scale/bias, BN running statistics).
LEAF_NAMES = {"kernel": "weight", "scale": "weight", "bias": "bias", "mean": "running_mean", "var": "running_var"}


def weights_dir() -> Path:
    """``$CNNLAB_WEIGHTS_DIR``, else torch hub's cache (where torchvision already keeps the files it downloaded)."""
    root = os.environ.get(WEIGHTS_DIR_ENV)
    return Path(root).expanduser() if root else Path.home() / ".cache" / "torch" / "hub" / "checkpoints"


def read_state_dict(path) -> dict:
    """Tensors of a ``.pth`` (torch) or ``.safetensors`` (numpy) file -> ``{name: np.ndarray}``."""
    path = Path(path)
    if path.suffix not in (".pth", ".pt", ".safetensors"):
        raise ValueError(f"read_state_dict: {path}: expected a .pth, .pt or .safetensors file")
    if not path.is_file():
        raise FileNotFoundError(f"read_state_dict: no such file: {path}")
    if path.suffix == ".safetensors":
        from safetensors.numpy import load_file
        try:
            return load_file(str(path))
        except Exception as e:  # safetensors raises its own SafetensorError on a truncated or corrupt file
            raise ValueError(f"read_state_dict: {path} is not a readable .safetensors file "
                             f"(truncated or corrupt?): {type(e).__name__}: {e}") from e
    try:
        import torch
    except ImportError as e:
        raise CnnlabError(f"read_state_dict: reading {path} needs torch (pip install torch==2.13.0); without "
                          "torch use a .safetensors file (cnnlab weights --from FILE.pth --out FILE.safetensors "
                          "converts one where torch is installed)") from e
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)  # weights_only: no code from the file runs
    except Exception as e:
        raise ValueError(f"read_state_dict: {path} is not a readable torch file "
                         f"(truncated or corrupt?): {type(e).__name__}: {e}") from e
    odd = next((k for k, v in obj.items() if not isinstance(v, torch.Tensor)), None) if isinstance(obj, dict) \
        else type(obj).__name__
    if odd is not None:
        raise ValueError(f"read_state_dict: {path} is not a state_dict {{name: tensor}} (at {odd!r}); save "
                         "model.state_dict(), not the model or a training checkpoint holding it")
    return {k: v.detach().cpu().numpy() for k, v in obj.items()}


def infer_depth(state_dict) -> int | None:
    """The torchvision ResNet depth whose block counts (and block type) the keys show, or ``None``."""
    blocks = tuple(len({k.split(".")[1] for k in state_dict if k.startswith(f"layer{s}.")}) for s in (1, 2, 3, 4))
    kind = "bottleneck" if "layer1.0.conv3.weight" in state_dict else "basic"
    return next((d for d, spec in DEPTHS.items() if spec == (kind, blocks)), None)


@functools.lru_cache(maxsize=None)
def _expected_shapes(depth: int) -> dict:
    # Shapes only (no FLOPs): the module itself says which variables it has, so this stays right if resnet.py
    # changes its layers, as long as it keeps torchvision's submodule names.
    init = functools.partial(ResNet(depth).init, train=False)
    shapes = jax.eval_shape(init, jax.random.key(0), jax.ShapeDtypeStruct((1, 64, 64, 3), jnp.float32))
    return {c: traverse_util.flatten_dict(shapes[c]) for c in ("params", "batch_stats")}


def _torch_key(path: tuple) -> str:
    """Flax path ("layer1_0", "downsample_bn", "scale") -> torchvision key "layer1.0.downsample.1.weight"."""
    names = []
    for module in path[:-1]:
        module = re.sub(r"^layer(\d)_(\d+)$", r"layer\1.\2", module)
        names.append({"downsample_conv": "downsample.0", "downsample_bn": "downsample.1"}.get(module, module))
    if path[-1] not in LEAF_NAMES:
        raise ValueError(f"torchvision_to_flax: no torchvision name for the variable {'/'.join(path)}")
    return ".".join(names + [LEAF_NAMES[path[-1]]])


def _oihw(shape):
    return (shape[3], shape[2], shape[0], shape[1]) if len(shape) == 4 else tuple(shape)


def _listed(keys, n=6):
    return ", ".join(list(keys)[:n]) + (f", … ({len(keys)} in all)" if len(keys) > n else "")


def torchvision_to_flax(state_dict, depth: int, *, source: str = "state_dict") -> dict:
    """torchvision ResNet state_dict -> ``{"params", "batch_stats"}`` of ``ResNet(depth)`` (float32).

    Raises ValueError naming every missing, unexpected and mis-shaped key (with both shapes) and ``source``.
    """
    if depth not in DEPTHS:
        raise ValueError(f"torchvision_to_flax: depth must be one of {sorted(DEPTHS)}, got {depth}")
    variables, used, missing, misshaped = {}, set(), [], []
    for collection, expected in _expected_shapes(depth).items():
        flat = {}
        for path, leaf in expected.items():
            key = _torch_key(path)
            if key not in state_dict:
                missing.append(key)
                continue
            used.add(key)
            value = np.asarray(state_dict[key])
            if value.ndim == 4:
                value = value.transpose(2, 3, 1, 0)  # torch OIHW -> Flax HWIO
            if value.shape != leaf.shape:
                misshaped.append(f"{key} expected {_oihw(leaf.shape)}, got {tuple(state_dict[key].shape)}")
                continue
            flat[path] = jnp.asarray(value, jnp.float32)
        variables[collection] = traverse_util.unflatten_dict(flat)
    unexpected = sorted(k for k in state_dict
                        if k not in used and k not in DROPPED and not k.endswith(".num_batches_tracked"))
    if missing or unexpected or misshaped:
        problems = [f"{len(v)} {what}: {_listed(v)}" for what, v in
                    (("missing keys", missing), ("unexpected keys", unexpected), ("mis-shaped", misshaped)) if v]
        guess = infer_depth(state_dict)
        hint = f"; the file looks like a ResNet-{guess}" if guess not in (None, depth) else ""
        raise ValueError(f"torchvision_to_flax: {source} does not fit a torchvision ResNet-{depth}: "
                         + "; ".join(problems) + hint)
    return variables


def load_resnet_weights(path, depth: int, variables=None, at: str | None = None) -> dict:
    """Read a torchvision ResNet checkpoint (``.pth`` or ``.safetensors``) into Flax variables.

    With ``variables=None`` returns ``{"params", "batch_stats"}`` of ``ResNet(depth)``. Otherwise ``variables``
    are a whole model's and ``at`` names its ResNet submodule ("backbone", or "a/b" for a nested one): returns a
    copy whose ``params[at]`` and ``batch_stats[at]`` are the checkpoint's, everything else unchanged.
    """
    loaded = torchvision_to_flax(read_state_dict(path), depth, source=str(path))
    if variables is None:
        return loaded
    if not at:
        raise ValueError("load_resnet_weights: pass at= (the ResNet submodule's name) together with variables")
    out = dict(variables)
    for collection, subtree in loaded.items():
        names = at.split("/")
        tree = out[collection] = dict(out.get(collection, {}))
        for name in names[:-1]:
            tree[name] = dict(tree.get(name, {}))
            tree = tree[name]
        old, new = traverse_util.flatten_dict(tree.get(names[-1], {})), traverse_util.flatten_dict(subtree)
        if {p: v.shape for p, v in old.items()} != {p: v.shape for p, v in new.items()}:
            diff = sorted("/".join(p) for p in set(old) ^ set(new)) or sorted(
                "/".join(p) for p in old if old[p].shape != new[p].shape)
            raise ValueError(f"load_resnet_weights: {collection}['{at}'] of the model is not a ResNet-{depth} "
                             f"(wrong depth or wrong at=?); differing variables: {_listed(diff)}")
        tree[names[-1]] = traverse_util.unflatten_dict({p: v.astype(old[p].dtype) for p, v in new.items()})
    return out


def pretrained_weights(path, depth: int, *, from_scratch: bool, flag: str) -> Path | None:
    """The checkpoint a training command starts its ResNet from; ``None`` (with a warning) for ``--from-scratch``.

    ``path`` is the user's ``flag`` value; when absent, torchvision's file in ``weights_dir()`` is used.
    """
    if from_scratch:
        if path is not None:
            raise CnnlabError(f"{flag} and --from-scratch exclude each other")
        print(f"WARNING: --from-scratch: the ResNet-{depth} starts from random weights; the paper starts from "
              "torchvision's ImageNet weights (§5.2.1, §7.2.3)", file=sys.stderr)
        return None
    if path is not None:
        if not Path(path).is_file():  # now, not after the data are loaded and the model is built
            raise CnnlabError(f"{flag} {path}: no such file")
        return Path(path)
    for name in (TORCHVISION_FILES[depth], LEGACY_FILES[depth]):
        for candidate in (weights_dir() / name, (weights_dir() / name).with_suffix(".safetensors")):
            if candidate.is_file():
                return candidate
    raise CnnlabError(f"no ImageNet weights for the ResNet-{depth}: pass {flag} PATH, or put torchvision's "
                      f"{TORCHVISION_FILES[depth]} into {weights_dir()} (cnnlab weights resnet{depth} does, "
                      f"online; {WEIGHTS_DIR_ENV} moves the folder), or pass --from-scratch for random weights")


def add_pretrained_arguments(parser, flag: str) -> None:
    """Add ``flag`` (e.g. ``--backbone-weights``) and ``--from-scratch`` to a training command's parser;
    resolve them with ``pretrained_weights(args.<flag>, depth, from_scratch=args.from_scratch, flag=flag)``."""
    parser.add_argument(flag, type=Path, default=None, metavar="PATH",
                        help="torchvision ImageNet ResNet weights, .pth (needs torch) or .safetensors (default: "
                             f"torchvision's file in ${WEIGHTS_DIR_ENV} or ~/.cache/torch/hub/checkpoints)")
    parser.add_argument("--from-scratch", action="store_true",
                        help="start the ResNet from random weights instead (the paper starts from ImageNet's)")


def download(url: str, out) -> Path:
    """Fetch ``url`` to ``out``, checking that its SHA-256 starts with the hex digits after the file name's '-'."""
    out = Path(out)
    prefix = re.fullmatch(r".*-([0-9a-f]{8,64})\.\w+", url.rsplit("/", 1)[-1])
    if prefix is None:
        raise ValueError(f"download: {url} carries no '-<sha256 prefix>' in its file name to check against")
    from tqdm import tqdm
    out.parent.mkdir(parents=True, exist_ok=True)
    part, sha = out.with_name(out.name + ".part"), hashlib.sha256()
    try:
        with urllib.request.urlopen(url, timeout=60) as response, open(part, "wb") as f:
            size = int(response.headers.get("Content-Length") or 0) or None
            with tqdm(total=size, unit="B", unit_scale=True, desc=url.rsplit("/", 1)[-1]) as bar:
                while chunk := response.read(1 << 20):
                    f.write(chunk)
                    sha.update(chunk)
                    bar.update(len(chunk))
    except (urllib.error.URLError, OSError) as e:
        part.unlink(missing_ok=True)
        raise ConnectionError(f"download: cannot fetch {url} ({e}); offline? Get the file by hand and pass "
                              f"its path (or put it into {weights_dir()})") from e
    if not sha.hexdigest().startswith(prefix.group(1)):
        part.unlink()
        raise ValueError(f"download: {url}: SHA-256 {sha.hexdigest()} does not start with the published "
                         f"{prefix.group(1)} (corrupt or altered download); nothing written to {out}")
    return part.replace(out)


def save_safetensors(state_dict, out) -> Path:
    """Write ``{name: array}`` as a ``.safetensors`` file (readable without torch)."""
    from safetensors.numpy import save_file
    save_file({k: np.asarray(v, order="C") for k, v in state_dict.items()}, Path(out))
    return Path(out)


def main(args) -> int:
    try:
        return _main(args)
    except (ConnectionError, ImportError, OSError, ValueError) as e:  # a message for the user, not a traceback
        raise CnnlabError(f"cnnlab weights: {e}") from e


def _main(args) -> int:
    depth = int(args.model.removeprefix("resnet"))
    out = args.out or weights_dir() / TORCHVISION_FILES[depth]
    if out.suffix not in (".pth", ".safetensors"):
        raise CnnlabError(f"cnnlab weights: --out must end in .pth or .safetensors, got {out}")
    if args.source is not None and out.suffix != ".safetensors":
        raise CnnlabError("cnnlab weights: --from converts a .pth: --out must end in .safetensors")
    source = args.source
    if source is None:
        url = DOWNLOAD_ROOT + TORCHVISION_FILES[depth]
        source = download(url, out if out.suffix == ".pth" else out.with_name(TORCHVISION_FILES[depth]))
        print(f"{url}: SHA-256 matches, written to {source}")
    if out.suffix == ".safetensors":
        state_dict = read_state_dict(source)
        torchvision_to_flax(state_dict, depth, source=str(source))  # every key checked before writing
        save_safetensors(state_dict, out)
        print(f"ResNet-{depth}: {len(state_dict)} tensors checked, written to {out}")
    return 0


def add_parser(commands) -> None:
    """Register ``cnnlab weights`` on the CLI's sub-command parsers."""
    parser = commands.add_parser(
        "weights", help="download torchvision's ImageNet ResNet weights (or convert a .pth to .safetensors)")
    parser.add_argument("model", choices=[f"resnet{d}" for d in sorted(DEPTHS)])
    parser.add_argument("--out", type=Path, default=None, metavar="PATH",
                        help=f"file to write, .pth or .safetensors (default: <weights dir>/<torchvision name>, "
                             f"weights dir = ${WEIGHTS_DIR_ENV} or ~/.cache/torch/hub/checkpoints)")
    parser.add_argument("--from", dest="source", type=Path, default=None, metavar="FILE",
                        help="a torchvision .pth obtained by hand: check it and convert it, no download")
    parser.set_defaults(func=main)
