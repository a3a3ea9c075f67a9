"""cnnlab: the paper's convolutional networks as pure JAX functions with hand-derived gradients.

Layout (imports point down this list, never up):
  cnnlab.ops      pure functions, each with its custom VJP (the paper's backward equations)
  cnnlab.nn       Flax modules built on the ops
  cnnlab.mnist    §4: Table 1 CNN, Table 2 feed-forward net, MNIST data
  cnnlab.tcn      §6: temporal convolutional networks, Sequential/Permuted MNIST
  cnnlab.facedet  §5: FaceNet dense face detection, WIDER FACE evaluation
  cnnlab.caption  §7: TCN / GRU image captioning, COCO caption metrics
  cnnlab.train    the one training engine every task uses
  cnnlab.cli      the `cnnlab` command
"""

__version__ = "0.1.0"
