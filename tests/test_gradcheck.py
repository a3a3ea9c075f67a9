"""The gradient-check grid of cnnlab.ops.gradcheck: every op's custom VJP against jax.grad of its autodiff
twin and against central finite differences (Eq. (13)). Ops add lines to ``gradcheck.CASES``, not tests here."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cnnlab import cli
from cnnlab.ops import gradcheck


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("case", gradcheck.CASES, ids=lambda case: case.id)
def test_custom_vjp_matches_autodiff_and_finite_differences(case, dtype):
    twin_error, fd_error, passed = gradcheck.check(case, dtype)
    assert twin_error <= gradcheck.TOLERANCE[dtype], f"{case.id}: {twin_error:.2e} vs jax.grad of the twin"
    assert fd_error <= gradcheck.FD_TOLERANCE[dtype], f"{case.id}: {fd_error:.2e} vs finite differences"
    assert passed


@jax.custom_vjp
def _double(x):
    return 2 * x


_double.defvjp(lambda x: (2 * x, None), lambda _, g: (3 * g,))  # wrong on purpose: d(2x)/dx is 2, not 3


def test_gradcheck_flags_a_wrong_gradient(capsys):
    case = gradcheck.Case("double", _double, lambda x: 2 * x, gradcheck.normal((3, 4)))
    twin_error, fd_error, passed = gradcheck.check(case, "float64")
    assert not passed and twin_error == pytest.approx(0.5) and fd_error > 1e-3
    assert gradcheck.run([case], ["float64"]) is False
    assert "FAIL" in capsys.readouterr().out
    f32_error, twin_error, passed = gradcheck.check_bfloat16(case)
    assert not passed and f32_error == pytest.approx(0.5, rel=1e-2) and twin_error == pytest.approx(0.5, rel=1e-2)


def _first_case_per_op():
    """The first case of each op and set of keyword arguments (so padded pooling and eps are covered too)."""
    return list({(case.op, *sorted(case.kwargs)): case for case in reversed(gradcheck.CASES)}.values())[::-1]


@pytest.mark.parametrize("case", _first_case_per_op() + gradcheck.LONG_SUMS, ids=lambda case: case.id)
def test_custom_vjp_on_bfloat16_matches_float32_gradient_and_bfloat16_autodiff(case):
    """The custom VJP on bfloat16 inputs: gradients come back bfloat16 and within BF16_TOLERANCE (4 * 2^-8,
    relative 2-norm) of jax.grad of the twin in float32 on the same values, and within BF16_TWIN_TOLERANCE of
    jax.grad of the twin in bfloat16 (cnnlab.ops.gradcheck's docstring justifies the numbers)."""
    f32_error, twin_error, passed = gradcheck.check_bfloat16(case)
    assert f32_error <= gradcheck.BF16_TOLERANCE, f"{case.id}: {f32_error:.2e} vs the float32 gradient"
    assert twin_error <= gradcheck.BF16_TWIN_TOLERANCE, f"{case.id}: {twin_error:.2e} vs the bfloat16 twin"
    assert passed, f"{case.id}: a gradient is not in its input's dtype"


def test_gradcheck_cli_prints_table_and_exits_zero(capsys):
    assert cli.main(["gradcheck", "--op", "dense", "--dtype", "float64", "bfloat16"]) == 0
    out = capsys.readouterr().out
    assert "dense(4x3, 3x5, 5)" in out and "bfloat16" in out and "dense(1024x256, 256x8, 8)" in out
    assert "FAIL" not in out


def test_gradcheck_cli_rejects_unknown_op(capsys):
    assert cli.main(["gradcheck", "--op", "nope"]) == 2
    assert "cnnlab: error: gradcheck: no case for op 'nope'" in capsys.readouterr().err


@pytest.mark.parametrize("dtype,tolerance", [("float64", 1e-10), ("float32", 1e-5), ("bfloat16", 5e-2)])
@pytest.mark.parametrize("case", _first_case_per_op(), ids=lambda case: case.id)
def test_op_works_under_jit_vmap_grad_in_each_dtype(case, dtype, tolerance):
    """jit(vmap(grad)) of the custom op over a batch of two input sets, in ``dtype``, against jax.grad of the
    twin applied to each set separately in float64 (float32 for bfloat16 inputs, whose rounding dominates)."""
    rng = np.random.default_rng(1)
    with jax.enable_x64(dtype == "float64"):
        sets = [case.make_inputs(rng, jnp.dtype(dtype)) for _ in range(2)]
        argnums = tuple(i for i, a in enumerate(sets[0]) if jnp.issubdtype(a.dtype, jnp.floating))

        outs = jax.tree.leaves(jax.eval_shape(functools.partial(case.fn, **case.kwargs), *sets[0]))
        us = [rng.standard_normal(o.shape) for o in outs]

        def loss(f):  # a random linear read-out of every output
            return lambda *args: sum(jnp.sum(u * o.astype(jnp.float32))
                                     for u, o in zip(us, jax.tree.leaves(f(*args, **case.kwargs))))

        stacked = [jnp.stack(inputs) for inputs in zip(*sets)]
        grads = jax.jit(jax.vmap(jax.grad(loss(case.fn), argnums)))(*stacked)
        for g, i in zip(grads, argnums):
            assert g.dtype == sets[0][i].dtype, f"{case.id}: gradient of input {i} is {g.dtype}"
        for k, inputs in enumerate(sets):
            reference = jax.jit(jax.grad(loss(case.twin), argnums))(
                *[a.astype(jnp.float32) if a.dtype == jnp.bfloat16 else a for a in inputs])
            for g, r in zip(grads, reference):
                g = np.asarray(g[k], np.float64)
                r = np.asarray(r, np.float64)
                assert np.max(np.abs(g - r)) <= tolerance * np.max(np.abs(r)), case.id
