"""conv1d / conv2d / max_pool2d beyond the shared gradient grid (their lines are in cnnlab.ops.gradcheck.CASES):
every conv2d impl under jit and vmap, the backend choice of impl="auto", conv1d causality, max-pool ties, errors."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cnnlab import ops
from cnnlab.ops import conv


def _rand(key, *shapes, dtype=jnp.float32):
    keys = jax.random.split(jax.random.PRNGKey(key), len(shapes))
    return [jax.random.normal(k, s, dtype) for k, s in zip(keys, shapes)]


def _vjp_pair(f, f_ref, args, g):
    """(y, *grads) of the op and of its reference, both in one jit (one compile per case)."""
    def both(args, g):
        y, vjp = jax.vjp(f, *args)
        y_ref, vjp_ref = jax.vjp(f_ref, *args)
        return (y, *vjp(g)), (y_ref, *vjp_ref(g))
    return jax.jit(both)(args, g)


def _assert_close(got, want, tol):
    for a, b in zip(got, want):
        assert a.shape == b.shape and a.dtype == b.dtype
        np.testing.assert_allclose(np.asarray(a, np.float64), np.asarray(b, np.float64), rtol=tol, atol=tol)


# ---------------------------------------------------------------- conv1d

@pytest.mark.parametrize("impl", ["patches", "xla"])
@pytest.mark.parametrize("k,d", [(1, 1), (2, 1), (3, 2), (2, 5), (4, 3)])  # (4, 3): d(k-1) = 9 > t / 2
def test_conv1d_matches_explicit_sum_eq63(impl, k, d):
    n, t, ci, co = 2, 10, 3, 2
    x, w = _rand(k * 10 + d, (n, t, ci), (k, ci, co))
    x, w = np.asarray(x, np.float64), np.asarray(w, np.float64)
    # Eq. (63) with left zero padding: y[t] = sum_i sum_c x[t - (k-1-i) d, c] w[i, c], absent inputs zero.
    want = np.zeros((n, t, co))
    for s in range(t):
        for i in range(k):
            if s - (k - 1 - i) * d >= 0:
                want[:, s] += x[:, s - (k - 1 - i) * d] @ w[i]
    got = ops.conv1d(jnp.float32(x), jnp.float32(w), dilation=d, impl=impl)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("impl", ["patches", "xla"])
def test_conv1d_is_causal_future_input_changes_no_earlier_output(impl):
    x, w = _rand(1, (2, 16, 3), (4, 3, 5))
    t0 = 9
    x_future = x.at[:, t0].add(10.0)
    for d in (1, 2, 4):
        conv = functools.partial(ops.conv1d, w=w, dilation=d, impl=impl)
        y, y_future = conv(x), conv(x_future)
        np.testing.assert_array_equal(y[:, :t0], y_future[:, :t0])
        assert not np.allclose(y[:, t0], y_future[:, t0])
        # the gradient of an early output must not reach later inputs either
        dx = jax.grad(lambda x: conv(x)[:, :t0].sum())(x)
        assert np.all(dx[:, t0:] == 0)


@pytest.mark.parametrize("impl", ["patches", "xla"])
def test_conv1d_works_under_jit_and_vmap(impl):
    x, w, g = _rand(2, (3, 2, 8, 3), (3, 3, 4), (3, 2, 8, 4))
    f = jax.jit(jax.vmap(lambda x, g: jax.vjp(lambda x, w: ops.conv1d(x, w, dilation=2, impl=impl), x, w)[1](g)))
    f_ref = jax.vmap(lambda x, g: jax.vjp(lambda x, w: ops.conv1d_autodiff(x, w, dilation=2), x, w)[1](g))
    _assert_close(f(x, g), f_ref(x, g), 1e-5)


def test_conv1d_auto_is_xla_on_cpu_and_patches_elsewhere():
    x, w = _rand(3, (2, 12, 3), (3, 3, 4))
    program = jax.jit(lambda x, w: ops.conv1d(x, w, dilation=2)).lower(x, w).as_text()
    assert ("convolution" in program) == (jax.default_backend() == "cpu")


@pytest.mark.parametrize("shape_x,shape_w,kwargs,error,match", [
    ((2, 8), (3, 2, 4), {}, ValueError, r"conv1d: x must have rank 3"),
    ((2, 8, 3), (3, 4), {}, ValueError, r"conv1d: w must have rank 3"),
    ((2, 8, 3), (3, 2, 4), {}, ValueError, r"conv1d: channel mismatch.*C_in=3.*C_in=2"),
    ((2, 8, 3), (3, 3, 4), {"dilation": 0}, ValueError, r"conv1d: dilation must be >= 1"),
    ((2, 8, 3), (3, 3, 4), {"dilation": 1.0}, TypeError, r"conv1d: dilation must be a Python int"),
    ((2, 8, 3), (3, 3, 4), {"impl": "cudnn"}, ValueError, r"conv1d: impl must be one of"),
])
def test_conv1d_rejects_bad_input(shape_x, shape_w, kwargs, error, match):
    with pytest.raises(error, match=match):
        ops.conv1d(jnp.zeros(shape_x), jnp.zeros(shape_w), **kwargs)


# ---------------------------------------------------------------- conv2d

def _convolutions(f, *args):
    return jax.jit(f).lower(*args).as_text().count("stablehlo.convolution")


@pytest.mark.parametrize("rule", ["avx512-amd", "avx512-intel", "no-avx512"])
def test_conv2d_auto_picks_per_layer_and_cpu_and_matches_autodiff(rule, monkeypatch):
    monkeypatch.setattr(conv, "_cpu_rule", lambda: rule)  # every CPU rule, whatever this CPU is
    avx512 = rule != "no-avx512"
    x, w, g = _rand(3, (3, 6, 6, 2), (3, 3, 2, 4), (3, 2, 2, 4))
    f = lambda impl: lambda x, w: ops.conv2d(x, w, stride=2, padding=0, impl=impl)
    got, want = _vjp_pair(f("auto"), lambda x, w: ops.conv2d_autodiff(x, w, stride=2), (x, w), g)
    _assert_close(got, want, 1e-5)
    if jax.default_backend() == "cpu":
        def grad(impl):
            return jax.value_and_grad(lambda x, w: jnp.sum(f(impl)(x, w)), (0, 1))

        assert _convolutions(f("patches"), x, w) == 0 and _convolutions(f("xla"), x, w) == 1
        # a 3x3 kernel on a small, narrow map: patches both ways (no convolution)
        assert _convolutions(f("auto"), x, w) == 0 and _convolutions(grad("auto"), x, w) == 0
        # a wide one (128 input channels): with AVX-512 XLA's forward and the patch backward, else patches
        wide, w_wide = jnp.zeros((1, 6, 6, 128)), jnp.zeros((3, 3, 128, 4))
        assert _convolutions(f("auto"), wide, w_wide) == int(avx512)
        assert _convolutions(grad("auto"), wide, w_wide) == int(avx512)
        # a 1x1 kernel: one matmul both ways
        assert _convolutions(grad("auto"), x, w[:1, :1]) == 0
        # a large map (99x99 outputs of 3x3x32 taps: 2.8M patch entries): XLA's forward; with AVX-512 XLA's
        # backward too (3 convolutions)
        big = jnp.zeros((1, 200, 200, 32))
        assert _convolutions(grad("auto"), big, jnp.zeros((3, 3, 32, 4))) == (3 if avx512 else 1)
        # the patch forward reaches 2.5M entries without AVX-512 and 384K with it (a 460K-entry map)
        mid = jnp.zeros((1, 82, 82, 32))
        assert _convolutions(f("auto"), mid, jnp.zeros((3, 3, 32, 4))) == int(avx512)
        # the patch backward reaches 512K entries on the AMD AVX-512 rule, 2M on the Intel one (56x56 outputs,
        # 903K entries: XLA's forward with AVX-512, and 2 backward convolutions on the AMD rule)
        large = jnp.zeros((1, 113, 113, 32))
        assert _convolutions(grad("auto"), large, jnp.zeros((3, 3, 32, 4))) == {"avx512-amd": 3, "avx512-intel": 1,
                                                                                 "no-avx512": 0}[rule]


def test_cpu_rule_follows_the_isa_and_vendor(monkeypatch):
    for avx512, vendor, rule in [(False, "GenuineIntel", "no-avx512"), (False, "AuthenticAMD", "no-avx512"),
                                 (True, "AuthenticAMD", "avx512-amd"), (True, "GenuineIntel", "avx512-intel"),
                                 (True, "", "avx512-amd")]:
        monkeypatch.setattr(conv, "has_avx512", lambda: avx512)
        monkeypatch.setattr(conv, "vendor", lambda: vendor)
        assert conv._cpu_rule() == rule


def test_l2_cache_size_is_read_from_sysfs(tmp_path, monkeypatch):
    from cnnlab.ops import _cpu
    for index, (level, kind, size) in enumerate([(1, "Data", "48K"), (1, "Instruction", "64K"),
                                                 (2, "Unified", "2048K"), (3, "Unified", "32M")]):
        folder = tmp_path / f"index{index}"
        folder.mkdir()
        for name, value in {"level": level, "type": kind, "size": size, "shared_cpu_list": "0"}.items():
            (folder / name).write_text(f"{value}\n")
    monkeypatch.setattr(_cpu, "_CACHE_DIR", str(tmp_path))
    _cpu.caches.cache_clear()
    try:
        assert _cpu.l2_bytes() == 2 * 2 ** 20 and [c["level"] for c in _cpu.caches()] == [1, 1, 2, 3]
        monkeypatch.setattr(_cpu, "_CACHE_DIR", str(tmp_path / "absent"))
        _cpu.caches.cache_clear()
        assert _cpu.l2_bytes() is None
    finally:
        _cpu.caches.cache_clear()


def test_conv2d_patches_partial_batch_block_matches_autodiff(monkeypatch):
    # blocks of 3 examples of 4x4 outputs (3x3x3 patches): 5 = 3 + 2 and a zero example; the default
    # takes all 5 in one block
    monkeypatch.setattr(conv, "_BLOCK_ENTRIES", 3 * 16 * 27)
    assert conv._chunk(5, 16, 27) == 3
    x, w, g = _rand(6, (5, 9, 9, 3), (3, 3, 3, 2), (5, 4, 4, 2))
    got, want = _vjp_pair(lambda x, w: ops.conv2d(x, w, stride=2, padding=0, impl="patches"),
                          lambda x, w: ops.conv2d_autodiff(x, w, stride=2), (x, w), g)
    _assert_close(got, want, 1e-5)


@pytest.mark.parametrize("impl", ["patches", "xla"])
def test_conv2d_works_under_jit_and_vmap(impl):
    x, w, g = _rand(4, (2, 3, 7, 7, 2), (3, 3, 2, 3), (2, 3, 4, 4, 3))
    conv = lambda fn: lambda x, w: fn(x, w, stride=2, padding=1)
    vjp = lambda fn: jax.vmap(lambda x, g: jax.vjp(conv(fn), x, w)[1](g))
    _assert_close(jax.jit(vjp(functools.partial(ops.conv2d, impl=impl)))(x, g), vjp(ops.conv2d_autodiff)(x, g), 1e-5)


@pytest.mark.parametrize("shape_x,shape_w,kwargs,error,match", [
    ((2, 8, 8), (3, 3, 2, 4), {}, ValueError, r"conv2d: x must have rank 4 \(NHWC\)"),
    ((2, 8, 8, 2), (3, 3, 4), {}, ValueError, r"conv2d: w must have rank 4"),
    ((2, 8, 8, 3), (3, 3, 2, 4), {}, ValueError, r"conv2d: channel mismatch.*C_in=3.*C_in=2"),
    ((2, 8, 8, 2), (3, 3, 2, 4), {"stride": 0}, ValueError, r"conv2d: stride must be >= 1"),
    ((2, 8, 8, 2), (3, 3, 2, 4), {"padding": -1}, ValueError, r"conv2d: padding must be >= 0"),
    ((2, 4, 4, 2), (7, 7, 2, 4), {"padding": 1}, ValueError, r"conv2d: kernel \(7, 7\).*padded input \(6, 6\)"),
    ((2, 8, 8, 2), (3, 3, 2, 4), {"impl": "cudnn"}, ValueError, r"conv2d: impl must be one of"),
    ((2, 8, 8, 2), (3, 3, 2, 4), {"stride": 2.0}, TypeError, r"conv2d: stride must be a Python int"),
])
def test_conv2d_rejects_bad_input(shape_x, shape_w, kwargs, error, match):
    with pytest.raises(error, match=match):
        ops.conv2d(jnp.zeros(shape_x), jnp.zeros(shape_w), **kwargs)
    with pytest.raises(error, match=match):
        ops.conv2d_autodiff(jnp.zeros(shape_x), jnp.zeros(shape_w), **kwargs)


def test_conv2d_rejects_integer_input():
    with pytest.raises(TypeError, match="conv2d: x must be a floating-point array, got dtype int32"):
        ops.conv2d(jnp.zeros((1, 4, 4, 1), jnp.int32), jnp.zeros((3, 3, 1, 1)))


# ---------------------------------------------------------------- max_pool2d

@pytest.mark.parametrize("n,h,w,c,k,s", [(2, 4, 4, 3, 2, 2), (2, 7, 6, 2, 3, 2), (1, 5, 5, 2, 2, 1)])
def test_max_pool2d_grad_matches_autodiff_with_ties(n, h, w, c, k, s):
    """The gradient grid (cnnlab.ops.gradcheck) has no ties; here most windows tie, as after ReLU."""
    x, = _rand(k * 10 + s, (n, h, w, c))
    x = jnp.round(jax.nn.relu(x))  # whole windows tie at 0, and rounding makes ties among positives
    (g,) = _rand(7, (n, (h - k) // s + 1, (w - k) // s + 1, c))
    got, want = _vjp_pair(lambda x: ops.max_pool2d(x, window=k, stride=s),
                          lambda x: ops.max_pool2d_autodiff(x, window=k, stride=s), (x,), g)
    _assert_close(got, want, 1e-6)


def test_max_pool2d_routes_a_tie_to_the_first_argmax():
    x = jnp.zeros((1, 2, 2, 1))  # one window, all four inputs tied
    dx = jax.grad(lambda x: ops.max_pool2d(x).sum())(x)
    np.testing.assert_array_equal(dx[0, :, :, 0], [[1.0, 0.0], [0.0, 0.0]])


@pytest.mark.parametrize("shape,kwargs,error,match", [
    ((4, 4, 1), {}, ValueError, r"max_pool2d: x must have rank 4"),
    ((1, 4, 4, 1), {"window": 0}, ValueError, r"max_pool2d: window must be >= 1"),
    ((1, 4, 4, 1), {"stride": 0}, ValueError, r"max_pool2d: stride must be >= 1"),
    ((1, 4, 4, 1), {"window": 5}, ValueError, r"max_pool2d: window=5 is larger"),
])
def test_max_pool2d_rejects_bad_input(shape, kwargs, error, match):
    with pytest.raises(error, match=match):
        ops.max_pool2d(jnp.zeros(shape), **kwargs)
