"""A vectorisable exponential for Numba kernels.

Numba's SVML path needs a patched LLVM that the PyPI llvmlite lacks, so ``math.exp`` in a
kernel loop is a scalar libm call (about 4 ns here). ``vexp`` uses only arithmetic, selects
and bit casts, so LLVM vectorises the loops that call it (about 0.8 ns per value with
AVX-512, the speed of NumPy's own SIMD exp).

Method: x = k ln2 + r with |r| <= ln2/2; exp(r) by its Taylor polynomial of degree 12
(truncation error below 1.8e-16 relative); k added to the exponent bits. Accuracy: within
4e-16 relative of ``np.exp`` on [-708, 709.78]. Below -708 the result is exp(-708) (an
absolute error under 3.4e-308, where the true value is subnormal); above 709.78 it is +inf.
Inputs are assumed finite (NaN gives an arbitrary finite value): the solvers detect
non-finite states themselves.
"""

import math

from numba import njit, types
from numba.extending import intrinsic

__all__ = ["vexp"]


@intrinsic
def _bits_to_float(typingctx, i):
    sig = types.float64(types.int64)

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], context.get_value_type(types.float64))

    return sig, codegen


@intrinsic
def _float_to_bits(typingctx, x):
    sig = types.int64(types.float64)

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], context.get_value_type(types.int64))

    return sig, codegen


# Adding 1.5 * 2^52 rounds to an integer that sits in the low mantissa bits (round to nearest).
_SHIFTER = 6755399441055744.0
_LOG2E = 1.4426950408889634
# ln 2 split so that k * _LN2_HI is exact for |k| < 2^11 (Cody-Waite reduction).
_LN2_HI = 0.6931471803691238
_LN2_LO = 1.9082149292705877e-10
_LOWEST = -708.0
_HIGHEST = 709.782712893384


# "contract" lets LLVM fuse the Horner steps into FMAs: fewer roundings, twice the speed.
@njit(inline="always", cache=True, fastmath={"contract"})
def vexp(x):
    """exp(x) in float64 from arithmetic only, so that loops over it vectorise."""
    xc = min(max(x, _LOWEST), _HIGHEST)
    t = xc * _LOG2E + _SHIFTER
    k = t - _SHIFTER
    r = xc - k * _LN2_HI - k * _LN2_LO
    p = 1.0 / 479001600.0
    p = p * r + 1.0 / 39916800.0
    p = p * r + 1.0 / 3628800.0
    p = p * r + 1.0 / 362880.0
    p = p * r + 1.0 / 40320.0
    p = p * r + 1.0 / 5040.0
    p = p * r + 1.0 / 720.0
    p = p * r + 1.0 / 120.0
    p = p * r + 1.0 / 24.0
    p = p * r + 1.0 / 6.0
    p = p * r + 0.5
    p = p * r + 1.0
    p = p * r + 1.0
    # Multiply by 2^k by adding k to the exponent bits: p is in [0.7, 1.42] and the clamp
    # keeps k in [-1021, 1024], so the result stays a normal number.
    k_bits = (_float_to_bits(t) - _float_to_bits(_SHIFTER)) << 52
    y = _bits_to_float(_float_to_bits(p) + k_bits)
    if x > _HIGHEST:
        y = math.inf
    return y
