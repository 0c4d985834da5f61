"""jnas.precision checked bit-for-bit against an independent enumerating oracle.

``float_oracle`` (this directory) knows a format only through its encodings
and rounds by binary search in the sorted table of representable values,
deciding ties and overflow with exact integer/Fraction arithmetic.  Here we
feed ``jax.jit(quantize)`` every interesting float32 for every format with at
most 12 bits -- each representable value, each midpoint between neighbours,
those +-1 and +-2 float32 ulps, the subnormal/normal boundary, the overflow
threshold, huge and tiny values, +-0, +-Inf, NaN and random bit patterns, all
with both signs -- and require identical float32 bit patterns.

The conventions the oracle encodes are spelled out in its module docstring;
the one that IEEE-754 leaves open is the tie rule for M = 0 formats (no
mantissa bits), where the oracle breaks ties toward the even *encoding*
(even exponent field), as rounding the bit pattern does, except for the tie
at IEEE's overflow threshold 1.5 * 2**bias, which is Inf (IEEE 754 4.3.1).
"""

from __future__ import annotations

import functools
import math
from fractions import Fraction

import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np
import pytest

try:  # tests/ is put on sys.path by pytest's default (prepend) import mode
    import float_oracle as fo
except ImportError:  # pragma: no cover - if tests/ becomes a package
    from tests import float_oracle as fo

from jnas.precision import FloatFormat, quantize

SIGN = np.uint32(0x80000000)

# Every format with 1 + E + M <= 12 bits: E in 1..8, M in 0..11-E (60 formats).
SMALL_FORMATS = [(E, M) for E in range(1, 9) for M in range(0, 12 - E)]
CONFIGS = [
    (rounding, subnormals, overflow)
    for rounding in fo.ROUNDINGS
    for subnormals in (True, False)
    for overflow in fo.OVERFLOWS
]


def _fmt_id(em):
    return f"e{em[0]}m{em[1]}"


# ---------------------------------------------------------------------------
# Input construction (all by float32 bit-pattern arithmetic, no float math).
# ---------------------------------------------------------------------------


def _f32_bits(q: Fraction) -> int | None:
    """Bits of the float32 equal to q >= 0, or None if q is not a float32."""
    b, exact = fo.fraction_to_f32_bits_floor(q)
    return b if exact else None


def _around(bits, deltas=(-2, -1, 0, 1, 2)):
    bits = np.asarray(bits, dtype=np.int64)
    return np.concatenate([bits + d for d in deltas])


@functools.cache
def edge_inputs(E: int, M: int, n_random: int = 20_000) -> np.ndarray:
    """float32 inputs (as uint32 bits) that probe every rounding boundary."""
    t = fo.format_table(E, M)
    ex = t.extremes
    pieces = [t.bits.astype(np.int64)]
    # every midpoint: the largest float32 <= mid (== mid when exact) and next
    pieces.append(np.array([fo.fraction_to_f32_bits_floor(m)[0] for m in t.midpoints]))
    pieces.append(t.up_threshold)  # smallest bit pattern that rounds up
    specials = [
        ex["min_normal"],  # the subnormal/normal boundary (2.0 for E = 1)
        ex["min_subnormal"],
        ex["min_subnormal"] / 2,
        ex["min_subnormal"] / 4,
        ex["min_subnormal"] / 8,
        ex["min_subnormal"] * 3 / 4,
        ex["max_finite"],
        (ex["max_finite"] + ex["overflow_value"]) / 2,  # the overflow threshold
        ex["overflow_value"],  # 2**(bias+1); not a float32 for E = 8
        ex["overflow_value"] * 2,
        ex["overflow_value"] * 1024,
        Fraction(1),
        Fraction(3, 2),
        Fraction(2) ** -149,  # smallest float32 subnormal
        Fraction(2) ** -140,
        Fraction(2) ** -126,
        Fraction(2) ** -127,
    ]
    pieces.append(np.array([b for q in specials if (b := _f32_bits(q)) is not None]))
    pieces.append(np.array([0x7F7FFFFF, 0x7F000000, 0x00000001, 0x007FFFFF]))
    cand = _around(np.concatenate(pieces))
    rng = np.random.default_rng(1000 * E + M)
    # random bit patterns anywhere ...
    rand_any = rng.integers(0, 2**31, n_random // 2, dtype=np.int64)
    # ... and random float32 whose exponent lies in (or just around) the range
    lo_e = max(-149, int(math.floor(math.log2(ex["min_subnormal"]))) - 3)
    hi_e = min(127, 2 ** (E - 1) + 2)  # bias + 3
    e = rng.integers(lo_e, hi_e + 1, n_random // 2)
    mant = rng.integers(0, 2**23, n_random // 2)
    biased = np.clip(e + 127, 0, 254)
    rand_range = (biased << 23) | np.where(
        biased == 0, mant >> np.clip(-126 - e, 0, 23), mant
    )
    cand = np.concatenate([cand, rand_any, rand_range])
    cand = cand[(cand >= 0) & (cand < 0x7F800000)]
    special = np.array([0, 0x7F800000, 0x7FC00000, 0x7F800001, 0x7FFFFFFF])
    mags = np.unique(np.concatenate([cand, special])).astype(np.uint32)
    return np.concatenate([mags, mags | SIGN])


# ---------------------------------------------------------------------------
# Running jnas (one compilation per format, all eight configurations inside).
# ---------------------------------------------------------------------------


@functools.cache
def _jitted_all_configs(E: int, M: int):
    fmts = [
        (r, s, o, FloatFormat(E, M, subnormals=s, overflow=o)) for r, s, o in CONFIGS
    ]

    @jax.jit
    def run(x):
        return tuple(quantize(x, fmt, rounding=r) for r, s, o, fmt in fmts)

    return run


def jnas_all_configs(E: int, M: int, x: np.ndarray) -> dict:
    outs = _jitted_all_configs(E, M)(jnp.asarray(x))
    res = {}
    for cfg, out in zip(CONFIGS, outs, strict=True):
        assert out.dtype == x.dtype, (cfg, out.dtype, x.dtype)
        assert out.shape == x.shape
        res[cfg] = np.asarray(out)
    return res


def _show(b, dtype=np.float32):
    b = int(b)
    v = np.array([b], dtype=np.uint32 if dtype == np.float32 else np.uint16)
    return f"0x{b:08x}({v.view(dtype)[0]!r})"


def compare_bits(x_bits, got_bits, want_bits, label, dtype=np.float32):
    """Exact bit equality; NaN positions compared by isnan only."""
    x_bits, got_bits, want_bits = map(np.asarray, (x_bits, got_bits, want_bits))
    got_nan = np.isnan(got_bits.view(dtype))
    want_nan = np.isnan(want_bits.view(dtype))
    bad = (got_nan != want_nan) | (~want_nan & (got_bits != want_bits))
    if bad.any():
        idx = np.flatnonzero(bad)
        lines = [
            f"  x={_show(x_bits[i], dtype)} got={_show(got_bits[i], dtype)} "
            f"want={_show(want_bits[i], dtype)}"
            for i in idx[:12]
        ]
        raise AssertionError(
            f"{label}: {idx.size}/{bad.size} mismatches, first ones:\n"
            + "\n".join(lines)
        )


def check_format_against(E, M, results_by_config, x_bits):
    """Compare a {config: output bits} dict to the oracle, all configs."""
    failures = []
    for cfg in CONFIGS:
        r, s, o = cfg
        want = fo.round_by_search(x_bits, E, M, r, s, o)
        try:
            compare_bits(
                x_bits,
                results_by_config[cfg],
                want,
                f"e{E}m{M} rounding={r} subnormals={s} overflow={o}",
            )
        except AssertionError as err:
            failures.append(str(err))
    if failures:
        raise AssertionError("\n".join(failures))


# ---------------------------------------------------------------------------
# The exhaustive per-format test.
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("em", SMALL_FORMATS, ids=_fmt_id)
def test_quantize_matches_oracle(em):
    E, M = em
    x_bits = edge_inputs(E, M)
    x = x_bits.view(np.float32)
    got = jnas_all_configs(E, M, x)
    check_format_against(E, M, {k: v.view(np.uint32) for k, v in got.items()}, x_bits)


def test_static_arg_jit_and_eager_agree_with_oracle():
    """The public call pattern jax.jit(quantize, static fmt/rounding), and
    eager (un-jitted) calls, on a format whose subnormals are float32
    subnormals (e8m3: min_subnormal = 2**-129)."""
    E, M = 8, 3
    x_bits = edge_inputs(E, M, n_random=2000)
    x = x_bits.view(np.float32)
    jq = jax.jit(quantize, static_argnums=(1,), static_argnames=("rounding",))
    for r, s, o in [("nearest_even", True, "inf"), ("toward_zero", False, "saturate")]:
        fmt = FloatFormat(E, M, subnormals=s, overflow=o)
        want = fo.round_by_search(x_bits, E, M, r, s, o)
        got = np.asarray(jq(jnp.asarray(x), fmt, rounding=r))
        compare_bits(x_bits, got.view(np.uint32), want, f"jit e{E}m{M} {r} {s} {o}")
        got = np.asarray(quantize(jnp.asarray(x), fmt, rounding=r))
        compare_bits(x_bits, got.view(np.uint32), want, f"eager e{E}m{M} {r} {s} {o}")


def test_default_rounding_is_nearest_even():
    E, M = 4, 3
    x_bits = edge_inputs(E, M, n_random=2000)
    got = np.asarray(quantize(jnp.asarray(x_bits.view(np.float32)), FloatFormat(E, M)))
    compare_bits(
        x_bits,
        got.view(np.uint32),
        fo.round_by_search(x_bits, E, M, "nearest_even", True, "inf"),
        "default rounding",
    )


# Carriers other than float32: every bit pattern of the carrier, for formats
# that fit in it (all of their values are carrier values).
CARRIER_CASES = [
    ("float16", jnp.float16, np.float16, em)
    for em in [(5, 10), (5, 2), (5, 0), (4, 3), (3, 4), (2, 1), (1, 3), (1, 0)]
] + [
    ("bfloat16", jnp.bfloat16, ml_dtypes.bfloat16, em)
    for em in [(8, 7), (8, 3), (8, 0), (5, 2), (4, 3), (1, 2)]
]


@pytest.mark.parametrize(
    "carrier,jdt,ndt,em",
    CARRIER_CASES,
    ids=[f"{c[0]}-{_fmt_id(c[3])}" for c in CARRIER_CASES],
)
def test_quantize_other_carriers_exhaustive(carrier, jdt, ndt, em):
    E, M = em
    x16 = np.arange(2**16, dtype=np.uint32).astype(np.uint16)
    x = x16.view(ndt)
    x32_bits = fo.carrier_bits_to_f32_bits(x16, carrier)
    outs = _jitted_all_configs(E, M)(jnp.asarray(x, dtype=jdt))
    failures = []
    for cfg, out in zip(CONFIGS, outs, strict=True):
        assert out.dtype == jdt, (cfg, out.dtype)
        want32 = fo.round_by_search(x32_bits, E, M, *cfg)
        want16 = fo.f32_bits_to_carrier_bits(want32, carrier)
        try:
            compare_bits(
                x16,
                np.asarray(out).view(np.uint16),
                want16,
                f"{carrier} e{E}m{M} {cfg}",
                dtype=ndt,
            )
        except AssertionError as err:
            failures.append(str(err))
    assert not failures, "\n".join(failures)


# ---------------------------------------------------------------------------
# Stochastic rounding.
# ---------------------------------------------------------------------------

N_SAMPLES = 200_000


def _stochastic_inputs(E, M):
    """Exact inputs (Fractions) probing normal, subnormal, sub-min_subnormal
    and exactly representable values, both signs."""
    ex = fo.extremes(E, M)
    ms, mn, mx = ex["min_subnormal"], ex["min_normal"], ex["max_finite"]
    qs = [
        ms * Fraction(3, 10),  # below min_subnormal: {0, min_subnormal}
        ms / 32,  # far below: P(up) = 1/32
        ms * Fraction(1, 2),  # exact midpoint of 0 and min_subnormal
        ms,  # exactly representable
        Fraction(0),
    ]
    if M >= 2:
        qs.append(ms * Fraction(27, 10))  # inside the subnormal range
    if E >= 2:
        qs += [
            mn,  # exactly representable
            mn * (1 + Fraction(1, 2 ** (M + 2))),  # a quarter ulp above min_normal
            mn - ms * Fraction(1, 3),  # just below min_normal
            mx * Fraction(7, 8) + ex["epsilon"] * mx * Fraction(1, 10),
            mx,  # exactly representable
        ]
        if 1 >= mn and 1 <= mx:
            qs += [Fraction(1), 1 + ex["epsilon"] * Fraction(7, 10)]
    out = []
    for q in qs:
        b, exact = fo.fraction_to_f32_bits_floor(q)  # nearest float32 below
        out += [b, b | 0x80000000]
    return np.unique(np.array(out, dtype=np.uint32))


STOCHASTIC_FORMATS = [(5, 2), (4, 3), (2, 1), (3, 0), (1, 2), (8, 3), (8, 7), (5, 10)]


@pytest.mark.parametrize("em", STOCHASTIC_FORMATS, ids=_fmt_id)
def test_stochastic_rounding_neighbours_and_mean(em):
    E, M = em
    fmt = FloatFormat(E, M)
    x_bits = _stochastic_inputs(E, M)
    x = np.repeat(x_bits.view(np.float32)[:, None], N_SAMPLES, axis=1)
    key = jax.random.key(E * 100 + M)
    f = jax.jit(lambda x, k: quantize(x, fmt, rounding="stochastic", key=k))
    out = np.asarray(f(jnp.asarray(x), key))
    assert out.dtype == np.float32 and out.shape == x.shape
    out_bits = out.view(np.uint32)
    for row, xb in enumerate(x_bits):
        lo, hi, p = fo.stochastic_neighbours(int(xb), E, M)
        assert (hi & 0x7FFFFFFF) != 0x7F800000  # no overflow inputs here
        samples = out_bits[row]
        allowed = {lo, hi}
        seen = set(np.unique(samples).tolist())
        label = f"e{E}m{M} x={_show(xb)} neighbours={_show(lo)},{_show(hi)}"
        assert seen <= allowed, (
            f"{label}: got values {[_show(s) for s in seen - allowed]}"
        )
        if lo == hi:
            continue  # exactly representable: only itself (checked above)
        n_hi = int(np.count_nonzero(samples == hi))
        # The empirical mean is lo + (hi - lo) * n_hi / N.  Each sample is hi
        # with probability p, so n_hi ~ Binomial(N, p) and the mean has
        # standard error |hi - lo| * sqrt(p (1 - p) / N).  We allow 5 standard
        # errors (false-alarm rate ~6e-7 per input; seeds are fixed anyway),
        # plus 2**-20 relative slack in p for implementations whose random
        # draw has finitely many bits.
        lo_v = fo.f32_bits_to_fraction(lo)
        hi_v = fo.f32_bits_to_fraction(hi)
        x_v = fo.f32_bits_to_fraction(int(xb))
        mean = lo_v + (hi_v - lo_v) * Fraction(n_hi, N_SAMPLES)
        se = abs(float(hi_v - lo_v)) * math.sqrt(float(p * (1 - p)) / N_SAMPLES)
        tol = 5 * se + abs(float(hi_v - lo_v)) * 2.0**-20
        err = abs(float(mean - x_v))
        assert err <= tol, (
            f"{label}: P(up)={float(p):.6g}, observed {n_hi / N_SAMPLES:.6g}; "
            f"|mean - x| = {err:.3g} > tol {tol:.3g}"
        )


@pytest.mark.parametrize("em", [(5, 2), (3, 1), (1, 2), (2, 0)], ids=_fmt_id)
def test_stochastic_rounding_flush_and_overflow(em):
    """Neighbour sets with subnormals=False and across the overflow point:
    subnormal results flush to a signed zero; between max_finite and
    2**(bias+1) the candidates are max_finite and Inf ('inf') or only
    max_finite ('saturate'); at or beyond 2**(bias+1): Inf / max_finite."""
    E, M = em
    ex = fo.extremes(E, M)
    ms, mn, mx, ov = (
        ex[k] for k in ("min_subnormal", "min_normal", "max_finite", "overflow_value")
    )
    key = jax.random.key(7)
    n = 20_000
    cases = []  # (x, subnormals, overflow, allowed set of magnitudes)
    mxb = fo.fraction_to_f32_bits(mx)
    for ovf in fo.OVERFLOWS:
        top = {mxb, 0x7F800000} if ovf == "inf" else {mxb}
        beyond = {0x7F800000} if ovf == "inf" else {mxb}
        cases.append(((mx + ov) / 2 + (ov - mx) / 8, True, ovf, top))
        cases.append((ov * 2, True, ovf, beyond))
        if E >= 2:
            # with subnormals=False a value in the subnormal range gives 0 or,
            # for the top subnormal interval, possibly min_normal
            mnb = fo.fraction_to_f32_bits(mn)
            # below min_subnormal: neighbours 0 and min_subnormal, which
            # flushes, except for M = 0 where min_subnormal == min_normal
            cases.append((ms * Fraction(3, 10), False, ovf, {0} if M else {0, mnb}))
            cases.append((mn - ms * Fraction(1, 3), False, ovf, {0, mnb}))
        else:
            cases.append((ms * Fraction(3, 10), False, ovf, {0}))  # E=1: no normals
    for q, sub, ovf, allowed in cases:
        b, _ = fo.fraction_to_f32_bits_floor(q)
        fmt = FloatFormat(E, M, subnormals=sub, overflow=ovf)
        for sign in (0, 0x80000000):
            x = np.full(n, b | sign, dtype=np.uint32).view(np.float32)
            out = np.asarray(
                quantize(jnp.asarray(x), fmt, rounding="stochastic", key=key)
            )
            seen = set(np.unique(out.view(np.uint32)).tolist())
            want = {a | sign for a in allowed}
            assert seen <= want, (
                f"e{E}m{M} subnormals={sub} overflow={ovf} x={_show(b | sign)}: "
                f"got {[_show(s) for s in seen - want]}, "
                f"allowed {[_show(a) for a in want]}"
            )


def test_stochastic_keys_matter_and_deterministic():
    fmt = FloatFormat(4, 3)
    x = jnp.full((4096,), 1.0 + 1.0 / 32, dtype=jnp.float32)  # a quarter ulp above 1
    a = np.asarray(quantize(x, fmt, rounding="stochastic", key=jax.random.key(0)))
    b = np.asarray(quantize(x, fmt, rounding="stochastic", key=jax.random.key(0)))
    c = np.asarray(quantize(x, fmt, rounding="stochastic", key=jax.random.key(1)))
    assert np.array_equal(a.view(np.uint32), b.view(np.uint32))
    assert not np.array_equal(a.view(np.uint32), c.view(np.uint32))


# ---------------------------------------------------------------------------
# Format properties.
# ---------------------------------------------------------------------------

PROPERTY_FORMATS = SMALL_FORMATS + [(5, 10), (8, 7), (8, 23)]


def _exact(v) -> Fraction:
    return Fraction(float(v))


@pytest.mark.parametrize("em", PROPERTY_FORMATS, ids=_fmt_id)
def test_properties_match_encoding(em):
    E, M = em
    ex = fo.extremes(E, M)
    for sub in (True, False):
        for ovf in fo.OVERFLOWS:
            fmt = FloatFormat(E, M, subnormals=sub, overflow=ovf)
            assert fmt.bits == 1 + E + M
            assert _exact(fmt.max_finite) == ex["max_finite"], (sub, ovf)
            assert _exact(fmt.min_normal) == ex["min_normal"], (sub, ovf)
            assert _exact(fmt.min_subnormal) == ex["min_subnormal"], (sub, ovf)
            assert _exact(fmt.epsilon) == ex["epsilon"], (sub, ovf)
    if (2**E - 1) << M <= 1 << 17:
        # the oracle's closed forms agree with its own enumeration
        vals = fo.representable_fractions(E, M)
        pos = [v for v in vals if v > 0]
        assert max(vals) == ex["max_finite"]
        if M > 0:
            assert min(pos) == ex["min_subnormal"]  # field 0, mantissa 1
        elif E >= 2:
            assert min(pos) == ex["min_normal"] == ex["min_subnormal"]
        else:
            assert pos == []  # e1m0 is {0} only
        if E >= 2:
            assert min(v for v in pos if v >= ex["min_normal"]) == ex["min_normal"]
            assert ex["min_normal"] in vals
            # epsilon: gap between 1 and the next value (1 is a value if E >= 2)
            if 1 in vals:
                i = vals.index(1)
                assert vals[i + 1] - 1 == ex["epsilon"]
        assert len(set(vals)) == len(vals) == 2 * len(pos) + 1


@pytest.mark.parametrize(
    "em,info",
    [
        ((5, 10), np.finfo(np.float16)),
        ((8, 23), np.finfo(np.float32)),
        ((8, 7), ml_dtypes.finfo(ml_dtypes.bfloat16)),
        ((5, 2), ml_dtypes.finfo(ml_dtypes.float8_e5m2)),
        ((4, 3), ml_dtypes.finfo(ml_dtypes.float8_e4m3)),
        ((3, 4), ml_dtypes.finfo(ml_dtypes.float8_e3m4)),
    ],
    ids=["float16", "float32", "bfloat16", "e5m2", "e4m3", "e3m4"],
)
def test_properties_match_finfo(em, info):
    E, M = em
    fmt = FloatFormat(E, M)
    assert fmt.bits == info.bits
    assert _exact(fmt.max_finite) == _exact(info.max)
    assert _exact(fmt.min_normal) == _exact(info.smallest_normal)
    assert _exact(fmt.min_subnormal) == _exact(info.smallest_subnormal)
    assert _exact(fmt.epsilon) == _exact(info.eps)
    ex = fo.extremes(E, M)
    assert ex["max_finite"] == _exact(info.max)
    assert ex["min_subnormal"] == _exact(info.smallest_subnormal)


def test_format_validation_and_hashing():
    for E, M in [(0, 3), (9, 3), (4, -1), (4, 24), (-1, 0)]:
        with pytest.raises(ValueError):
            FloatFormat(E, M)
    for E, M in [(1, 0), (8, 23), (1, 23), (8, 0)]:
        FloatFormat(E, M)  # the extremes of the valid range are accepted
    a, b = FloatFormat(4, 3), FloatFormat(4, 3)
    assert a == b and hash(a) == hash(b)
    assert a != FloatFormat(4, 3, subnormals=False)
    assert a != FloatFormat(4, 3, overflow="saturate")
    assert len({a, b, FloatFormat(3, 4)}) == 2
    with pytest.raises((AttributeError, TypeError)):  # dataclass FrozenInstanceError
        a.mantissa_bits = 5  # frozen


# ---------------------------------------------------------------------------
# The oracle itself, against independent conversions (numpy float16 and the
# IEEE-style ml_dtypes float8 types and bfloat16; all round to nearest even
# and overflow to Inf).
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "em,dtype",
    [
        ((5, 2), ml_dtypes.float8_e5m2),
        ((4, 3), ml_dtypes.float8_e4m3),
        ((3, 4), ml_dtypes.float8_e3m4),
        ((5, 10), np.float16),
        ((8, 7), ml_dtypes.bfloat16),
    ],
    ids=["e5m2", "e4m3", "e3m4", "float16", "bfloat16"],
)
def test_oracle_agrees_with_reference_casts(em, dtype):
    E, M = em
    x_bits = edge_inputs(E, M, n_random=4000)
    x = x_bits.view(np.float32)
    with np.errstate(over="ignore", invalid="ignore"):
        ref = x.astype(dtype).astype(np.float32).view(np.uint32)
    compare_bits(x_bits, ref, fo.round_by_search(x_bits, E, M), f"oracle vs {dtype}")
