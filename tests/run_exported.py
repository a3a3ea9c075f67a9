"""Run an exported cnnlab file in a process that never imports cnnlab (``tests/test_export.py`` starts it).

    python run_exported.py JOBS.json    # [[FORMAT, MODE, FILE, IN.npz, OUT.npz], ...], one process for all

FORMAT: ``stablehlo`` (``jax.export.deserialize``) or ``onnx`` (onnxruntime). MODE:
- ``call``: one call on the arrays of IN.npz, named as the inputs in ``FILE.json``;
- ``stream``: the TCN's streaming step, fed ``pixels [T, N]`` one step at a time from a zero state;
- ``greedy``: FILE is the captioner's encoder, ``<stem>.decoder_step<suffix>`` its step: greedy decoding of
  ``images`` for ``max_length`` words, ``<UKN>`` and ``<PAD>`` never picked, ``<PAD>`` after ``<EOS>``.
OUT.npz gets the outputs by name (``stream``: ``logits [T, N, 10]``; ``greedy``: ``tokens``, ``logits``).
"""

import json
import sys
from pathlib import Path

import numpy as np


def load(fmt, path):
    """``run(dict of named inputs) -> dict of named outputs`` for one exported file."""
    sig = json.loads(Path(str(path) + ".json").read_text(encoding="utf-8"))
    names = [t["name"] for t in sig["outputs"]]
    if fmt == "stablehlo":
        import jax
        exported = jax.export.deserialize(Path(path).read_bytes())
        return sig, lambda feed: dict(zip(names, map(np.asarray, exported.call(*[feed[t["name"]]
                                                                                 for t in sig["inputs"]]))))
    import onnxruntime
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return sig, lambda feed: dict(zip(names, session.run(names, {t["name"]: feed[t["name"]] for t in sig["inputs"]})))


def main(fmt, mode, path, in_path, out_path):
    arrays = dict(np.load(in_path))
    sig, run = load(fmt, path)
    if mode == "call":
        out = run(arrays)
    elif mode == "stream":
        pixels = arrays["pixels"]
        state = np.zeros((pixels.shape[1], sig["inputs"][1]["shape"][1]), np.float32)
        logits = []
        for pixel in pixels:
            step = run({"pixel": pixel, "state": state})
            logits.append(step["logits"])
            state = step["next_state"]
        out = {"logits": np.stack(logits)}
    else:
        path = Path(path)
        step_sig, step = load(fmt, path.with_name(f"{path.stem}.decoder_step{path.suffix}"))
        special = step_sig["special_tokens"]
        feature = run(arrays)["feature"]
        n = feature.shape[0]
        state = np.zeros((n, step_sig["inputs"][2]["shape"][1]), np.float32)
        token, done, tokens, logits = np.zeros(n, np.int32), np.zeros(n, bool), [], []
        for t in range(int(arrays["max_length"])):
            out = step({"feature": feature, "token": token, "state": state, "t": np.asarray(t, np.int32)})
            state, scores = out["next_state"], out["logits"].copy()
            logits.append(out["logits"])
            scores[:, [special["UKN"], special["PAD"]]] = -np.inf
            token = np.where(done, special["PAD"], scores.argmax(-1)).astype(np.int32)
            done |= token == special["EOS"]
            tokens.append(token)
        out = {"tokens": np.stack(tokens, 1), "logits": np.stack(logits, 1)}
    assert "cnnlab" not in sys.modules, "the exported file must run without cnnlab"
    np.savez(out_path, **out)


if __name__ == "__main__":
    for job in json.loads(Path(sys.argv[1]).read_text()):
        main(*job)
