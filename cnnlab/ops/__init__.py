"""Pure layer functions whose backward passes are the paper's equations (``jax.custom_vjp``).

Layout follows Flax: activations NHWC (NWC in 1-D), kernels HWIO (WIO in 1-D). Each op ``name`` has an
autodiff twin ``name_autodiff`` with the same signature and forward, whose gradient JAX derives: the
independent reference of the gradient check, and the ``grad="autodiff"`` path of ``cnnlab.nn``.
"""

from cnnlab.ops.dense import dense, dense_autodiff
from cnnlab.ops.activations import relu, relu_autodiff, sigmoid, sigmoid_autodiff, tanh, tanh_autodiff
from cnnlab.ops.batch_norm import (batch_norm, batch_norm_autodiff, batch_norm_inference,
                                   batch_norm_inference_autodiff, ewma_update)
from cnnlab.ops.group_norm import group_norm, group_norm_autodiff
from cnnlab.ops.softmax import cross_entropy, cross_entropy_autodiff, softmax, softmax_autodiff
from cnnlab.ops.conv import conv1d, conv1d_autodiff
from cnnlab.ops.conv import conv2d, conv2d_autodiff
from cnnlab.ops.pooling import max_pool2d, max_pool2d_autodiff
from cnnlab.ops.losses import binary_cross_entropy, focal_loss, smooth_l1

__all__ = ["batch_norm", "batch_norm_autodiff", "batch_norm_inference", "batch_norm_inference_autodiff",
           "binary_cross_entropy", "conv1d", "conv1d_autodiff", "conv2d", "conv2d_autodiff", "cross_entropy",
           "cross_entropy_autodiff", "dense", "dense_autodiff", "ewma_update", "focal_loss", "group_norm",
           "group_norm_autodiff", "max_pool2d", "max_pool2d_autodiff", "relu", "relu_autodiff", "sigmoid",
           "sigmoid_autodiff", "smooth_l1", "softmax", "softmax_autodiff", "tanh", "tanh_autodiff"]
