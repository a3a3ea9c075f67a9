"""Where cnnlab looks for datasets on local disk.

One setting, the environment variable ``CNNLAB_DATA_DIR``, names a folder laid out like the project's
shared development data: ``mnist/``, ``widerface/``, ``coco/`` below it. Nothing is ever downloaded
implicitly.
"""

import os
from pathlib import Path

DATA_DIR_ENV = "CNNLAB_DATA_DIR"


def data_dir(name: str) -> Path | None:
    """``$CNNLAB_DATA_DIR/<name>`` if the setting is present and that folder exists, else ``None``."""
    root = os.environ.get(DATA_DIR_ENV)
    if not root:
        return None
    path = Path(root).expanduser() / name
    return path if path.is_dir() else None
