"""Pure layer functions whose backward passes are the paper's equations (``jax.custom_vjp``).

Layout follows Flax: activations NHWC (NWC in 1-D), kernels HWIO (WIO in 1-D). Each op ``name`` has an
autodiff twin ``name_autodiff`` with the same signature and forward, whose gradient JAX derives: the
independent reference of the gradient check, and the ``grad="autodiff"`` path of ``cnnlab.nn``.
"""

from cnnlab.ops.losses import binary_cross_entropy, focal_loss, smooth_l1  # noqa: F401  (owner facedet)
