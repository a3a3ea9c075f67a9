"""cnnlab: the paper's convolutional networks as pure JAX functions with hand-derived gradients.

Layout (imports point down this list, never up):
  cnnlab.ops      pure functions, each with its custom VJP (the paper's backward equations)
  cnnlab.nn       Flax modules built on the ops
  cnnlab.mnist    §4: Table 1 CNN, Table 2 feed-forward net, MNIST data
  cnnlab.tcn      §6: temporal convolutional networks, Sequential/Permuted MNIST
  cnnlab.facedet  §5: FaceNet dense face detection, WIDER FACE evaluation
  cnnlab.caption  §7: TCN / GRU image captioning, COCO caption metrics
  cnnlab.train    the one training engine every task uses
  cnnlab.configs  the one config loader: each task's named configs (cnnlab/<task>/config.py), --set overrides
  cnnlab.cli      the `cnnlab` command
  cnnlab.host_memory  glibc settings applied at import (reuse freed memory)
"""

__version__ = "0.1.0"

from cnnlab.host_memory import reuse_freed_memory

# XLA's per-step CPU buffers are page-faulted in afresh at every step unless glibc keeps freed memory: up to
# 1.4x faster training steps on the CPU (cnnlab/host_memory.py; CNNLAB_MALLOC=system turns this off).
reuse_freed_memory()
