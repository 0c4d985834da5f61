/* jnas portable C99 runtime: the op list a generated model header fills. */
#ifndef JNAS_RUNTIME_H_
#define JNAS_RUNTIME_H_

enum {
  JNAS_INPUT,
  JNAS_CONV,
  JNAS_LINEAR,
  JNAS_AFFINE,
  JNAS_RELU,
  JNAS_MAXPOOL,
  JNAS_AVGPOOL,
  JNAS_ADD,
  JNAS_CONCAT,
  JNAS_FLATTEN
};

/* One node of the network. Offsets are in floats, into the arena. */
typedef struct {
  int type;
  long out;          /* offset of the output tensor */
  int in, n_in;      /* first index into jnas_inputs / jnas_channels, count */
  int h, w, c;       /* first input: height, width, channels (or features) */
  int oh, ow, oc;    /* output: height, width, channels (or features) */
  int kh, kw, sh, sw, ph, pw, groups;
  long wofs;         /* index of this node's first stored value */
  int has_bias;
} jnas_op;

/* Runs the network on one HWC float32 image; writes JNAS_NUM_CLASSES logits.
 * Returns 0, or -1 for an unknown op. Not reentrant (one static arena). */
int jnas_predict(const float *image, float *logits);

#endif /* JNAS_RUNTIME_H_ */
