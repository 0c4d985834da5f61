/* jnas portable C99 runtime: runs one exported network (jnas.export).
 *
 * Compile together with the generated model header:
 *     cc -std=c99 -O2 -DJNAS_MODEL='"model.h"' jnas_runtime.c main.c -lm
 *
 * Weights stay bit-packed at E + M + 1 bits each (the blob in model.h is
 * exactly the memory the search counted) and are decoded on the fly, one
 * layer at a time, into a static scratch buffer of JNAS_SCRATCH_FLOATS (the
 * largest layer's values): decoding all of them once at start-up would need
 * 4 bytes of RAM per weight, which is what a narrow format was chosen to
 * save, and decoding at every multiply made the inner loops ~20x slower.
 * Activations are float32 in one static arena of JNAS_ARENA_FLOATS floats,
 * with offsets planned offline (jnas.export.plan); nothing is allocated at
 * run time.
 * Tensors are HWC (channels last); flatten emits CHW order (PyTorch's).
 */
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "jnas_runtime.h"
#include JNAS_MODEL

static float jnas_arena[JNAS_ARENA_FLOATS];

static float jnas_scratch[JNAS_SCRATCH_FLOATS];
static float jnas_acc[JNAS_MAX_CHANNELS];

/* IEEE-style <E, M> code -> float (exact: every such value is a float). */
static float jnas_value(uint32_t code) {
  const uint32_t frac = code & ((1u << JNAS_M) - 1);
  const uint32_t exp = (code >> JNAS_M) & ((1u << JNAS_E) - 1);
  const int bias = (1 << (JNAS_E - 1)) - 1;
  float value;
  if (exp == 0) {
    value = ldexpf((float)frac, 1 - bias - JNAS_M);
  } else if (exp == (1u << JNAS_E) - 1) {
    value = frac ? NAN : INFINITY;
  } else {
    uint32_t bits = ((exp - bias + 127u) << 23) | (frac << (23 - JNAS_M));
    memcpy(&value, &bits, sizeof value);
  }
  return ((code >> (JNAS_E + JNAS_M)) & 1u) ? -value : value;
}

/* Decodes stored values first .. first + count - 1 into jnas_scratch. The
 * packed stream is little-endian by bit: value i is bits i*B .. i*B + B - 1. */
static const float *jnas_decode(long first, long count) {
  uint64_t bit = (uint64_t)first * JNAS_BITS, buffer = 0;
  size_t byte = (size_t)(bit >> 3);
  unsigned have = 0;
  const uint64_t mask = (((uint64_t)1) << JNAS_BITS) - 1;
  long i;
  while (have < (unsigned)(bit & 7) + JNAS_BITS && byte < sizeof(jnas_weights)) {
    buffer |= (uint64_t)jnas_weights[byte++] << have;
    have += 8;
  }
  buffer >>= bit & 7;
  have -= (unsigned)(bit & 7);
  for (i = 0; i < count; i++) {
    while (have < JNAS_BITS && byte < sizeof(jnas_weights)) {
      buffer |= (uint64_t)jnas_weights[byte++] << have;
      have += 8;
    }
    jnas_scratch[i] = jnas_value((uint32_t)(buffer & mask));
    buffer >>= JNAS_BITS;
    have -= JNAS_BITS;
  }
  return jnas_scratch;
}

static void conv(const jnas_op *op) {
  const float *in = jnas_arena + jnas_inputs[op->in];
  float *out = jnas_arena + op->out;
  const int cin_g = op->c / op->groups, cout_g = op->oc / op->groups;
  const long nw = (long)op->kh * op->kw * cin_g * op->oc;
  const float *w = jnas_decode(op->wofs, nw + (op->has_bias ? op->oc : 0));
  int oy, ox, co, ky, kx, ci, g;
  for (oy = 0; oy < op->oh; oy++) {
    for (ox = 0; ox < op->ow; ox++) {
      for (co = 0; co < op->oc; co++) jnas_acc[co] = op->has_bias ? w[nw + co] : 0.0f;
      for (ky = 0; ky < op->kh; ky++) {
        const int iy = oy * op->sh - op->ph + ky;
        if (iy < 0 || iy >= op->h) continue;
        for (kx = 0; kx < op->kw; kx++) {
          const int ix = ox * op->sw - op->pw + kx;
          const float *x;
          if (ix < 0 || ix >= op->w) continue;
          x = in + ((long)iy * op->w + ix) * op->c;
          for (g = 0; g < op->groups; g++) {
            for (ci = 0; ci < cin_g; ci++) {
              /* kernel layout (kh, kw, C_in / groups, C_out) */
              const float xv = x[g * cin_g + ci];
              const float *row = w + ((long)(ky * op->kw + kx) * cin_g + ci) * op->oc;
              for (co = g * cout_g; co < (g + 1) * cout_g; co++) jnas_acc[co] += xv * row[co];
            }
          }
        }
      }
      memcpy(out + ((long)oy * op->ow + ox) * op->oc, jnas_acc, sizeof(float) * (size_t)op->oc);
    }
  }
}

static void linear(const jnas_op *op) {
  const float *in = jnas_arena + jnas_inputs[op->in];
  float *out = jnas_arena + op->out;
  const int n_in = op->c, n_out = op->oc;
  const long nw = (long)n_in * n_out;
  const float *w = jnas_decode(op->wofs, nw + (op->has_bias ? n_out : 0));
  int o, i;
  for (o = 0; o < n_out; o++) jnas_acc[o] = op->has_bias ? w[nw + o] : 0.0f;
  for (i = 0; i < n_in; i++) {
    const float xv = in[i];
    for (o = 0; o < n_out; o++) jnas_acc[o] += xv * w[(long)i * n_out + o];
  }
  memcpy(out, jnas_acc, sizeof(float) * (size_t)n_out);
}

static void pool(const jnas_op *op, int is_max) {
  const float *in = jnas_arena + jnas_inputs[op->in];
  float *out = jnas_arena + op->out;
  int oy, ox, c, ky, kx;
  for (oy = 0; oy < op->oh; oy++) {
    for (ox = 0; ox < op->ow; ox++) {
      for (c = 0; c < op->c; c++) {
        float acc = is_max ? -INFINITY : 0.0f;
        for (ky = 0; ky < op->kh; ky++) {
          const int iy = oy * op->sh - op->ph + ky;
          if (iy < 0 || iy >= op->h) continue;
          for (kx = 0; kx < op->kw; kx++) {
            const int ix = ox * op->sw - op->pw + kx;
            float v;
            if (ix < 0 || ix >= op->w) continue;
            v = in[((long)iy * op->w + ix) * op->c + c];
            acc = is_max ? (v > acc ? v : acc) : acc + v;
          }
        }
        out[((long)oy * op->ow + ox) * op->c + c] =
            is_max ? acc : acc / (float)(op->kh * op->kw);
      }
    }
  }
}

int jnas_predict(const float *image, float *logits) {
  int n;
  for (n = 0; n < JNAS_NUM_OPS; n++) {
    const jnas_op *op = &jnas_ops[n];
    float *out = jnas_arena + op->out;
    const long size = (long)op->oh * op->ow * op->oc;
    long i;
    int k;
    switch (op->type) {
      case JNAS_INPUT:
        memcpy(out, image, sizeof(float) * (size_t)size);
        break;
      case JNAS_CONV:
        conv(op);
        break;
      case JNAS_LINEAR:
        linear(op);
        break;
      case JNAS_MAXPOOL:
        pool(op, 1);
        break;
      case JNAS_AVGPOOL:
        pool(op, 0);
        break;
      case JNAS_RELU: {
        const float *in = jnas_arena + jnas_inputs[op->in];
        for (i = 0; i < size; i++) out[i] = in[i] > 0.0f ? in[i] : 0.0f;
        break;
      }
      case JNAS_AFFINE: { /* a BatchNorm that could not be folded */
        const float *in = jnas_arena + jnas_inputs[op->in];
        const float *st = jnas_decode(op->wofs, 2L * op->oc);
        for (i = 0; i < size; i++) {
          const int c = (int)(i % op->oc);
          out[i] = in[i] * st[c] + st[op->oc + c];
        }
        break;
      }
      case JNAS_ADD: {
        const float *first = jnas_arena + jnas_inputs[op->in];
        for (i = 0; i < size; i++) out[i] = first[i];
        for (k = 1; k < op->n_in; k++) {
          const float *in = jnas_arena + jnas_inputs[op->in + k];
          for (i = 0; i < size; i++) out[i] += in[i];
        }
        break;
      }
      case JNAS_CONCAT: {
        const long pixels = (long)op->oh * op->ow;
        int at = 0;
        for (k = 0; k < op->n_in; k++) {
          const float *in = jnas_arena + jnas_inputs[op->in + k];
          const int c = jnas_channels[op->in + k];
          long p;
          for (p = 0; p < pixels; p++) {
            memcpy(out + p * op->oc + at, in + p * c, sizeof(float) * (size_t)c);
          }
          at += c;
        }
        break;
      }
      case JNAS_FLATTEN: { /* HWC -> CHW order */
        const float *in = jnas_arena + jnas_inputs[op->in];
        const long pixels = (long)op->h * op->w;
        long p;
        int c;
        for (p = 0; p < pixels; p++) {
          for (c = 0; c < op->c; c++) out[(long)c * pixels + p] = in[p * op->c + c];
        }
        break;
      }
      default:
        return -1;
    }
  }
  memcpy(logits, jnas_arena + jnas_ops[JNAS_NUM_OPS - 1].out,
         sizeof(float) * JNAS_NUM_CLASSES);
  return 0;
}
