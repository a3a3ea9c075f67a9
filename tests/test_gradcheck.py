"""The gradient-check grid of cnnlab.ops.gradcheck: every op's custom VJP against jax.grad of its autodiff
twin and against central finite differences (Eq. (13)). Ops add lines to ``gradcheck.CASES``, not tests here."""

import jax
import jax.numpy as jnp
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


def test_gradcheck_cli_prints_table_and_exits_zero(capsys):
    assert cli.main(["gradcheck", "--op", "dense", "--dtype", "float64"]) == 0
    out = capsys.readouterr().out
    assert "dense(4x3, 3x5, 5)" in out and "FAIL" not in out


def test_gradcheck_cli_rejects_unknown_op():
    with pytest.raises(SystemExit, match="no case for op 'nope'"):
        cli.main(["gradcheck", "--op", "nope"])
