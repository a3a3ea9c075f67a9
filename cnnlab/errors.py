"""The one exception type for expected failures: bad arguments, missing or corrupt files, unknown config names,
a run folder from another configuration, a missing optional dependency.

``CnnlabError`` subclasses ``ValueError``, so library callers can catch either. The ``cnnlab`` command prints
it as one line, ``cnnlab: error: <message>``, and exits with status 2 (``--debug`` or ``CNNLAB_DEBUG=1`` shows
the traceback). Any other exception is a bug and keeps its traceback.
"""


class CnnlabError(ValueError):
    """An expected failure whose message tells the user what to fix."""
