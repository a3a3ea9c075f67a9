"""The gradient check of every op: its custom VJP against ``jax.grad`` of its autodiff twin and against
central finite differences, the paper's own check (§3.2, Eq. (13)).

``CASES`` is the grid: one line per op and hyper-parameter setting. For each case and dtype we draw inputs
and a random cotangent ``u`` for every output, and differentiate the scalar ``L = sum(u * op(inputs))``
(a random linear functional of the output) w.r.t. every floating-point input:

- *vs autodiff*: ``max |g_custom - g_twin| / max |g_twin|`` per input, the largest over inputs;
- *vs finite differences*: along a random direction ``v`` of all inputs at once, the central difference
  ``(L(x + h v) - L(x - h v)) / 2h`` against ``<g_custom, v>``, relative to ``sum |g_custom * v|`` (the size
  of the terms of that dot product, so cancellation between them cannot inflate the error).

bfloat16 (``check_bfloat16``) has too few bits for finite differences. There the inputs and ``u`` are drawn,
rounded to bfloat16, and the custom VJP's gradient on them is compared, as a whole, with

- the float32 gradient: ``jax.grad`` of the twin on the same (exactly representable) values in float32, and
- ``jax.grad`` of the twin in bfloat16,

by ``||g_bf16 - g_ref|| / ||g_f32||`` (2-norms over each input's whole gradient, the largest over inputs).
Against float32 the bound is ``BF16_TOLERANCE`` = 4 * 2^-8 ~ 1.6e-2: bfloat16 keeps 8 significant bits, so
rounding the returned gradient alone costs up to 2^-8 (unit roundoff) of it; the ops accumulate their sums in
float32 (``cnnlab.ops._dtypes``), and the remaining rounding of saved activations (a sigmoid's output, the
convolution output a ReLU's mask reads) adds a few units more, not a factor growing with the sum's length
(``LONG_SUMS`` checks sums over thousands of terms; measured errors: 0.7e-3 to 8e-3 on this grid).
Against the bfloat16 twin the bound is twice that, ``BF16_TWIN_TOLERANCE``: both are within
``BF16_TOLERANCE`` of the float32 gradient, and XLA's bfloat16 autodiff rounds its intermediates too.

Run it as ``cnnlab gradcheck [--dtype float64 float32 bfloat16] [--op NAME]`` (``--errata``: see
``cnnlab.ops.errata``); ``tests/test_gradcheck.py`` runs the same grid.
"""

import argparse
import dataclasses
import functools
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from cnnlab.ops.activations import relu, relu_autodiff, sigmoid, sigmoid_autodiff, tanh, tanh_autodiff
from cnnlab.ops.batch_norm import (batch_norm, batch_norm_autodiff, batch_norm_inference,
                                   batch_norm_inference_autodiff)
from cnnlab.ops.dense import dense, dense_autodiff
from cnnlab.ops.group_norm import group_norm, group_norm_autodiff
from cnnlab.ops.softmax import cross_entropy, cross_entropy_autodiff, softmax, softmax_autodiff
from cnnlab.errors import CnnlabError
from cnnlab.ops.conv import conv1d, conv1d_autodiff, conv2d, conv2d_autodiff
from cnnlab.ops.pooling import max_pool2d, max_pool2d_autodiff


@dataclasses.dataclass
class Case:
    """One grid point: ``fn(*make_inputs(rng, dtype), **kwargs)`` against ``twin`` with the same arguments."""
    op: str
    fn: Callable
    twin: Callable
    make_inputs: Callable  # (numpy Generator, dtype) -> tuple of input arrays; integer ones are not differentiated
    kwargs: dict = dataclasses.field(default_factory=dict)

    @property
    def id(self) -> str:
        shapes = self.make_inputs(np.random.default_rng(0), jnp.float32)
        args = ["x".join(map(str, a.shape)) for a in shapes] + [f"{k}={v}" for k, v in self.kwargs.items()]
        return f"{self.op}({', '.join(args)})"


def normal(*shapes):
    """Inputs drawn from N(0, 1), one array per shape."""
    def make(rng, dtype):
        return tuple(jnp.asarray(rng.standard_normal(s), dtype) for s in shapes)
    return make


def away_from_zero(*shapes, margin=0.1):
    """N(0, 1) inputs pushed at least ``margin`` away from 0, so finite differences never straddle ReLU's kink."""
    def make(rng, dtype):
        return tuple(jnp.asarray(np.sign(z) * (margin + np.abs(z)), dtype)
                     for z in (rng.standard_normal(s) for s in shapes))
    return make


def normal_and_variance(*shapes):
    """N(0, 1) inputs, then a positive variance [C] (C = the last shape's last dim) for batch_norm_inference."""
    def make(rng, dtype):
        return normal(*shapes)(rng, dtype) + (jnp.asarray(rng.uniform(0.5, 2.0, shapes[-1][-1:]), dtype),)
    return make


def normal_and_left_padding(*shapes):
    """N(0, 1) inputs, then an integer mask [N, T, 1] (1 at real steps) of sequences left-padded to the first
    shape's [N, T]: example i has T - i real steps (at least one)."""
    def make(rng, dtype):
        n, t = shapes[0][:2]
        mask = (np.arange(t)[None, :] >= np.minimum(np.arange(n), t - 1)[:, None]).astype(np.int32)
        return normal(*shapes)(rng, dtype) + (jnp.asarray(mask[..., None]),)
    return make


def logits_and_labels(shape):
    """Logits [..., K] from N(0, 2^2) and integer labels [...] in [0, K)."""
    def make(rng, dtype):
        return (jnp.asarray(2 * rng.standard_normal(shape), dtype),
                jnp.asarray(rng.integers(0, shape[-1], shape[:-1]), jnp.int32))
    return make


# The grid. Each op owner adds its lines here (one per shape / stride / padding / dilation setting).
CASES = [
    Case("dense", dense, dense_autodiff, normal((4, 3), (3, 5), (5,))),
    Case("dense", dense, dense_autodiff, normal((1, 7), (7, 1), (1,))),
    Case("relu", relu, relu_autodiff, away_from_zero((3, 4, 4, 2))),
    Case("sigmoid", sigmoid, sigmoid_autodiff, normal((3, 4, 4, 2))),
    Case("tanh", tanh, tanh_autodiff, normal((3, 4, 4, 2))),
    Case("batch_norm", batch_norm, batch_norm_autodiff, normal((3, 4, 5, 2), (2,), (2,))),
    Case("batch_norm", batch_norm, batch_norm_autodiff, normal((6, 3), (3,), (3,))),
    Case("batch_norm", batch_norm, batch_norm_autodiff, normal((2, 1, 1, 3), (3,), (3,)), dict(eps=1e-3)),
    Case("batch_norm", batch_norm, batch_norm_autodiff, normal((3, 5, 2), (2,), (2,))),
    Case("batch_norm", batch_norm, batch_norm_autodiff, normal_and_left_padding((3, 5, 2), (2,), (2,))),
    Case("batch_norm_inference", batch_norm_inference, batch_norm_inference_autodiff,
         normal_and_variance((3, 4, 5, 2), (2,), (2,), (2,))),
    Case("batch_norm_inference", batch_norm_inference, batch_norm_inference_autodiff,
         normal_and_variance((6, 3), (3,), (3,), (3,))),
    # group_norm (owner ops): groups of 1, 2 and all channels, NHWC maps and [N, C] vectors
    Case("group_norm", group_norm, group_norm_autodiff, normal((2, 3, 4, 4), (4,), (4,)), dict(num_groups=2)),
    Case("group_norm", group_norm, group_norm_autodiff, normal((3, 2, 5, 6), (6,), (6,)), dict(num_groups=6)),
    Case("group_norm", group_norm, group_norm_autodiff, normal((2, 4, 3, 3), (3,), (3,)),
         dict(num_groups=1, eps=1e-3)),
    Case("group_norm", group_norm, group_norm_autodiff, normal((4, 12), (12,), (12,)), dict(num_groups=3)),
    Case("softmax", softmax, softmax_autodiff, normal((4, 10))),
    Case("softmax", softmax, softmax_autodiff, normal((3, 5, 2)), dict(axis=1)),
    Case("cross_entropy", cross_entropy, cross_entropy_autodiff, logits_and_labels((4, 10))),
    Case("cross_entropy", cross_entropy, cross_entropy_autodiff, logits_and_labels((2, 3, 5))),
    # conv2d (owner conv): each implementation on stride 1-3, padding 0-2, kernels 1-5, odd sizes, and sizes
    # where s does not divide (H - k + 2p) (tests/test_conv.py checks partial batch blocks of impl="patches").
    *[Case("conv2d", conv2d, conv2d_autodiff, normal(x, w), dict(stride=s, padding=p, impl=impl))
      for impl in ("patches", "xla")
      for x, w, s, p in [((2, 7, 7, 3), (3, 3, 3, 4), 1, 0), ((5, 9, 8, 2), (3, 3, 2, 3), 2, 1),
                         ((3, 7, 9, 2), (2, 2, 2, 2), 3, 2), ((9, 5, 5, 1), (5, 5, 1, 2), 1, 2),
                         ((4, 6, 7, 3), (4, 4, 3, 2), 3, 0), ((5, 8, 8, 2), (1, 1, 2, 2), 2, 0),
                         # the ResNet / FaceNet shapes: 7x7/2 pad 3 stem, 3x3/2 pad 1, 3x3/1 pad 1, 1x1/2
                         # projection shortcut, 1x1/1 lateral
                         ((2, 12, 12, 3), (7, 7, 3, 4), 2, 3), ((2, 8, 8, 3), (3, 3, 3, 4), 2, 1),
                         ((2, 6, 6, 3), (3, 3, 3, 3), 1, 1), ((2, 8, 8, 3), (1, 1, 3, 4), 2, 0),
                         ((3, 5, 5, 4), (1, 1, 4, 3), 1, 0)]],
    # conv1d (owner conv): each implementation, causal, dilations 1-3, kernels 1-4, d(k-1) >= T
    *[Case("conv1d", conv1d, conv1d_autodiff, normal(x, w), dict(dilation=d, impl=impl))
      for impl in ("patches", "xla")
      for x, w, d in [((2, 9, 3), (3, 3, 4), 1), ((3, 11, 2), (2, 2, 5), 3), ((1, 5, 2), (4, 2, 2), 2),
                      ((2, 7, 3), (1, 3, 2), 2)]],
    # max_pool2d (owner conv): random normal inputs have no ties (tests/test_conv.py checks the tie rule)
    Case("max_pool2d", max_pool2d, max_pool2d_autodiff, normal((2, 4, 4, 3))),
    Case("max_pool2d", max_pool2d, max_pool2d_autodiff, normal((2, 7, 6, 2)), dict(window=3, stride=2)),
    Case("max_pool2d", max_pool2d, max_pool2d_autodiff, normal((1, 5, 5, 2)), dict(window=2, stride=1)),
    Case("max_pool2d", max_pool2d, max_pool2d_autodiff, normal((2, 9, 8, 1)), dict(window=3, stride=3)),
    # padded with -inf: the ResNet stem's 3x3 / 2 / 1 on even and odd sizes, and padding on a stride-1 pool
    Case("max_pool2d", max_pool2d, max_pool2d_autodiff, normal((2, 8, 8, 2)), dict(window=3, stride=2, padding=1)),
    Case("max_pool2d", max_pool2d, max_pool2d_autodiff, normal((1, 7, 9, 2)), dict(window=3, stride=2, padding=1)),
    Case("max_pool2d", max_pool2d, max_pool2d_autodiff, normal((2, 5, 5, 1)), dict(window=2, stride=1, padding=1)),
]

# Long sums, checked in bfloat16 only (``run`` adds them to its bfloat16 rows): batch statistics over
# M = 32 * 16 * 16 = 8192 entries, Eq. (17)/(25)'s weight-gradient sums over 1024 rows and 8 * 14 * 14 positions,
# Eq. (15)/(24)'s sums over 256 input features and a 3x3x64 window: the error must stay at the rounding of the
# result, whatever the sum's length.
LONG_SUMS = [
    Case("batch_norm", batch_norm, batch_norm_autodiff, normal((32, 16, 16, 2), (2,), (2,))),
    Case("dense", dense, dense_autodiff, normal((1024, 256), (256, 8), (8,))),
    *[Case("conv2d", conv2d, conv2d_autodiff, normal((8, 16, 16, 64), (3, 3, 64, 4)), dict(impl=impl))
      for impl in ("patches", "xla")],
    Case("conv1d", conv1d, conv1d_autodiff, normal((4, 256, 32), (3, 32, 4)), dict(dilation=2, impl="patches")),
]

# Tolerances on the relative errors above: float64 is the check that matters; float32 rounding (~6e-8) is
# amplified by the sums in the backward passes, and by 1/h in the finite differences.
TOLERANCE = {"float64": 1e-6, "float32": 1e-4}
FD_STEP = {"float64": 1e-5, "float32": 1e-3}
FD_TOLERANCE = {"float64": 1e-6, "float32": 1e-2}
# bfloat16 (module docstring): a few units of its roundoff 2^-8, vs the float32 gradient and vs the bf16 twin.
BF16_TOLERANCE = 4 * 2.0 ** -8
BF16_TWIN_TOLERANCE = 2 * BF16_TOLERANCE


def _relative_errors(case: Case, argnums, inputs, us, vs, h):
    """(error vs autodiff, error vs finite differences) of one case, in one jitted function."""
    fn = functools.partial(case.fn, **case.kwargs)
    twin = functools.partial(case.twin, **case.kwargs)

    def functional(f):
        return lambda *args: sum(jnp.sum(u * o) for u, o in zip(us, jax.tree.leaves(f(*args))))

    g_custom = jax.grad(functional(fn), argnums)(*inputs)
    g_twin = jax.grad(functional(twin), argnums)(*inputs)
    twin_error = jnp.max(jnp.stack([jnp.max(jnp.abs(gc - gt)) / jnp.maximum(jnp.max(jnp.abs(gt)), 1e-30)
                                    for gc, gt in zip(g_custom, g_twin)]))

    def along(t):  # L(x + t v): Eq. (13) evaluated on both sides of x
        args = list(inputs)
        for i, v in zip(argnums, vs):
            args[i] = inputs[i] + t * v
        return functional(fn)(*args)

    finite_difference = (along(h) - along(-h)) / (2 * h)
    directional = sum(jnp.sum(g * v) for g, v in zip(g_custom, vs))
    scale = sum(jnp.sum(jnp.abs(g * v)) for g, v in zip(g_custom, vs))
    fd_error = jnp.abs(finite_difference - directional) / jnp.maximum(scale, 1e-30)
    return twin_error, fd_error


def check(case: Case, dtype: str = "float64", seed: int = 0):
    """Return ``(error vs autodiff, error vs finite differences, passed)`` for one case in ``dtype``."""
    rng = np.random.default_rng(seed)  # NumPy draws: jax.random would add seconds of compile to every case
    with jax.enable_x64(dtype == "float64"):
        inputs = case.make_inputs(rng, jnp.dtype(dtype))
        argnums = tuple(i for i, a in enumerate(inputs) if jnp.issubdtype(a.dtype, jnp.floating))
        outs = jax.tree.leaves(jax.eval_shape(functools.partial(case.fn, **case.kwargs), *inputs))
        us = [jnp.asarray(rng.standard_normal(o.shape), o.dtype) for o in outs]
        vs = [jnp.asarray(rng.standard_normal(inputs[i].shape), inputs[i].dtype) for i in argnums]
        errors = jax.jit(functools.partial(_relative_errors, case, argnums))(inputs, us, vs, FD_STEP[dtype])
        twin_error, fd_error = (float(e) for e in errors)
    passed = twin_error <= TOLERANCE[dtype] and fd_error <= FD_TOLERANCE[dtype]
    return twin_error, fd_error, passed


def _bf16_errors(case: Case, argnums, inputs, us):
    """(error vs the float32 gradient, error vs jax.grad of the twin in bfloat16) of one case, one jit."""
    fn = functools.partial(case.fn, **case.kwargs)
    twin = functools.partial(case.twin, **case.kwargs)

    def functional(f):  # L = sum(u * op(x)) summed in float32
        return lambda *args: sum(jnp.sum(u.astype(jnp.float32) * o.astype(jnp.float32))
                                 for u, o in zip(us, jax.tree.leaves(f(*args))))

    def upcast(a):
        return a.astype(jnp.float32) if a.dtype == jnp.bfloat16 else a

    g_bf16 = jax.grad(functional(fn), argnums)(*inputs)
    g_f32 = jax.grad(functional(twin), argnums)(*map(upcast, inputs))
    g_twin = jax.grad(functional(twin), argnums)(*inputs)

    def error(gs, refs):
        return jnp.max(jnp.stack([jnp.linalg.norm((g.astype(jnp.float32) - r.astype(jnp.float32)).ravel())
                                  / jnp.maximum(jnp.linalg.norm(f.ravel()), 1e-30)
                                  for g, r, f in zip(gs, refs, g_f32)]))
    return error(g_bf16, g_f32), error(g_bf16, g_twin)


def check_bfloat16(case: Case, seed: int = 0):
    """Return ``(error vs the float32 gradient, error vs the bfloat16 twin, passed)`` for one case on bfloat16
    inputs (module docstring); also fails if a gradient does not come back in its input's dtype."""
    rng = np.random.default_rng(seed)
    inputs = case.make_inputs(rng, jnp.bfloat16)
    argnums = tuple(i for i, a in enumerate(inputs) if jnp.issubdtype(a.dtype, jnp.floating))
    outs = jax.tree.leaves(jax.eval_shape(functools.partial(case.fn, **case.kwargs), *inputs))
    us = [jnp.asarray(rng.standard_normal(o.shape), jnp.bfloat16) for o in outs]
    grads = jax.eval_shape(lambda *a: jax.grad(lambda *b: sum(jnp.sum(o.astype(jnp.float32)) for o in jax.tree.leaves(
        case.fn(*b, **case.kwargs))), argnums)(*a), *inputs)
    dtypes_ok = all(g.dtype == inputs[i].dtype for g, i in zip(grads, argnums))
    f32_error, twin_error = (float(e) for e in jax.jit(functools.partial(_bf16_errors, case, argnums))(inputs, us))
    return f32_error, twin_error, dtypes_ok and f32_error <= BF16_TOLERANCE and twin_error <= BF16_TWIN_TOLERANCE


def run(cases=None, dtypes=("float64", "float32", "bfloat16")) -> bool:
    """Print the table of relative errors for ``cases`` (default: all) in each dtype; True if all pass.
    bfloat16 adds the ``LONG_SUMS`` of the same ops; its columns are the errors vs the float32 gradient and vs
    the bfloat16 twin."""
    cases = CASES if cases is None else cases
    long_sums = [c for c in LONG_SUMS if c.op in {case.op for case in cases}]
    rows = [(case.id, dtype, *(check_bfloat16(case) if dtype == "bfloat16" else check(case, dtype)))
            for dtype in dtypes for case in cases + (long_sums if dtype == "bfloat16" else [])]
    width = max(len(r[0]) for r in rows)
    print(f"{'case':<{width}}  {'dtype':<8}  {'vs autodiff':>11}  {'vs fin.diff':>11}  result")
    for case_id, dtype, twin_error, fd_error, passed in rows:
        print(f"{case_id:<{width}}  {dtype:<8}  {twin_error:11.2e}  {fd_error:11.2e}  "
              f"{'ok' if passed else 'FAIL'}")
    failed = sum(not r[-1] for r in rows)
    print(f"{len(rows) - failed}/{len(rows)} passed (tolerances: vs autodiff {TOLERANCE}, "
          f"vs finite differences {FD_TOLERANCE}; bfloat16: vs the float32 gradient {BF16_TOLERANCE:.3g}, "
          f"vs the bfloat16 twin {BF16_TWIN_TOLERANCE:.3g})")
    return failed == 0


def main(args) -> int:
    if args.errata:
        from cnnlab.ops import errata
        errata.report()
        return 0
    cases = [c for c in CASES if args.op is None or c.op == args.op]
    if not cases:
        raise CnnlabError(f"gradcheck: no case for op {args.op!r}; ops: {sorted({c.op for c in CASES})}")
    return 0 if run(cases, args.dtype) else 1


def add_parser(commands) -> None:
    """Register ``cnnlab gradcheck`` on the CLI's sub-command parsers."""
    parser = commands.add_parser("gradcheck", help="check every op's custom gradient (autodiff, Eq. (13))",
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--dtype", nargs="+", choices=["float64", "float32", "bfloat16"],
                        default=["float64", "float32", "bfloat16"],
                        help="bfloat16: the columns are the errors vs the float32 gradient and vs the bf16 twin")
    parser.add_argument("--op", default=None, help="check only this op (e.g. conv2d)")
    parser.add_argument("--errata", action="store_true",
                        help="instead, print the error of each printed (wrong) equation of docs/derivations.md")
    parser.set_defaults(func=main)
