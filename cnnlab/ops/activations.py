"""Element-wise activation functions, Eq. (5)-(7), applied as a layer by Eq. (26), backward Eq. (27):
delta^(l) = delta^(l+1) * f'(X^(l)). Any shape; the output has the input's shape and dtype.
"""

import jax
import jax.numpy as jnp
from jax import lax

from cnnlab.ops._checks import check_floating


def _relu_forward(x):
    # Eq. (5). The derivative at the kink x = 0 is taken as 0, as jax.nn.relu and jax.grad of this `where` do.
    return jnp.where(x > 0, x, jnp.zeros_like(x))


def _sigmoid_forward(x):
    # Eq. (6) evaluated as XLA's logistic, which does not overflow exp(-x) for large negative x.
    return lax.logistic(x)


@jax.custom_vjp
def _relu(x):
    return _relu_forward(x)


def _relu_fwd(x):
    return _relu_forward(x), x


def _relu_bwd(x, delta):
    return (jnp.where(x > 0, delta, jnp.zeros_like(delta)),)  # Eq. (27) with ReLU'(x) = [x > 0]


_relu.defvjp(_relu_fwd, _relu_bwd)


@jax.custom_vjp
def _sigmoid(x):
    return _sigmoid_forward(x)


def _sigmoid_fwd(x):
    y = _sigmoid_forward(x)
    return y, y


def _sigmoid_bwd(y, delta):
    return (delta * y * (1 - y),)  # Eq. (27) with sigma'(x) = sigma(x) (1 - sigma(x)), from the saved output


_sigmoid.defvjp(_sigmoid_fwd, _sigmoid_bwd)


@jax.custom_vjp
def _tanh(x):
    return jnp.tanh(x)


def _tanh_fwd(x):
    y = jnp.tanh(x)
    return y, y


def _tanh_bwd(y, delta):
    return (delta * (1 - y * y),)  # Eq. (27) with tanh'(x) = 1 - tanh(x)^2, from the saved output


_tanh.defvjp(_tanh_fwd, _tanh_bwd)


def relu(x):
    """ReLU, Eq. (5), backward Eq. (27). x: any shape."""
    check_floating("relu", "x", x)
    return _relu(x)


def relu_autodiff(x):
    """Eq. (5); JAX derives the gradient."""
    check_floating("relu", "x", x)
    return _relu_forward(x)


def sigmoid(x):
    """Logistic sigmoid, Eq. (6), backward Eq. (27). x: any shape."""
    check_floating("sigmoid", "x", x)
    return _sigmoid(x)


def sigmoid_autodiff(x):
    """Eq. (6); JAX derives the gradient."""
    check_floating("sigmoid", "x", x)
    return _sigmoid_forward(x)


def tanh(x):
    """Hyperbolic tangent, Eq. (7), backward Eq. (27). x: any shape."""
    check_floating("tanh", "x", x)
    return _tanh(x)


def tanh_autodiff(x):
    """Eq. (7); JAX derives the gradient."""
    check_floating("tanh", "x", x)
    return jnp.tanh(x)
