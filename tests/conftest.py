"""Shared test fixtures.

Tests that need the project's development data find it through one setting, ``CNNLAB_DATA_DIR``
(``.ci/run`` points it at ``../shared/data``), and skip with the reason when it is absent.
"""

import pytest

from cnnlab.paths import DATA_DIR_ENV, data_dir


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
