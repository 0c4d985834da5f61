"""Values in a ⟨E, M⟩ format as codes, and codes bit-packed at E + M + 1 bits.

A deployed model stores each weight in its format's own width, so its blob is
exactly ``precision.storage_bytes(n, fmt)`` bytes, the memory the search
counted. Code layout (IEEE-754 style, as `jnas.precision` rounds): sign bit on
top, then E exponent bits (bias 2**(E-1) - 1; field 0 = zero / subnormals,
all ones = inf / NaN), then M fraction bits. Packing is little-endian by bit:
value i occupies bits i*b .. i*b + b - 1 of the stream, bit 0 being the least
significant bit of byte 0 (the order the C runtime's decoder reads).
"""

from __future__ import annotations

import numpy as np

from jnas import precision


def encode(values: np.ndarray, fmt: precision.FloatFormat | str) -> np.ndarray:
    """The codes (uint32) of values that are exactly representable in ``fmt``.

    Raises:
      ValueError: a value is not representable (it was not rounded to
        ``fmt``), naming the first one.
    """
    fmt = precision.as_format(fmt)
    x = np.asarray(values, np.float32).astype(np.float64).ravel()
    e_bits, m_bits, bias = fmt.exponent_bits, fmt.mantissa_bits, fmt.bias
    sign = np.signbit(x).astype(np.uint32) << (e_bits + m_bits)
    a = np.abs(x)
    top = (1 << e_bits) - 1
    exp = np.zeros(a.shape, np.int64)
    frac = np.zeros(a.shape, np.float64)
    finite = np.isfinite(a) & (a > 0)
    mant, ex = np.frexp(a[finite])  # a = mant * 2**ex, mant in [0.5, 1)
    e = ex - 1  # a = (2 mant) * 2**e, 2 mant in [1, 2)
    normal = e >= 1 - bias
    f = np.where(
        normal, (2 * mant - 1) * 2.0**m_bits, a[finite] * 2.0 ** (bias - 1 + m_bits)
    )
    exp[finite] = np.where(normal, e + bias, 0)
    frac[finite] = f
    exp[np.isinf(a)] = top
    nan = np.isnan(a)
    exp[nan] = top
    frac[nan] = 1 << max(m_bits - 1, 0) if m_bits else 0
    bad = (frac != np.floor(frac)) | (exp > top) | ((exp == top) & ~np.isinf(a) & ~nan)
    bad |= nan & (m_bits == 0)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(
            f"value {float(x[i])!r} (index {i}) is not representable in {fmt}; round "
            "the values to the format first (precision.quantize)"
        )
    codes = (exp.astype(np.uint32) << m_bits) | frac.astype(np.uint32)
    return sign | codes


def decode(codes: np.ndarray, fmt: precision.FloatFormat | str) -> np.ndarray:
    """float32 values of ``codes`` (the inverse of `encode`)."""
    fmt = precision.as_format(fmt)
    c = np.asarray(codes, np.uint32).astype(np.int64)
    e_bits, m_bits, bias = fmt.exponent_bits, fmt.mantissa_bits, fmt.bias
    sign = np.where((c >> (e_bits + m_bits)) & 1, -1.0, 1.0)
    exp = (c >> m_bits) & ((1 << e_bits) - 1)
    frac = (c & ((1 << m_bits) - 1)).astype(np.float64)
    top = (1 << e_bits) - 1
    value = np.where(
        exp == 0,
        frac * 2.0 ** (1 - bias - m_bits),
        (1 + frac * 2.0**-m_bits) * 2.0 ** (exp - bias).astype(np.float64),
    )
    value = np.where(exp == top, np.where(frac == 0, np.inf, np.nan), value)
    return (sign * value).astype(np.float32)


def pack(codes: np.ndarray, bits: int) -> bytes:
    """``codes`` bit-packed at ``bits`` each: ceil(n * bits / 8) bytes."""
    c = np.asarray(codes, np.uint32).ravel()
    if c.size and int(c.max()) >> bits:
        raise ValueError(f"a code does not fit {bits} bits: {int(c.max())}")
    planes = (c[:, None] >> np.arange(bits, dtype=np.uint32)) & 1
    return np.packbits(planes.astype(np.uint8).ravel(), bitorder="little").tobytes()


def unpack(blob: bytes, count: int, bits: int) -> np.ndarray:
    """The first ``count`` codes of a `pack` stream (uint32)."""
    stream = np.unpackbits(np.frombuffer(blob, np.uint8), bitorder="little")
    if stream.size < count * bits:
        raise ValueError(
            f"{len(blob)} bytes hold fewer than {count} codes of {bits} bits"
        )
    planes = stream[: count * bits].reshape(count, bits).astype(np.uint32)
    return (planes << np.arange(bits, dtype=np.uint32)).sum(axis=1, dtype=np.uint32)
