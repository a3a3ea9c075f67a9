"""Verified Orbax checkpoints: a CRC32 of every saved array, checked on restore before the values are used.

Orbax writes each checkpoint (``checkpoints/<step>/``: items ``state``, ``best`` and ``meta``) into a
temporary folder and renames it when every file is written, so a process killed mid-save leaves no
half-checkpoint under a step's name (the writer's manager deletes such leftovers). What Orbax does not do
is check what it reads back: a flipped byte in an array chunk restores as a wrong number. So ``save``
stores, in the ``meta`` JSON item of the same checkpoint, a digest of every leaf of ``state`` and ``best``
(CRC32 of its bytes, dtype and shape), the step, a digest of the run's result settings and a CRC of
``meta`` itself; the digests are taken from the host copies of the very arrays handed to Orbax, before
the save returns, so they describe what is written even though Orbax writes in a background thread.

On restore every digest is checked. A mismatch or an unreadable checkpoint raises ``CorruptCheckpoint``
(naming the checkpoint, the leaf and, where the OCDBT index says, the data file holding it), and

- ``restore_for_resume`` (training) warns, moves the damaged checkpoint to ``checkpoints-damaged/`` and
  falls back to the newest intact one; with none intact it raises ``CnnlabError`` saying how to start afresh;
- ``load_best_variables`` / ``load_last_state`` (eval, detect, caption, export) raise ``CnnlabError``.

Checkpoints written without digests (by older versions) restore with a warning that they are unverified.
"""

import json
import re
import shutil
import time
import warnings
import zlib
from pathlib import Path

import jax
import numpy as np
import orbax.checkpoint as ocp
from jax.experimental import multihost_utils

from cnnlab.errors import CnnlabError


class CorruptCheckpoint(Exception):
    """A checkpoint that cannot be read or whose values do not match their digests."""

    def __init__(self, path, problem):
        super().__init__(f"checkpoint {path}: {problem}")
        self.path = path


class CheckpointWarning(UserWarning):
    pass


def config_digest(result_config: dict) -> str:
    return f"{zlib.crc32(json.dumps(result_config, sort_keys=True).encode()):08x}"


def leaf_name(path) -> str:
    """Orbax's name of a pytree leaf, e.g. ``params.Dense_0.kernel`` or ``opt_state.0.0.trace.Conv_0.bias``."""
    parts = []
    for key in path:
        for attr in ("key", "name", "idx"):
            if hasattr(key, attr):
                parts.append(str(getattr(key, attr)))
                break
        else:
            parts.append(str(key))
    return ".".join(parts)


def digests(tree) -> dict:
    """``{leaf name: "<crc32> <dtype> <shape>"}`` of the host copy of every array in ``tree``."""
    leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
    values = jax.device_get([leaf for _, leaf in leaves])
    out = {}
    for (path, _), value in zip(leaves, values):
        value = np.asarray(value)
        crc = zlib.crc32(np.ascontiguousarray(value).reshape(-1).view(np.uint8))
        out[leaf_name(path)] = f"{crc:08x} {value.dtype} {list(value.shape)}"
    return out


def _meta_crc(meta: dict) -> str:
    body = {k: v for k, v in meta.items() if k != "meta_crc32"}
    return f"{zlib.crc32(json.dumps(body, sort_keys=True).encode()):08x}"


def save(mngr: ocp.CheckpointManager, step: int, items: dict, meta: dict, result_config: dict) -> None:
    """Save the pytrees ``items`` (e.g. ``{"state": ..., "best": ...}``) and the JSON ``meta`` at ``step``,
    with the digests that ``restore`` checks."""
    record = {**meta, "checkpoint": {"step": step, "config": config_digest(result_config),
                                     "digests": {name: digests(tree) for name, tree in items.items()}}}
    record["meta_crc32"] = _meta_crc(record)
    mngr.save(step, args=ocp.args.Composite(meta=ocp.args.JsonSave(record),
                                            **{name: ocp.args.StandardSave(t) for name, t in items.items()}))


def restore(mngr: ocp.CheckpointManager, step: int, templates: dict, result_config: dict | None = None):
    """``(items, meta)`` of checkpoint ``step``, every array checked against its digest; raises
    ``CorruptCheckpoint`` if anything is unreadable or does not match. ``templates``: ``{name: pytree}``
    with the saved structure (abstract arrays are fine); ``result_config`` (optional): the run's result
    settings, which the checkpoint's must equal."""
    path = Path(mngr.directory) / str(step)
    try:
        meta = mngr.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))["meta"]
    except Exception as e:  # Orbax/TensorStore raise many kinds; all mean "cannot be read"
        raise _unreadable(path, "meta", e) from e
    if not isinstance(meta, dict):
        raise CorruptCheckpoint(path, f"meta is not a JSON object (file {path / 'meta' / 'metadata'})")
    verify = meta.get("checkpoint")
    if verify is None and "meta_crc32" not in meta:
        warnings.warn(f"checkpoint {path} has no digests (written by an older cnnlab): restored unverified",
                      CheckpointWarning, stacklevel=3)
    elif meta.get("meta_crc32") != _meta_crc(meta) or not isinstance(verify, dict):
        raise CorruptCheckpoint(path, f"meta does not match its CRC (file {path / 'meta' / 'metadata'})")
    elif verify["step"] != step:
        raise CorruptCheckpoint(path, f"meta says step {verify['step']}, the folder step {step}")
    elif result_config is not None and verify["config"] != config_digest(result_config):
        raise CorruptCheckpoint(path, "written by a run with other result settings than this folder's config.json")
    items = {}
    for name, template in templates.items():
        try:
            items[name] = mngr.restore(step, args=ocp.args.Composite(
                **{name: ocp.args.StandardRestore(template)}))[name]
        except Exception as e:
            raise _unreadable(path, name, e) from e
        if verify is None:  # an unverified checkpoint of an older cnnlab
            continue
        expected, got = verify["digests"].get(name, {}), digests(items[name])
        for leaf in sorted(set(expected) | set(got)):
            if expected.get(leaf) != got.get(leaf):
                raise CorruptCheckpoint(path, f"leaf {name}.{leaf} does not match its digest (saved "
                                        f"{expected.get(leaf)}, read {got.get(leaf)}; file "
                                        f"{leaf_file(path / name, leaf)})")
    return items, {k: v for k, v in meta.items() if k not in ("checkpoint", "meta_crc32")}


def _unreadable(path, item: str, e: Exception) -> CorruptCheckpoint:
    """The leaf and file a TensorStore read error names (``Error reading "<leaf>/<chunk>"``, ``local file
    "<path>"``; anywhere in the exception chain), and the innermost error's first line."""
    chain = []
    while e is not None and len(chain) < 8:
        chain.append(e)
        e = e.__cause__ or e.__context__
    text = "\n".join(str(c) for c in chain)
    leaf = re.search(r'Error reading "([^"/]+)/', text)
    files = re.findall(r'local file "([^"]*[^/"])"', text)
    file = files[-1] if files else leaf_file(path / item, leaf.group(1)) if leaf else path / item
    first = (str(chain[-1]).strip().splitlines() or [""])[0]
    return CorruptCheckpoint(path, f"{item} unreadable ({f'leaf {item}.{leaf.group(1)}, ' if leaf else ''}file "
                             f"{file}): {type(chain[-1]).__name__}: {first[:200]}{'...' if len(first) > 200 else ''}")


def leaf_file(item_dir: Path, leaf: str) -> Path:
    """The data file holding ``leaf``'s chunks in an OCDBT item folder (``item_dir`` itself if the index
    cannot say): the value file for large chunks, the b-tree node file for chunks stored inline."""
    def file_of(reference):  # "btreenode::d/<id>:<offset>:<length>" or "value:<prefix>:d/<id>:<offset>:<length>"
        return item_dir / reference.split(":", 1)[1].rsplit(":", 2)[0].replace(":", "")
    try:
        import tensorstore as ts
        base = ts.KvStore.open({"driver": "file", "path": f"{item_dir}/"}).result()
        nodes = [ts.ocdbt.dump(base).result()["versions"][-1]["root"]["location"]]
        while nodes:
            node = nodes.pop()
            for entry in ts.ocdbt.dump(base, node).result()["entries"]:
                children = [v for v in entry.values() if isinstance(v, str) and v.startswith("btreenode:")]
                nodes.extend(children)
                key = entry.get("key", b"")
                if children or not key.startswith(f"{leaf}/".encode()) or key.endswith((b".zarray", b"zarr.json")):
                    continue
                return file_of(entry["indirect_value"]) if "indirect_value" in entry else file_of(node)
    except Exception:  # an index too damaged to read: name the item folder
        pass
    return item_dir


def manager(workdir, max_to_keep: int = 2, read_only: bool = False) -> ocp.CheckpointManager:
    """The Orbax manager of ``workdir/checkpoints``; the writer's (not ``read_only``) creates the folder and
    removes unfinished (temporary) saves. Readers must not save with theirs."""
    return ocp.CheckpointManager(Path(workdir).resolve() / "checkpoints", options=ocp.CheckpointManagerOptions(
        max_to_keep=max_to_keep, create=not read_only, cleanup_tmp_directories=not read_only))


def restore_for_resume(workdir, templates: dict, result_config: dict):
    """``(items, meta)`` of the newest intact checkpoint in ``workdir`` (``None`` if there is none yet).

    Damaged newer ones are reported (``CheckpointWarning``) and moved to ``workdir/checkpoints-damaged/``
    so the run can write those steps again; if every checkpoint is damaged, ``CnnlabError``."""
    workdir = Path(workdir)
    _sync("cnnlab:before-resume-check")  # every process looks before any creates the folder, so all agree
    exists = (workdir / "checkpoints").is_dir()
    _sync("cnnlab:after-resume-check")
    if not exists:
        return None
    mngr = manager(workdir, read_only=True)
    failures = []
    try:
        found, step = None, None
        for step in sorted(mngr.all_steps(), reverse=True):
            try:
                found = restore(mngr, step, templates, result_config)
                break
            except CorruptCheckpoint as e:
                failures.append(e)
    finally:
        mngr.close()
    if failures and found is None:
        raise CnnlabError(f"{workdir} has no intact checkpoint (" + "; ".join(map(str, failures)) + "): to start "
                          f"afresh remove {workdir / 'checkpoints'} (or train into another output folder)")
    for e in failures if jax.process_index() == 0 else ():  # one process moves them for all
        aside = workdir / "checkpoints-damaged" / f"{e.path.name}-{time.strftime('%Y%m%dT%H%M%S')}"
        aside.parent.mkdir(exist_ok=True)
        shutil.move(e.path, aside)
        warnings.warn(f"{e}; moved to {aside}; resuming from the intact checkpoint of step {step}",
                      CheckpointWarning, stacklevel=2)
    return found


def _sync(name: str) -> None:
    """A barrier of all processes of a multi-process run (nothing with one process)."""
    if jax.process_count() > 1:
        multihost_utils.sync_global_devices(name)


def _load(workdir, step_templates: dict, caller: str):
    workdir = Path(workdir)
    if not (workdir / "checkpoints").is_dir():
        raise CnnlabError(f"{caller}: no checkpoint in {workdir / 'checkpoints'}; is {workdir} a training run?")
    mngr = manager(workdir, read_only=True)
    try:
        step = mngr.latest_step()
        if step is None:
            raise CnnlabError(f"{caller}: no checkpoint in {workdir / 'checkpoints'}; is {workdir} a training run?")
        return restore(mngr, step, step_templates)
    except CorruptCheckpoint as e:
        raise CnnlabError(f"{caller}: {e}; nothing was evaluated: retrain (the training command resumes "
                          "from the newest intact checkpoint) or restore the folder from a copy") from None
    finally:
        mngr.close()


def load_best_variables(workdir, variables_template) -> tuple[dict, dict]:
    """The best-on-validation ``{"params", "batch_stats"}`` of the run in ``workdir`` and its metadata,
    verified (``CnnlabError`` if the checkpoint is damaged)."""
    items, meta = _load(workdir, {"best": variables_template}, "load_best_variables")
    return items["best"], meta


def load_last_state(workdir, state_template):
    """The train state of ``workdir``'s newest checkpoint and its metadata, verified like ``load_best_variables``."""
    items, meta = _load(workdir, {"state": state_template}, "load_last_state")
    return items["state"], meta
