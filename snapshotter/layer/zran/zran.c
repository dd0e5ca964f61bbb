/*
 * zran-style random access into gzip streams, as a Node-API addon over the
 * system zlib. Node's zlib cannot start inflating at a bit offset (it exposes
 * no inflatePrime), so the checkpoint logic of zlib's examples/zran.c lives
 * here: an Inflater that decompresses a stream once and reports access points
 * (compressed byte offset, bit count, uncompressed offset, 32 KiB window) at
 * deflate block boundaries, and extract() that resumes at such a point.
 */
#include <node_api.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#define WIN 32768
#define OUTSZ (1024 * 1024)

#define CHECK(call)                                                        \
  do {                                                                     \
    if ((call) != napi_ok) {                                               \
      napi_throw_error(env, "ERR_ZRAN", "napi call failed: " #call);       \
      return NULL;                                                         \
    }                                                                      \
  } while (0)

typedef struct {
  z_stream strm;
  int ended;          /* last inflate() returned Z_STREAM_END */
  int failed;
  uint64_t totin, totout, last;
  uint64_t span;
  uint64_t npoints;
  double *at;         /* with at: points exactly at these outputs (sorted), not every span */
  size_t nat, iat;
  int nowin;          /* points without windows (a scan for where points can be) */
  unsigned char *buf; /* WIN bytes of history, then OUTSZ of output */
  size_t pos;         /* write position in buf */
  size_t emit;        /* first byte in buf not yet handed to JS */
} inflater;

static void inflater_free(napi_env env, void *data, void *hint) {
  (void)env; (void)hint;
  inflater *z = (inflater *)data;
  inflateEnd(&z->strm);
  free(z->buf);
  free(z->at);
  free(z);
}

static napi_value throw_zlib(napi_env env, const char *what, int ret, const char *msg) {
  char text[256];
  snprintf(text, sizeof text, "%s: zlib error %d%s%s", what, ret, msg ? ": " : "", msg ? msg : "");
  napi_throw_error(env, "ERR_ZRAN_DATA", text);
  return NULL;
}

/* createInflater(span[, at[, noWindow]]) -> external. span: minimum uncompressed
   distance between points. at (Float64Array, ascending): instead, a point at
   each block boundary whose output offset is listed (and at the first one).
   noWindow: points carry no window (to learn where the boundaries are). */
static napi_value create_inflater(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  double span;
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  CHECK(napi_get_value_double(env, argv[0], &span));
  double *at = NULL;
  size_t nat = 0;
  int nowin = 0;
  if (argc > 1) {
    napi_valuetype t;
    CHECK(napi_typeof(env, argv[1], &t));
    if (t != napi_undefined) {
      bool is;
      napi_typedarray_type tt;
      void *data;
      CHECK(napi_is_typedarray(env, argv[1], &is));
      if (is) CHECK(napi_get_typedarray_info(env, argv[1], &tt, &nat, &data, NULL, NULL));
      if (!is || tt != napi_float64_array) {
        napi_throw_type_error(env, "ERR_ZRAN_ARG", "createInflater: at must be a Float64Array");
        return NULL;
      }
      at = malloc((nat ? nat : 1) * sizeof *at);
      if (!at) { napi_throw_error(env, "ERR_ZRAN", "out of memory"); return NULL; }
      memcpy(at, data, nat * sizeof *at);
    }
  }
  if (argc > 2) {
    bool b;
    CHECK(napi_get_value_bool(env, argv[2], &b));
    nowin = b;
  }
  inflater *z = calloc(1, sizeof *z);
  if (!z) { free(at); napi_throw_error(env, "ERR_ZRAN", "out of memory"); return NULL; }
  z->buf = calloc(1, WIN + OUTSZ);
  if (!z->buf || inflateInit2(&z->strm, 31) != Z_OK) {
    free(z->buf); free(z); free(at);
    napi_throw_error(env, "ERR_ZRAN", "inflateInit2 failed");
    return NULL;
  }
  z->span = (uint64_t)span;
  z->at = at;
  z->nat = nat;
  z->nowin = nowin;
  z->pos = z->emit = WIN;
  napi_value ext;
  CHECK(napi_create_external(env, z, inflater_free, NULL, &ext));
  return ext;
}

/* Whether the block boundary just reached (output z->totout) is a point. */
static int wanted_here(inflater *z) {
  if (z->npoints == 0) return 1;
  if (!z->at) return z->totout - z->last >= z->span;
  double out = (double)z->totout;
  while (z->iat < z->nat && z->at[z->iat] < out) z->iat++;
  return z->iat < z->nat && z->at[z->iat] == out;
}

static napi_value set_num(napi_env env, napi_value obj, const char *key, double v) {
  napi_value n;
  if (napi_create_double(env, v, &n) != napi_ok) return NULL;
  if (napi_set_named_property(env, obj, key, n) != napi_ok) return NULL;
  return obj;
}

/* Hands the output not yet emitted to JS as one Buffer pushed on `outs`. */
static int emit_output(napi_env env, inflater *z, napi_value outs, uint32_t *nouts) {
  if (z->pos == z->emit) return 0;
  napi_value b;
  void *data;
  if (napi_create_buffer_copy(env, z->pos - z->emit, z->buf + z->emit, &data, &b) != napi_ok) return -1;
  if (napi_set_element(env, outs, (*nouts)++, b) != napi_ok) return -1;
  z->emit = z->pos;
  return 0;
}

/* inflaterWrite(ext, input) -> { outputs: Buffer[], points: {in, bits, out, window}[] } */
static napi_value inflater_write(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  inflater *z;
  void *input;
  size_t inlen;
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  CHECK(napi_get_value_external(env, argv[0], (void **)&z));
  CHECK(napi_get_buffer_info(env, argv[1], &input, &inlen));
  if (z->failed) { napi_throw_error(env, "ERR_ZRAN_DATA", "inflater already failed"); return NULL; }
  napi_value result, outs, points;
  uint32_t nouts = 0, npts = 0;
  CHECK(napi_create_object(env, &result));
  CHECK(napi_create_array(env, &outs));
  CHECK(napi_create_array(env, &points));
  z->strm.next_in = (unsigned char *)input;
  z->strm.avail_in = (uInt)inlen;
  while (z->strm.avail_in > 0) {
    if (z->ended) {
      /* another gzip member follows (pigz, eStargz, concatenated layers) */
      inflateReset(&z->strm);
      z->ended = 0;
    }
    if (z->pos == WIN + OUTSZ) {
      if (emit_output(env, z, outs, &nouts)) return NULL;
      memmove(z->buf, z->buf + z->pos - WIN, WIN);
      z->pos = z->emit = WIN;
    }
    uInt in0 = z->strm.avail_in, out0 = (uInt)(WIN + OUTSZ - z->pos);
    z->strm.next_out = z->buf + z->pos;
    z->strm.avail_out = out0;
    int ret = inflate(&z->strm, Z_BLOCK);
    uInt used = in0 - z->strm.avail_in, made = out0 - z->strm.avail_out;
    z->totin += used;
    z->totout += made;
    z->pos += made;
    if (ret == Z_NEED_DICT || ret == Z_DATA_ERROR || ret == Z_MEM_ERROR || ret == Z_STREAM_ERROR) {
      z->failed = 1;
      return throw_zlib(env, "gzip stream", ret, z->strm.msg);
    }
    if (ret == Z_STREAM_END) { z->ended = 1; continue; }
    if (ret == Z_BUF_ERROR && used == 0 && made == 0) break;
    /* An access point at the end of a block (not the last one of a member):
       all output of the block has been delivered and at most 7 bits of the
       next block consumed, so inflate can resume here with the window. */
    if ((z->strm.data_type & 128) && !(z->strm.data_type & 64) && wanted_here(z)) {
      napi_value p, win;
      void *wdata;
      CHECK(napi_create_object(env, &p));
      if (!set_num(env, p, "in", (double)z->totin)) return NULL;
      if (!set_num(env, p, "bits", (double)(z->strm.data_type & 7))) return NULL;
      if (!set_num(env, p, "out", (double)z->totout)) return NULL;
      if (!z->nowin) {
        CHECK(napi_create_buffer_copy(env, WIN, z->buf + z->pos - WIN, &wdata, &win));
        CHECK(napi_set_named_property(env, p, "window", win));
      }
      CHECK(napi_set_element(env, points, npts++, p));
      z->last = z->totout;
      z->npoints++;
    }
  }
  if (emit_output(env, z, outs, &nouts)) return NULL;
  CHECK(napi_set_named_property(env, result, "outputs", outs));
  CHECK(napi_set_named_property(env, result, "points", points));
  return result;
}

/* inflaterState(ext) -> { ended, totalIn, totalOut }: ended is true when the
   last member finished cleanly (trailer CRC and length checked by zlib). */
static napi_value inflater_state(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1], result, ended;
  inflater *z;
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  CHECK(napi_get_value_external(env, argv[0], (void **)&z));
  CHECK(napi_create_object(env, &result));
  CHECK(napi_get_boolean(env, z->ended && !z->failed, &ended));
  CHECK(napi_set_named_property(env, result, "ended", ended));
  if (!set_num(env, result, "totalIn", (double)z->totin)) return NULL;
  if (!set_num(env, result, "totalOut", (double)z->totout)) return NULL;
  return result;
}

/* Skips a gzip trailer and the header of the next member, leaving strm in raw
   mode at its first block. Returns 1 if a member follows, 0 at end of input. */
static int next_member(z_stream *strm, int *err) {
  if (strm->avail_in <= 8) return 0;
  strm->avail_in -= 8;
  strm->next_in += 8;
  if (inflateReset2(strm, 31) != Z_OK) { *err = Z_STREAM_ERROR; return 0; }
  do {
    int ret = inflate(strm, Z_BLOCK);
    if (ret != Z_OK) { *err = ret == Z_BUF_ERROR ? Z_DATA_ERROR : ret; return 0; }
  } while ((strm->data_type & 128) == 0);
  if (inflateReset2(strm, -15) != Z_OK) { *err = Z_STREAM_ERROR; return 0; }
  return 1;
}

/* extract(input, bits, window, skip, length) -> Buffer of up to `length` bytes
   found `skip` bytes after the access point. `input` starts at the byte that
   holds the point's leftover `bits` (when bits > 0) and runs at least to the
   end of the wanted data. */
static napi_value extract(napi_env env, napi_callback_info info) {
  size_t argc = 5;
  napi_value argv[5];
  void *input, *window;
  size_t inlen, winlen;
  int32_t bits;
  double skipd, lend;
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  CHECK(napi_get_buffer_info(env, argv[0], &input, &inlen));
  CHECK(napi_get_value_int32(env, argv[1], &bits));
  CHECK(napi_get_buffer_info(env, argv[2], &window, &winlen));
  CHECK(napi_get_value_double(env, argv[3], &skipd));
  CHECK(napi_get_value_double(env, argv[4], &lend));
  if (bits < 0 || bits > 7 || (bits && inlen == 0) || winlen > WIN || lend < 0 || skipd < 0) {
    napi_throw_range_error(env, "ERR_ZRAN_ARG", "extract: bad arguments");
    return NULL;
  }
  uint64_t skip = (uint64_t)skipd;
  size_t len = (size_t)lend;
  unsigned char *out = malloc(len ? len : 1);
  unsigned char *discard = malloc(WIN);
  z_stream strm;
  memset(&strm, 0, sizeof strm);
  if (!out || !discard || inflateInit2(&strm, -15) != Z_OK) {
    free(out); free(discard);
    napi_throw_error(env, "ERR_ZRAN", "extract: init failed");
    return NULL;
  }
  unsigned char *in = (unsigned char *)input;
  if (bits) {
    inflatePrime(&strm, bits, in[0] >> (8 - bits));
    in++; inlen--;
  }
  if (winlen) inflateSetDictionary(&strm, (unsigned char *)window, (uInt)winlen);
  strm.next_in = in;
  strm.avail_in = (uInt)inlen;
  int err = 0, done = 0;
  size_t have = 0;
  while (!done && have < len) {
    if (skip > 0) {
      strm.next_out = discard;
      strm.avail_out = skip > WIN ? WIN : (uInt)skip;
    } else {
      strm.next_out = out + have;
      strm.avail_out = (uInt)(len - have);
    }
    uInt out0 = strm.avail_out;
    int ret = inflate(&strm, Z_NO_FLUSH);
    uInt made = out0 - strm.avail_out;
    if (skip > 0) skip -= made; else have += made;
    if (ret == Z_STREAM_END) {
      if (!next_member(&strm, &err)) done = 1;
    } else if (ret == Z_BUF_ERROR) {
      done = 1; /* input ran out: return what we have */
    } else if (ret != Z_OK) {
      err = ret;
    }
    if (err) break;
  }
  inflateEnd(&strm);
  free(discard);
  if (err) {
    free(out);
    return throw_zlib(env, "gzip extract", err, NULL);
  }
  napi_value result;
  void *rdata;
  napi_status st = napi_create_buffer_copy(env, have, out, &rdata, &result);
  free(out);
  CHECK(st);
  return result;
}

static napi_value init(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
    {"createInflater", NULL, create_inflater, NULL, NULL, NULL, napi_default, NULL},
    {"inflaterWrite", NULL, inflater_write, NULL, NULL, NULL, napi_default, NULL},
    {"inflaterState", NULL, inflater_state, NULL, NULL, NULL, napi_default, NULL},
    {"extract", NULL, extract, NULL, NULL, NULL, napi_default, NULL},
  };
  CHECK(napi_define_properties(env, exports, sizeof props / sizeof props[0], props));
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
