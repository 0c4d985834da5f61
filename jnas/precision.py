"""Reduced-precision IEEE-754-style number formats and their rounding primitive.

A `FloatFormat` ⟨E, M⟩ has 1 sign bit, E exponent bits (bias 2**(E-1) - 1, the
all-ones exponent reserved for Inf/NaN) and M mantissa bits. `quantize` rounds an
array to the nearest value of such a format (or toward zero, or stochastically)
and returns it in the input's own dtype (the "carrier"), so a network can be
evaluated or trained as if it stored its values in ⟨E, M⟩.

Why integer bit operations instead of float arithmetic: XLA on CPU flushes
float32 subnormals to zero in floating-point ops, and it may fold chains of
constant multiplications (which can overflow). Working on the carrier's bit
pattern as an unsigned integer is exact everywhere, subnormals included, and is
a handful of elementwise integer ops that XLA fuses into one memory-bound pass.
`jax.lax.reduce_precision` is not used: it has no stochastic or toward-zero mode,
and no saturating or subnormal-free variant.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import re
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

ROUNDINGS = ("nearest_even", "toward_zero", "stochastic")
OVERFLOWS = ("inf", "saturate")
EXPONENT_RANGE = (1, 8)  # inclusive; what a float32 carrier can emulate
MANTISSA_RANGE = (0, 23)

_FORMAT_RE = re.compile(r"^e(\d+)m(\d+)((?:_nosub|_sat)*)$")


@dataclasses.dataclass(frozen=True)
class FloatFormat:
    """An IEEE-754-style binary floating-point format ⟨E exponent, M mantissa bits⟩.

    Attributes:
      exponent_bits: E, in 1..8.
      mantissa_bits: M (explicit fraction bits, no hidden bit), in 0..23.
      subnormals: if False, every rounded result whose magnitude is below
        `min_normal` becomes a zero of the same sign (flush to zero).
      overflow: "inf" (IEEE) or "saturate" (finite overflow clamps to
        ±max_finite).
      name: optional display name; not part of equality or hashing.
    """

    exponent_bits: int
    mantissa_bits: int
    subnormals: bool = dataclasses.field(default=True, kw_only=True)
    overflow: str = dataclasses.field(default="inf", kw_only=True)
    name: str | None = dataclasses.field(default=None, kw_only=True, compare=False)

    def __post_init__(self):
        for field, value, (lo, hi) in (
            ("exponent_bits", self.exponent_bits, EXPONENT_RANGE),
            ("mantissa_bits", self.mantissa_bits, MANTISSA_RANGE),
        ):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
                raise ValueError(f"{field} must be an int in {lo}..{hi}, got {value!r}")
            if not lo <= value <= hi:
                raise ValueError(
                    f"{field}={value} is outside the emulated range {lo}..{hi} "
                    "(formats must fit a float32 carrier)"
                )
        object.__setattr__(self, "exponent_bits", int(self.exponent_bits))
        object.__setattr__(self, "mantissa_bits", int(self.mantissa_bits))
        if not isinstance(self.subnormals, bool):
            raise ValueError(f"subnormals must be a bool, got {self.subnormals!r}")
        if self.overflow not in OVERFLOWS:
            raise ValueError(
                f"overflow={self.overflow!r} is not one of {', '.join(OVERFLOWS)}"
            )

    # -- Derived constants (exact, as Python floats: all fit a float64). --------

    @property
    def bits(self) -> int:
        """Total storage bits: 1 sign + E + M."""
        return 1 + self.exponent_bits + self.mantissa_bits

    @property
    def bias(self) -> int:
        """Exponent bias 2**(E-1) - 1."""
        return 2 ** (self.exponent_bits - 1) - 1

    @property
    def min_exponent(self) -> int:
        """Exponent of the smallest normal number, 1 - bias."""
        return 1 - self.bias

    @property
    def max_finite(self) -> float:
        """Largest finite value.

        For E >= 2 this is (2 - 2**-M) * 2**bias. E == 1 has no normal numbers
        (exponent field 1 is Inf/NaN), so its largest finite value is the largest
        subnormal. Like the other properties this describes the encoding: with
        subnormals=False and E == 1, `quantize` flushes even this value to zero.
        """
        top_ulp_exp = max(self.bias, self.min_exponent) - self.mantissa_bits
        return 2.0 ** (self.bias + 1) - 2.0**top_ulp_exp

    @property
    def min_normal(self) -> float:
        """2**(1 - bias). (E == 1 formats have no normal numbers; this is still
        the bound below which results are flushed when subnormals=False.)"""
        return 2.0**self.min_exponent

    @property
    def min_subnormal(self) -> float:
        """Smallest positive subnormal of the encoding, 2**(1 - bias - M).

        For M == 0 the encoding has no nonzero subnormals and this equals
        `min_normal`. See `min_positive` for the value that `quantize` can
        produce given `subnormals`.
        """
        return 2.0 ** (self.min_exponent - self.mantissa_bits)

    @property
    def min_positive(self) -> float:
        """Smallest positive value `quantize` can return for this format."""
        if not self.subnormals:
            return self.min_normal if self.exponent_bits > 1 else math.inf
        return self.min_subnormal

    @property
    def epsilon(self) -> float:
        """Spacing of normal numbers relative to their binade: 2**-M."""
        return 2.0**-self.mantissa_bits

    # -- Text form. ------------------------------------------------------------

    def __str__(self) -> str:
        suffix = ("" if self.subnormals else "_nosub") + (
            "_sat" if self.overflow == "saturate" else ""
        )
        return f"e{self.exponent_bits}m{self.mantissa_bits}{suffix}"

    @classmethod
    def parse(cls, text: str) -> FloatFormat:
        """Parses "e5m10" (and the "_nosub" / "_sat" suffixes `str` writes).

        Also accepts the names "float32", "half"/"float16" and "bfloat16".
        """
        if isinstance(text, FloatFormat):
            return text
        if not isinstance(text, str):
            raise ValueError(f"cannot parse a FloatFormat from {text!r}")
        key = text.strip().lower()
        if key in _NAMED:
            return _NAMED[key]
        match = _FORMAT_RE.match(key)
        if not match:
            raise ValueError(
                f"cannot parse FloatFormat {text!r}: expected 'e<E>m<M>' such as "
                f"'e5m10', optionally with '_nosub'/'_sat', or one of {sorted(_NAMED)}"
            )
        suffixes = match.group(3)
        return cls(
            int(match.group(1)),
            int(match.group(2)),
            subnormals="_nosub" not in suffixes,
            overflow="saturate" if "_sat" in suffixes else "inf",
        )


FLOAT32 = FloatFormat(8, 23, name="float32")
HALF = FloatFormat(5, 10, name="half")
BFLOAT16 = FloatFormat(8, 7, name="bfloat16")
_NAMED = {
    "float32": FLOAT32,
    "single": FLOAT32,
    "half": HALF,
    "float16": HALF,
    "bfloat16": BFLOAT16,
}


def as_format(fmt: FloatFormat | str) -> FloatFormat:
    """Returns `fmt` as a FloatFormat (parsing strings such as "e4m3")."""
    return FloatFormat.parse(fmt)


def storage_bytes(num_values: int, fmt: FloatFormat | str) -> int:
    """Bytes needed to store `num_values` values packed at fmt.bits each.

    Args:
      num_values: a non-negative count of stored values.
      fmt: the number format.

    Returns:
      ceil(num_values * bits / 8).
    """
    if isinstance(num_values, bool) or not isinstance(num_values, (int, np.integer)):
        raise ValueError(f"num_values must be a non-negative int, got {num_values!r}")
    if num_values < 0:
        raise ValueError(f"num_values must be non-negative, got {num_values}")
    return -(-int(num_values) * as_format(fmt).bits // 8)


# -- The rounding primitive. ----------------------------------------------------


@dataclasses.dataclass(frozen=True)
class _Carrier:
    """A floating-point dtype whose bit patterns `quantize` manipulates."""

    dtype: Any
    uint: Any  # unsigned int of the same width
    exponent_bits: int
    mantissa_bits: int

    @property
    def bias(self) -> int:
        return 2 ** (self.exponent_bits - 1) - 1

    def fits(self, fmt: FloatFormat) -> bool:
        return (
            fmt.exponent_bits <= self.exponent_bits
            and fmt.mantissa_bits <= self.mantissa_bits
        )

    def encode(self, value: float) -> int:
        """Bit pattern (without sign) of a positive value exactly representable
        in the carrier, or of +Inf if value is inf."""
        if value == 0:
            return 0
        inf_bits = ((1 << self.exponent_bits) - 1) << self.mantissa_bits
        if math.isinf(value):
            return inf_bits
        mant, exp = math.frexp(value)  # value = mant * 2**exp, mant in [0.5, 1)
        e = exp - 1
        if e > self.bias:
            return inf_bits
        if e >= 1 - self.bias:  # normal
            frac = int((mant * 2 - 1) * 2**self.mantissa_bits)
            return ((e + self.bias) << self.mantissa_bits) | frac
        quantum = 2.0 ** (1 - self.bias - self.mantissa_bits)
        return int(value / quantum)


_CARRIERS = {
    np.dtype(jnp.float32): _Carrier(jnp.float32, jnp.uint32, 8, 23),
    np.dtype(jnp.float16): _Carrier(jnp.float16, jnp.uint16, 5, 10),
    np.dtype(jnp.bfloat16): _Carrier(jnp.bfloat16, jnp.uint16, 8, 7),
}


def _carrier_for(dtype: Any, fmt: FloatFormat) -> _Carrier:
    carrier = _CARRIERS.get(np.dtype(dtype))
    if carrier is None:
        raise ValueError(
            f"quantize needs a float32, float16 or bfloat16 input, got dtype {dtype}"
        )
    if not carrier.fits(fmt):
        raise ValueError(
            f"format {fmt} does not fit a {np.dtype(dtype).name} carrier (needs "
            f"E <= {carrier.exponent_bits} and M <= {carrier.mantissa_bits}); "
            "cast the input to float32 first"
        )
    return carrier


def _round_bits(x, rbits, fmt: FloatFormat, rounding: str, carrier: _Carrier):
    """Rounds x (carrier dtype) to fmt using integer ops on its bit pattern.

    The arithmetic runs in uint32/int32 whatever the carrier width, so one code
    path serves float32, float16 and bfloat16.

    Notation: `a` is |x|'s bit pattern, `sig` its significand (implicit bit
    included), so |x| = sig * 2**(e - cm) with e = max(ef, 1) - bias_c. The
    target's quantum at that magnitude is 2**(max(e, emin_t) - M), which is
    2**shift carrier quanta: rounding to the target is rounding an integer to a
    multiple of 2**shift, followed by the overflow, flush and NaN/Inf rules.
    """
    u32, i32 = jnp.uint32, jnp.int32
    cm = carrier.mantissa_bits
    width = np.dtype(carrier.uint).itemsize * 8
    sign_mask = 1 << (width - 1)
    inf_bits = carrier.encode(math.inf)
    # Target constants, encoded as carrier bit patterns (all exact, see _Carrier).
    emin_t = fmt.min_exponent
    overflow_bits = carrier.encode(2.0 ** (fmt.bias + 1))  # first value past range
    tiny_bits = carrier.encode(fmt.min_subnormal)
    max_finite_bits = carrier.encode(fmt.max_finite)
    min_normal_bits = carrier.encode(fmt.min_normal)

    bits = jax.lax.bitcast_convert_type(x, carrier.uint).astype(u32)
    sign = bits & u32(sign_mask)
    a = bits & u32(sign_mask - 1)
    is_nan = a > u32(inf_bits)
    is_inf = a == u32(inf_bits)

    if emin_t <= 1 - carrier.bias:
        # The target's exponent range covers the carrier's (e.g. e8m7 on float32):
        # one constant shift for every element, nothing below the target's
        # smallest quantum, so rounding `a` itself takes a few constant-mask ops.
        # A carry into the exponent field is exactly the move to the next binade.
        out = _round_fixed_shift(a, cm - fmt.mantissa_bits, rounding, rbits)
    elif carrier.mantissa_bits == 23 and rounding != "stochastic":
        # float32 carrier, target with a narrower exponent (E <= 7). Every value
        # of such a target is a float32 *normal*, so float arithmetic is exact
        # here despite XLA's flush-to-zero. Normal range: round `a` with the
        # constant shift, as above. Subnormal range (a uniform grid of quantum
        # q): k = round(|x| / q) with two exact power-of-two scalings around a
        # round-half-even (or floor). Float32-subnormal inputs are flushed to 0
        # by the scaling, which is also the right answer: they are far below q/2.
        # Constant shifts and no per-element variable shifts make this path
        # about twice as fast as the general one below.
        normal = _round_fixed_shift(a, cm - fmt.mantissa_bits, rounding, rbits)
        quantum = 2.0 ** (emin_t - fmt.mantissa_bits)
        scaled = jax.lax.bitcast_convert_type(a, jnp.float32) * np.float32(1 / quantum)
        if rounding == "nearest_even":
            k = jax.lax.round(scaled, jax.lax.RoundingMethod.TO_NEAREST_EVEN)
        else:
            k = jnp.floor(scaled)
        subnormal = jax.lax.bitcast_convert_type(k * np.float32(quantum), u32)
        out = jnp.where(a < u32(min_normal_bits), subnormal, normal)
    else:
        # Round the significand sig (implicit bit included) to a multiple of
        # 2**s, where s is the log2 ratio of the target's quantum to the
        # carrier's at this magnitude; a - sig + rounded re-encodes the result
        # (a carry to 2**(cm+1) is the next binade; 0 stays 0).
        ef = (a >> cm).astype(i32)
        e = jnp.maximum(ef, 1) - carrier.bias  # unbiased (carrier subnormals: emin)
        shift = (cm - fmt.mantissa_bits) + jnp.maximum(0, emin_t - e)
        sig = jnp.where(ef > 0, (a & u32((1 << cm) - 1)) | u32(1 << cm), a)
        if rounding == "stochastic":
            out = _stochastic_dynamic(a, sig, shift, rbits, cm, tiny_bits)
        else:
            # sig < 2**(cm+1), so any s >= cm + 2 rounds it to 0: clamp there.
            s = jnp.minimum(shift, cm + 2).astype(u32)
            low_mask = (u32(1) << s) - u32(1)
            if rounding == "nearest_even":
                # Ties to the even encoding. sig >> s ends in the target mantissa's
                # lsb, except for M == 0 in the normal range, where the lsb of the
                # encoding is the exponent's: then a >> s (= the carrier exponent
                # field; both biases are odd, so parities agree).
                kept = sig >> s
                if fmt.mantissa_bits == 0:
                    kept = jnp.where(e >= emin_t, a >> s, kept)
                half = (u32(1) << s) >> 1
                # Adding half - 1 + odd carries out of the low bits exactly when
                # they are above half, or at half with an odd kept part; the mask
                # makes s == 0 (nothing to round) add nothing.
                inc = (half - u32(1) + (kept & u32(1))) & low_mask
                rounded = (sig + inc) & ~low_mask
            else:
                rounded = sig & ~low_mask
            out = jnp.where(rounded == 0, u32(0), a - sig + rounded)

    if rounding == "nearest_even" and fmt.mantissa_bits == 0:
        # IEEE 754 §4.3.1: a magnitude of at least b^emax (b - ½ b^(1-p))
        # rounds to Inf. For M >= 1 that is the tie above max_finite, which the
        # even rule already sends up; for M == 0 (p = 1) it is 1.5 * 2**bias,
        # a tie the encoding-parity rule would send down to max_finite. (Exact
        # in the carrier: its exponent range covers the target's.)
        threshold = u32(carrier.encode(1.5 * 2.0**fmt.bias))
        out = jnp.where(a >= threshold, u32(inf_bits), out)
    if rounding == "toward_zero":
        # IEEE: round-toward-zero never overflows a finite value to Inf.
        out = jnp.minimum(out, u32(max_finite_bits))
    else:
        over = u32(max_finite_bits if fmt.overflow == "saturate" else inf_bits)
        out = jnp.where(out >= u32(overflow_bits), over, out)
    if not fmt.subnormals:
        out = jnp.where(out < u32(min_normal_bits), u32(0), out)

    quiet_nan = inf_bits | (1 << (cm - 1))
    out = jnp.where(is_nan, u32(quiet_nan), jnp.where(is_inf, a, out))
    return jax.lax.bitcast_convert_type((out | sign).astype(carrier.uint), x.dtype)


def _round_fixed_shift(a, s: int, rounding: str, rbits):
    """Rounds the bit patterns `a` to multiples of 2**s (the same s everywhere).

    Valid where the target's quantum is 2**s carrier quanta for every element
    rounded: a carry into the exponent field is exactly the move to the next
    binade. For nearest-even, a >> s ends in the target mantissa's lsb (for
    M == 0 the exponent's: both biases are odd, so parities agree).
    """
    u32 = jnp.uint32
    low_mask = u32((1 << s) - 1)
    if rounding == "nearest_even":
        odd = (a >> s) & u32(1)
        inc = (u32((1 << s) >> 1) - u32(1) + odd) & low_mask  # wraps if s == 0
        return (a + inc) & ~low_mask
    if rounding == "toward_zero":
        return a & ~low_mask
    return (a + (rbits & low_mask)) & ~low_mask


def _stochastic_dynamic(a, sig, shift, rbits, cm: int, tiny_bits: int):
    """Stochastic rounding when the target's quantum varies per element.

    Adds uniform noise below the kept bits and truncates. Below the target's
    smallest quantum q (shift > cm) the result is q with probability
    sig / 2**shift, else 0, decided with 32 random bits: exact for shift <= 32;
    beyond, that probability (< 2**(cm + 1 - 32)) is truncated to a multiple of
    2**-32.
    """
    u32 = jnp.uint32
    tiny = shift > cm
    s = jnp.minimum(shift, cm).astype(u32)
    low_mask = (u32(1) << s) - u32(1)
    main = (a + (rbits & low_mask)) & ~low_mask
    t = jnp.minimum(shift, 32).astype(u32)
    excess = jnp.clip(shift - 32, 0, 31).astype(u32)
    threshold = jnp.where(shift >= 32 + cm + 1, u32(0), sig >> excess)
    r = jnp.where(t >= 32, rbits, rbits & ((u32(1) << t) - u32(1)))
    return jnp.where(tiny, jnp.where(r < threshold, u32(tiny_bits), u32(0)), main)


def round_nearest(
    x: jax.Array, exponent_bits: jax.Array | int, mantissa_bits: jax.Array | int
) -> jax.Array:
    """`quantize(x, FloatFormat(E, M))` with E and M as runtime values.

    Round-to-nearest-even, IEEE overflow to ±Inf, subnormals kept: the default
    FloatFormat. E and M may be traced int32 scalars, so one compiled program
    rounds to every format of a grid (the format search evaluates dozens per
    bucket; `quantize` compiles one program per format). The values are the
    ones `quantize` gives, bit for bit (tests/test_precision.py checks every
    E in 1..8, M in 0..23). It runs the per-element variable-shift path of
    `_round_bits`, so it is slower per element than `quantize`'s fixed-shift
    paths; it is not differentiable (no straight-through gradient).

    Args:
      x: float32 array.
      exponent_bits: E in 1..8 (not checked when traced).
      mantissa_bits: M in 0..23 (not checked when traced).

    Returns:
      float32 array of x's shape.
    """
    x = jnp.asarray(x)
    if x.dtype != jnp.float32:
        raise ValueError(f"round_nearest needs a float32 input, got dtype {x.dtype}")
    for name, v, (lo, hi) in (
        ("exponent_bits", exponent_bits, EXPONENT_RANGE),
        ("mantissa_bits", mantissa_bits, MANTISSA_RANGE),
    ):
        if isinstance(v, (int, np.integer)) and not lo <= v <= hi:
            raise ValueError(f"{name}={v} is outside {lo}..{hi}")
    u32, i32 = jnp.uint32, jnp.int32
    e_bits = jnp.asarray(exponent_bits, i32)
    m_bits = jnp.asarray(mantissa_bits, i32)
    cm, inf_bits, sign_mask = 23, 0x7F800000, 0x80000000
    bias_t = (i32(1) << (e_bits - 1)) - 1
    emin_t = 1 - bias_t
    # 2**(bias_t + 1), the first value past the range (Inf for E == 8).
    overflow_bits = jnp.where(
        bias_t + 1 > 127, u32(inf_bits), ((bias_t + 128).astype(u32)) << u32(cm)
    )

    bits = jax.lax.bitcast_convert_type(x, u32)
    sign = bits & u32(sign_mask)
    a = bits & u32(sign_mask - 1)
    # As `_round_bits`'s general path, with the target's constants traced.
    ef = (a >> cm).astype(i32)
    e = jnp.maximum(ef, 1) - 127
    shift = (cm - m_bits) + jnp.maximum(0, emin_t - e)
    sig = jnp.where(ef > 0, (a & u32((1 << cm) - 1)) | u32(1 << cm), a)
    s = jnp.minimum(shift, cm + 2).astype(u32)
    low_mask = (u32(1) << s) - u32(1)
    kept = jnp.where((m_bits == 0) & (e >= emin_t), a >> s, sig >> s)
    half = (u32(1) << s) >> 1
    inc = (half - u32(1) + (kept & u32(1))) & low_mask
    rounded = (sig + inc) & ~low_mask
    out = jnp.where(rounded == 0, u32(0), a - sig + rounded)
    # IEEE's overflow threshold for M == 0, 1.5 * 2**bias (see `_round_bits`).
    threshold_bits = ((bias_t + 127).astype(u32) << u32(cm)) | u32(1 << (cm - 1))
    out = jnp.where((m_bits == 0) & (a >= threshold_bits), u32(inf_bits), out)
    out = jnp.where(out >= overflow_bits, u32(inf_bits), out)
    quiet_nan = inf_bits | (1 << (cm - 1))
    out = jnp.where(
        a > u32(inf_bits), u32(quiet_nan), jnp.where(a == u32(inf_bits), a, out)
    )
    return jax.lax.bitcast_convert_type(out | sign, jnp.float32)


@functools.partial(jax.custom_jvp, nondiff_argnums=(2, 3, 4))
def _quantize_ste(x, rbits, fmt, rounding, carrier):
    return _round_bits(x, rbits, fmt, rounding, carrier)


@_quantize_ste.defjvp
def _quantize_ste_jvp(fmt, rounding, carrier, primals, tangents):
    # Straight-through estimator: the rounding is treated as the identity.
    x, rbits = primals
    return _quantize_ste(x, rbits, fmt, rounding, carrier), tangents[0]


def quantize(
    x: jax.Array,
    fmt: FloatFormat | str,
    *,
    rounding: str = "nearest_even",
    key: jax.Array | None = None,
) -> jax.Array:
    """Rounds every element of `x` to a value of the format `fmt`.

    Works under jit, vmap and grad; the gradient is the straight-through
    identity. NaN stays NaN (returned as the carrier's quiet NaN with x's sign),
    ±Inf stays ±Inf and the sign of zero is kept.

    Args:
      x: float32 array (or float16/bfloat16 when fmt fits inside that dtype).
      fmt: the target format, or its text form such as "e4m3".
      rounding: "nearest_even" (IEEE default; ties to even), "toward_zero"
        (truncation; finite overflow gives ±max_finite, as in IEEE), or
        "stochastic" (rounds away from zero with probability equal to the
        distance to the lower-magnitude neighbour over the gap; needs `key`).
      key: a PRNG key, required for and only used by "stochastic".

    Returns:
      An array of x's shape and dtype holding values of `fmt`.
    """
    fmt = as_format(fmt)
    if rounding not in ROUNDINGS:
        raise ValueError(f"rounding={rounding!r} is not one of {', '.join(ROUNDINGS)}")
    x = jnp.asarray(x)
    carrier = _carrier_for(x.dtype, fmt)
    if rounding == "stochastic":
        if key is None:
            raise ValueError('rounding="stochastic" needs a PRNG key: pass key=...')
        rbits = jax.random.bits(key, x.shape, jnp.uint32)
    else:
        if key is not None:
            raise ValueError(
                f"key is only used by stochastic rounding, not {rounding!r}"
            )
        rbits = None
    return _quantize_ste(x, rbits, fmt, rounding, carrier)


# One compiled program per vector length for every default format.
_round_nearest_jit = jax.jit(round_nearest)


@functools.cache
def _quantize_jit(fmt: FloatFormat) -> Any:
    return jax.jit(functools.partial(quantize, fmt=fmt))


def quantize_tree(tree: Any, fmt: FloatFormat | str | None) -> Any:
    """Every floating-point leaf of `tree` rounded to `fmt` (None: unchanged).

    The leaves are gathered into one float32 vector on the host, padded to a
    power of two (at least 1024), rounded by one jitted program and split
    back (each leaf keeps its dtype). A default-kind format goes through
    `round_nearest` with E and M as runtime values, so one compiled program
    per vector length serves every format and every network of a search;
    other formats compile `quantize` once each. Nothing else is compiled
    (eager slicing on the device would compile a program per leaf shape).

    Returns:
      A tree of numpy arrays with the structure of `tree`.
    """
    if fmt is None:
        return tree
    fmt = as_format(fmt)
    leaves, treedef = jax.tree.flatten(jax.device_get(tree))
    leaves = [np.asarray(leaf) for leaf in leaves]
    n = sum(leaf.size for leaf in leaves)
    flat = np.zeros(1 << max(10, (n - 1).bit_length()), np.float32)
    if n:
        flat[:n] = np.concatenate([leaf.ravel() for leaf in leaves])
    if fmt == FloatFormat(fmt.exponent_bits, fmt.mantissa_bits):
        e, m = np.int32(fmt.exponent_bits), np.int32(fmt.mantissa_bits)
        rounded = np.asarray(_round_nearest_jit(flat, e, m))
    else:
        rounded = np.asarray(_quantize_jit(fmt)(flat))
    out, start = [], 0
    for leaf in leaves:
        part = rounded[start : start + leaf.size].reshape(leaf.shape)
        out.append(part.astype(leaf.dtype))
        start += leaf.size
    return jax.tree.unflatten(treedef, out)
