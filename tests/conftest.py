"""Shared test fixtures.

Tests that need the project's development data find it through one setting, ``CNNLAB_DATA_DIR``
(``.ci/run`` points it at ``../shared/data``), and skip with the reason when it is absent.
"""

import os

# The tests compile hundreds of small programs, and on the CPU XLA's compile time is most of their run: LLVM
# at -O3 compiled one program of 40 random initialisers in 51 s, at -O0 in 10 s (2-core AMD EPYC, load ~6,
# 2026-12-01). The level changes only the machine code LLVM emits for the same HLO programs (no fast-math),
# not what they compute. Set before JAX starts its CPU backend; subprocesses inherit it; an XLA_FLAGS that
# names a level is left alone.
if "xla_backend_optimization_level" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} --xla_backend_optimization_level=0".strip()

import pytest  # noqa: E402

from cnnlab.paths import DATA_DIR_ENV, data_dir  # noqa: E402


def _require(name):
    path = data_dir(name)
    if path is None:
        pytest.skip(f"{name}/ data not found: set {DATA_DIR_ENV} to a folder holding {name}/ "
                    "(the project's shared development data)")
    return path


@pytest.fixture(scope="session")
def widerface_dir():
    return _require("widerface")


@pytest.fixture(scope="session")
def coco_dir():
    return _require("coco")
