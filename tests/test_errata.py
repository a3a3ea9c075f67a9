"""The printed forms of Eq. (15), (17), (48) and (52) are wrong by a wide margin; cnnlab's corrected forms
match jax.grad of the autodiff twins (float64)."""

import pytest

from cnnlab.ops import errata

ROWS = {row[0]: row for row in errata.errata_errors()}


@pytest.mark.parametrize("equation", ["(15)", "(17)", "(48)", "(52)"])
def test_printed_equation_is_wrong_and_corrected_form_matches_jax_grad(equation):
    _, _, printed, corrected = ROWS[equation]
    assert printed > 0.05, f"Eq. {equation} as printed is off by only {printed:.1e}"
    assert corrected < 1e-12, f"Eq. {equation} corrected is off by {corrected:.1e}"
