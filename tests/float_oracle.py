"""An independent, exact oracle for IEEE-754-style small float formats.

This module shares no code with ``jnas.precision``.  It knows a format only
through its bit encodings: 1 sign bit, ``E`` exponent bits with bias
``2**(E-1) - 1`` (the all-ones exponent field is Inf/NaN), ``M`` mantissa bits,
and it decides every rounding question with exact arithmetic: Python integers,
``fractions.Fraction`` and float32 *bit patterns* (uint32).  No float
arithmetic is ever applied to a value, so a CPU that flushes float32 subnormals
cannot change an answer.

The two entry points the brief asks for:

* ``representable_values(E, M, subnormals=True)`` -- every finite value of the
  format, enumerated from its encodings, as exactly converted float32, sorted.
* ``round_by_search(x, E, M, rounding, subnormals, overflow)`` -- rounds each
  float32 input by binary search (``np.searchsorted`` over bit patterns, which
  are monotone in value for non-negative floats) in the table of representable
  magnitudes, and returns float32 bit patterns (uint32).

Conventions (IEEE-754 where it has something to say):

* ``nearest_even``: round to nearest; a tie goes to the neighbour whose
  *encoding* (exponent field and mantissa field read as one integer) is even.
  For M >= 1 that is exactly "the even mantissa".  For M = 0 the mantissa
  field is empty and IEEE's rule is undefined (its significands are a single
  digit); we use the parity of the whole encoding, i.e. of the exponent field,
  which is what rounding the bit pattern gives.  Overflow: with an unbounded
  exponent range, the next value above ``max_finite`` is ``2**(bias+1)``
  (encoding ``(2**E - 1) << M``); a value rounds to Inf iff it would round to
  that value, and, as IEEE 754 section 4.3.1 prescribes, every magnitude of at
  least ``b**emax * (b - b**(1-p) / 2)`` (b = 2, emax = bias, p = M + 1) is
  Inf.  For M >= 1 that threshold is the halfway point ``max_finite + ulp/2``,
  which the even rule sends up anyway (``max_finite`` has the odd mantissa
  ``2**M - 1``); for M = 0 it is ``1.5 * 2**bias``, a tie that the
  encoding-parity rule alone would send down to ``max_finite`` (for E = 1,
  which has no normal numbers, the threshold is no tie and changes nothing).
* ``toward_zero``: truncate; a finite input never becomes Inf (it gives
  ``max_finite``), as IEEE's roundTowardZero prescribes.
* ``overflow="saturate"``: a result that would be +-Inf from a finite input
  is +-max_finite instead.  +-Inf inputs stay +-Inf.
* ``subnormals=False``: round as if subnormals existed, then any finite result
  whose magnitude is below ``min_normal = 2**(1-bias)`` becomes a zero of the
  input's sign.  This is applied last (after saturation), so a result never has
  a nonzero magnitude below ``min_normal``.  (E = 1 formats have no normal
  numbers, so there every finite result is a signed zero.)
* NaN in -> NaN out, +-0 -> +-0, and the sign of the input is always kept
  (a negative value that rounds to zero gives -0.0).
"""

from __future__ import annotations

import functools
from fractions import Fraction

import numpy as np

SIGN_BIT = 0x80000000
ABS_MASK = 0x7FFFFFFF
F32_INF_BITS = 0x7F800000
F32_MAX_BITS = 0x7F7FFFFF
F32_QNAN_BITS = 0x7FC00000

ROUNDINGS = ("nearest_even", "toward_zero")
OVERFLOWS = ("inf", "saturate")

__all__ = [
    "FormatTable",
    "decode",
    "f32_bits_to_fraction",
    "fraction_to_f32_bits_floor",
    "fraction_to_f32_bits",
    "format_table",
    "extremes",
    "representable_values",
    "representable_fractions",
    "round_by_search",
    "stochastic_neighbours",
    "carrier_bits_to_f32_bits",
    "f32_bits_to_carrier_bits",
]


# ---------------------------------------------------------------------------
# Exact conversions between Fractions and float32 bit patterns.
# ---------------------------------------------------------------------------


def _pow2(k: int) -> Fraction:
    return Fraction(2) ** k


def _floor_log2(q: Fraction) -> int:
    """The integer e with 2**e <= q < 2**(e+1), for q > 0 (exact)."""
    n, d = q.numerator, q.denominator
    e = n.bit_length() - d.bit_length()
    # 2**(e-1) < q < 2**(e+1); fix up by exact comparison.
    if q < _pow2(e):
        e -= 1
    assert _pow2(e) <= q < _pow2(e + 1)
    return e


def f32_bits_to_fraction(bits: int) -> Fraction:
    """Exact value of a finite float32 given by its bit pattern."""
    bits = int(bits)
    sign = -1 if bits & SIGN_BIT else 1
    a = bits & ABS_MASK
    if a >= F32_INF_BITS:
        raise ValueError("not finite")
    ef, mf = a >> 23, a & 0x7FFFFF
    if ef == 0:
        v = mf * _pow2(-149)
    else:
        v = ((1 << 23) | mf) * _pow2(ef - 150)
    return sign * v


def fraction_to_f32_bits_floor(q: Fraction) -> tuple[int, bool]:
    """(bits of the largest float32 <= q, whether it equals q), for q >= 0.

    If q exceeds the largest finite float32 the result is that float's bits
    with ``exact=False``.
    """
    if q < 0:
        raise ValueError("q must be >= 0")
    if q == 0:
        return 0, True
    e = _floor_log2(q)
    if e > 127:
        return F32_MAX_BITS, False
    if e >= -126:
        scaled = q * _pow2(23 - e)  # in [2**23, 2**24)
        s = scaled.numerator // scaled.denominator
        bits = ((e + 127) << 23) | (s - (1 << 23))
    else:
        scaled = q * _pow2(149)  # < 2**23
        s = scaled.numerator // scaled.denominator
        bits = s
    return bits, (s == scaled)


def fraction_to_f32_bits(q: Fraction) -> int:
    """Bits of the float32 equal to q (q must be exactly representable)."""
    sign = SIGN_BIT if q < 0 else 0
    bits, exact = fraction_to_f32_bits_floor(abs(q))
    if not exact:
        raise ValueError(f"{q} is not a float32")
    return bits | sign


# ---------------------------------------------------------------------------
# The format, from its encodings.
# ---------------------------------------------------------------------------


def _check(E: int, M: int) -> None:
    if not (1 <= E <= 8 and 0 <= M <= 23):
        raise ValueError((E, M))


def decode(E: int, M: int, encoding: int) -> Fraction:
    """Exact magnitude of the (sign-less) encoding ``(exp_field << M) | man``.

    The all-ones exponent field is accepted and decoded *as if* the exponent
    range were unbounded (so ``(2**E-1) << M`` gives ``2**(bias+1)``); callers
    that enumerate finite values must stop before it.
    """
    _check(E, M)
    bias = 2 ** (E - 1) - 1
    ef, m = encoding >> M, encoding & ((1 << M) - 1)
    if ef == 0:
        return m * _pow2(1 - bias - M)
    return ((1 << M) + m) * _pow2(ef - bias - M)


def extremes(E: int, M: int) -> dict:
    """Exact extreme values of the format, straight from their encodings.

    Works for any E, M (no enumeration), e.g. e8m23.
    """
    _check(E, M)
    top_finite_field = 2**E - 2
    bias = 2 ** (E - 1) - 1
    max_enc = (top_finite_field << M) | ((1 << M) - 1)
    return dict(
        bits=1 + E + M,
        bias=bias,
        max_finite=decode(E, M, max_enc),
        # exponent field 1, mantissa 0 (for E = 1 that field is Inf/NaN, so
        # this is the value the formula 2**(1-bias) names; no such normal
        # number exists in the encoding).
        min_normal=decode(E, M, 1 << M),
        # exponent field 0, mantissa 1; for M = 0 there is no such encoding and
        # the formula 2**(1-bias-M) equals min_normal.
        min_subnormal=_pow2(1 - bias - M),
        epsilon=_pow2(-M),
        overflow_value=decode(E, M, (2**E - 1) << M),
    )


@functools.cache
def representable_fractions(E: int, M: int, subnormals: bool = True) -> tuple:
    """Every finite value of the format (exact Fractions), sorted, zero once."""
    _check(E, M)
    n_finite = (2**E - 1) << M  # encodings of non-negative finite values
    pos = []
    for enc in range(n_finite):
        ef = enc >> M
        if not subnormals and ef == 0 and enc != 0:
            continue
        pos.append(decode(E, M, enc))
    # encoding order is value order
    assert all(a < b for a, b in zip(pos[:-1], pos[1:], strict=True))
    neg = [-v for v in reversed(pos) if v != 0]
    return tuple(neg + pos)


def representable_values(E: int, M: int, subnormals: bool = True) -> np.ndarray:
    """Every finite value of the format as float32 (exactly converted), sorted.

    Zero appears once (as +0.0).  Raises if a value is not a float32 (cannot
    happen for E <= 8, M <= 23).
    """
    fr = representable_fractions(E, M, subnormals)
    bits = np.array([fraction_to_f32_bits(q) for q in fr], dtype=np.uint32)
    return bits.view(np.float32)


class FormatTable:
    """Non-negative values of a format as float32 bits, plus rounding thresholds.

    ``bits[i]`` (uint32, increasing) are the magnitudes, subnormals always
    included (``subnormals=False`` is applied after rounding).  Interval ``i``
    is ``[bits[i], bits[i+1]]`` where ``bits[n]`` is the virtual overflow value
    ``2**(bias+1)``.  ``up_threshold[i]`` is the smallest float32 bit pattern
    that rounds *up* (to ``bits[i+1]``) under nearest-even.
    """

    def __init__(self, E: int, M: int, m0_ties: str = "even_encoding"):
        _check(E, M)
        self.E, self.M = E, M
        ex = extremes(E, M)
        self.bias = ex["bias"]
        n = (2**E - 1) << M  # finite non-negative encodings: 0 .. n-1
        fr = [decode(E, M, enc) for enc in range(n + 1)]  # + virtual overflow
        self.fractions = fr[:n]
        self.bits = np.array([fraction_to_f32_bits(q) for q in fr[:n]], dtype=np.uint32)
        thr = np.empty(n, dtype=np.int64)
        p = M + 1  # significand digits
        overflow_threshold = Fraction(2) ** self.bias * (2 - Fraction(2) ** (1 - p) / 2)
        mids = []
        for i in range(n):
            mid = (fr[i] + fr[i + 1]) / 2
            mids.append(mid)
            fb, exact = fraction_to_f32_bits_floor(mid)
            if not exact:
                thr[i] = fb + 1  # x > mid  <=>  bits(x) >= fb + 1
                continue
            upper_enc = i + 1
            if mid == overflow_threshold:  # IEEE 754 4.3.1: rounds to Inf
                tie_up = True
            elif m0_ties == "even_encoding" or M > 0:
                tie_up = upper_enc % 2 == 0
            elif m0_ties == "up":  # alternative M = 0 convention (half away)
                tie_up = True
            elif m0_ties == "down":
                tie_up = False
            else:
                raise ValueError(m0_ties)
            thr[i] = fb if tie_up else fb + 1
        self.midpoints = mids
        self.up_threshold = thr
        self.max_finite_bits = int(self.bits[-1])
        # min_normal = 2**(1-bias) is a float32 for every E <= 8.
        self.min_normal_bits = fraction_to_f32_bits(ex["min_normal"])
        self.extremes = ex


@functools.cache
def format_table(E: int, M: int, m0_ties: str = "even_encoding") -> FormatTable:
    if ((2**E - 1) << M) > (1 << 17):
        raise ValueError("format too large to tabulate")
    return FormatTable(E, M, m0_ties)


def _as_bits(x) -> np.ndarray:
    x = np.asarray(x)
    if x.dtype == np.uint32:
        return x
    if x.dtype != np.float32:
        raise TypeError(f"oracle takes float32 (or its uint32 bits), got {x.dtype}")
    return x.view(np.uint32)


def round_by_search(
    x,
    E: int,
    M: int,
    rounding: str = "nearest_even",
    subnormals: bool = True,
    overflow: str = "inf",
    *,
    m0_ties: str = "even_encoding",
) -> np.ndarray:
    """Round float32 inputs (or their uint32 bits) into format (E, M).

    Returns the float32 bit patterns (uint32) of the results.  NaN inputs give
    a quiet NaN of the same sign (compare NaNs with isnan only).
    """
    if rounding not in ROUNDINGS:
        raise ValueError(rounding)
    if overflow not in OVERFLOWS:
        raise ValueError(overflow)
    t = format_table(E, M, m0_ties)
    b = _as_bits(x)
    shape = b.shape
    b = b.reshape(-1)
    sign = b & np.uint32(SIGN_BIT)
    a = b & np.uint32(ABS_MASK)
    is_nan = a > F32_INF_BITS
    is_inf = a == F32_INF_BITS

    n = t.bits.size
    idx = np.searchsorted(t.bits, a, side="right") - 1  # bits[idx] <= a
    assert np.all(idx >= 0)
    lower = t.bits[idx]
    exact = lower == a
    up_is_overflow = idx + 1 >= n
    upper = t.bits[np.minimum(idx + 1, n - 1)].copy()
    upper[up_is_overflow] = F32_INF_BITS

    if rounding == "nearest_even":
        go_up = a.astype(np.int64) >= t.up_threshold[idx]
    else:  # toward_zero
        go_up = np.zeros(a.shape, dtype=bool)
    res = np.where(exact, a, np.where(go_up, upper, lower)).astype(np.uint32)
    res[is_inf] = F32_INF_BITS
    if overflow == "saturate":
        res[(res == F32_INF_BITS) & ~is_inf] = t.max_finite_bits
    if not subnormals:
        res[res < t.min_normal_bits] = 0  # +-Inf (0x7F800000) is never below
    res = res | sign
    res[is_nan] = np.uint32(F32_QNAN_BITS) | sign[is_nan]
    return res.reshape(shape)


def stochastic_neighbours(x_bits: int, E: int, M: int):
    """For one finite float32 (bits), the two candidate results of stochastic
    rounding and the exact probability of the upper-magnitude one.

    Returns ``(lower_bits, upper_bits, p_up)`` with sign applied; for an
    exactly representable input ``lower == upper`` and ``p_up == 0``.  The
    upper neighbour may be the overflow value (bits of Inf).
    """
    t = format_table(E, M)
    x_bits = int(x_bits)
    sign = x_bits & SIGN_BIT
    a = x_bits & ABS_MASK
    assert a < F32_INF_BITS
    idx = int(np.searchsorted(t.bits, np.uint32(a), side="right")) - 1
    lo = int(t.bits[idx])
    if lo == a:
        return a | sign, a | sign, Fraction(0)
    if idx + 1 < t.bits.size:
        hi = int(t.bits[idx + 1])
        hi_val = t.fractions[idx + 1]
    else:
        hi = F32_INF_BITS
        hi_val = t.extremes["overflow_value"]
    xv = f32_bits_to_fraction(a)
    lo_val = t.fractions[idx]
    p = (xv - lo_val) / (hi_val - lo_val)
    return lo | sign, hi | sign, p


# ---------------------------------------------------------------------------
# Carriers other than float32 (float16, bfloat16), by exact re-encoding.
# ---------------------------------------------------------------------------

_CARRIERS = {"float16": (5, 10), "bfloat16": (8, 7)}


def _carrier_decode(bits: int, E: int, M: int):
    """Value of a carrier bit pattern: Fraction, or 'inf'/'-inf'/'nan'."""
    n = 1 + E + M
    sign = -1 if (bits >> (n - 1)) & 1 else 1
    mag = bits & ((1 << (n - 1)) - 1)
    if (mag >> M) == 2**E - 1:
        if mag & ((1 << M) - 1):
            return "nan"
        return "inf" if sign > 0 else "-inf"
    v = decode(E, M, mag)
    return v if sign > 0 else (-v if v != 0 else "-0")


@functools.cache
def _carrier_to_f32_table(carrier: str) -> np.ndarray:
    """float32 bits of every 16-bit carrier pattern (exact)."""
    E, M = _CARRIERS[carrier]
    out = np.empty(1 << 16, dtype=np.uint32)
    for b in range(1 << 16):
        v = _carrier_decode(b, E, M)
        if v == "nan":
            r = F32_QNAN_BITS | (SIGN_BIT if b >> (E + M) else 0)
        elif v == "inf":
            r = F32_INF_BITS
        elif v == "-inf":
            r = F32_INF_BITS | SIGN_BIT
        elif v == "-0":
            r = SIGN_BIT
        else:
            r = fraction_to_f32_bits(v)
        out[b] = r
    return out


def carrier_bits_to_f32_bits(bits: np.ndarray, carrier: str) -> np.ndarray:
    """Exact conversion of float16/bfloat16 bit patterns to float32 bits."""
    return _carrier_to_f32_table(carrier)[np.asarray(bits, dtype=np.uint16)]


@functools.cache
def _f32_to_carrier_lookup(carrier: str):
    """(sorted float32 bits of every non-NaN carrier value, their carrier bits)."""
    f32 = _carrier_to_f32_table(carrier)
    keep = (f32 & ABS_MASK) <= F32_INF_BITS
    carrier_bits = np.arange(1 << 16, dtype=np.uint32)[keep]
    order = np.argsort(f32[keep], kind="stable")
    return f32[keep][order], carrier_bits[order].astype(np.uint16)


def f32_bits_to_carrier_bits(bits: np.ndarray, carrier: str) -> np.ndarray:
    """Exact conversion of float32 bits to float16/bfloat16 bits, by lookup in
    the carrier's own enumerated values.  Raises if a value is not exactly
    representable in the carrier.  NaN gives the carrier's quiet NaN."""
    E, M = _CARRIERS[carrier]
    keys, vals = _f32_to_carrier_lookup(carrier)
    b = np.asarray(bits, dtype=np.uint32)
    nan = (b & ABS_MASK) > F32_INF_BITS
    b_ok = np.where(nan, 0, b)
    pos = np.minimum(np.searchsorted(keys, b_ok), keys.size - 1)
    if not np.all(keys[pos] == b_ok):
        raise ValueError("value not representable in " + carrier)
    out = vals[pos]
    qnan = np.uint16(((2**E - 1) << M) | (1 << (M - 1)))
    sign16 = ((b >> 16) & 0x8000).astype(np.uint16)
    return np.where(nan, qnan | sign16, out).astype(np.uint16)
