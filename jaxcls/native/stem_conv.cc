// Dense convolution with few input channels (NHWC x HWIO, float32): the stem of a network on RGB
// (or grey) images, as XLA FFI handlers.
//
// Why: XLA:CPU's convolution kernels (Eigen) work on C_in-wide GEMM panels; with C_in = 3 each
// panel is a sliver and the scratch CNN's stem (3 -> 16 channels, 3x3, 32x32 maps, batch 32) ran
// at 14-53 GFLOP/s (its weight gradient and forward convolution were the two largest thunks of
// the train step).
// Here each output pixel's (or each kernel tap's) output-channel vector is a register-resident
// accumulator, the few input channels are unrolled, and the padding costs a check only at the
// borders (forward) or nothing (weight gradient: loop bounds).
// Built at first use by jaxcls/native/__init__.py (g++ -O3 -march=native) together with
// depthwise.cc; the Python side (jaxcls/models/conv.py) uses XLA's convolution when no compiler
// is available.
//
//   jaxcls_stem_conv_fwd(x[B,H,W,C], w[KH,KW,C,O]) -> y[B,Ho,Wo,O]
//   jaxcls_stem_conv_wgrad(x[B,H,W,C], w[KH,KW,C,O], g[B,Ho,Wo,O]) -> dw[B,KH,KW,C,O]
//
// C is 1 to 4. Attributes: stride, pad_top, pad_left (the bottom/right padding follows from the
// shapes). The weight gradient is returned per image (summed over the batch by the caller), which
// keeps every image's work independent and the sum's order fixed; within an image, each output
// row's products are summed in float and the rows in double. w is only read for its shape there.

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <string>
#include <type_traits>
#include <vector>

#include "parallel_for.h"
#include "simd.h"
#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;

namespace {

using jaxcls::ParallelFor;

constexpr int64_t kMaxChannels = 4;

struct Geometry {
  int64_t b, h, w, c, kh, kw, o, ho, wo, stride, pad_top, pad_left;
};

// The output columns ow in [lo, hi) for which kernel column j reads a real input column.
inline void ValidColumns(const Geometry& g, int64_t j, int64_t* lo, int64_t* hi) {
  // iw = ow * stride + j - pad_left must lie in [0, w).
  const int64_t first = g.pad_left - j;  // ow * stride >= first
  *lo = first > 0 ? (first + g.stride - 1) / g.stride : 0;
  const int64_t last = g.w - 1 + g.pad_left - j;  // ow * stride <= last
  *hi = last < 0 ? 0 : std::min(g.wo, last / g.stride + 1);
  if (*lo > *hi) *lo = *hi;
}

using jaxcls::kLanes;
using jaxcls::Load;
using jaxcls::MulAdd;
using jaxcls::vf;

// The forward pass's accumulators per register tile (AVX-512 has 32 vector registers, AVX2 16).
// With 8-float vectors on an AVX-512 machine the forward pass ran at half the rate (ResNet's 7x7
// stem, 3 -> 64 channels at 224 px, batch 32, 2 threads: 46.9 against 25 ms).
#ifdef __AVX512F__
constexpr int kTile = 24;
#else
constexpr int kTile = 8;
#endif

// Stores the first n (1 to kLanes) floats of v at p; all unless Partial (the last, narrower chunk
// of output channels when their count is not a multiple of kLanes).
template <bool Partial>
inline void Store(float* p, vf v, int64_t n) {
  std::memcpy(p, &v, sizeof(float) * (Partial ? n : kLanes));
}

// Columns o0:o0+n (n <= kLanes) of a rows x stride matrix, zero-padded to rows x kLanes: the
// narrow last chunk of output channels then runs the full-width loops on this copy.
inline std::vector<float> PaddedColumns(const float* m, int64_t rows, int64_t stride, int64_t o0,
                                        int64_t n) {
  std::vector<float> out(rows * kLanes, 0.0f);
  for (int64_t r = 0; r < rows; ++r)
    std::memcpy(&out[r * kLanes], m + r * stride + o0, sizeof(float) * n);
  return out;
}

// Adds the taps of output pixels ow .. ow+P-1 (all of whose taps read real columns when
// Checked is false) to acc[P][V]: the weights' kLanes*V columns from w, whose rows (kernel taps x
// input channels) are ws floats apart.
template <int C, int V, int P, bool Checked>
inline void ForwardPixels(const Geometry& g, const float* x, const float* w, int64_t ws, int64_t b,
                          int64_t oh, int64_t ow, vf (&acc)[P][V]) {
  for (int64_t i = 0; i < g.kh; ++i) {
    const int64_t ih = oh * g.stride + i - g.pad_top;
    if (ih < 0 || ih >= g.h) continue;
    const float* xrow = x + (b * g.h + ih) * g.w * C;
    for (int64_t j = 0; j < g.kw; ++j) {
      const int64_t iw = ow * g.stride + j - g.pad_left;
      if (Checked && (iw < 0 || iw >= g.w)) continue;
      const float* xp = xrow + iw * C;
      const float* wp = w + (i * g.kw + j) * C * ws;
      for (int c = 0; c < C; ++c) {
        vf wv[V];
        for (int v = 0; v < V; ++v) wv[v] = Load(wp + c * ws + kLanes * v);
        for (int p = 0; p < P; ++p) {
          const float xv = xp[p * g.stride * C + c];
          for (int v = 0; v < V; ++v) acc[p][v] = MulAdd(xv, wv[v], acc[p][v]);
        }
      }
    }
  }
}

// y[b, oh, :, o0:o0+kLanes*V] for one output row (o0:o0+n when Partial, V = 1): V vectors of
// output channels for each of P = kTile / V (at most 12) neighbouring pixels stay in registers
// (at least 8 independent accumulators hide the FMA latency); the pixels at the borders, whose
// taps reach into the padding, go one at a time with checks.
template <int C, int V, bool Partial = false>
void ForwardChunk(const Geometry& g, const float* x, const float* w, float* y, int64_t b,
                  int64_t oh, int64_t o0, int64_t n = kLanes) {
  constexpr int P = std::min(12, kTile / V);
  const int64_t o = g.o;
  float* out = y + ((b * g.ho + oh) * g.wo) * o + o0;
  std::vector<float> padded;
  const float* wc = w + o0;
  int64_t ws = o;
  if (Partial) {
    padded = PaddedColumns(w, g.kh * g.kw * C, o, o0, n);
    wc = padded.data(), ws = kLanes;
  }
  // Pixels [lo, hi) read only real columns with every tap.
  int64_t lo, hi, lo_j, hi_j;
  ValidColumns(g, 0, &lo, &hi);
  ValidColumns(g, g.kw - 1, &lo_j, &hi_j);
  lo = std::max(lo, lo_j);
  hi = std::max(lo, std::min(hi, hi_j));
  auto one = [&](int64_t ow) {
    vf acc[1][V] = {};
    ForwardPixels<C, V, 1, true>(g, x, wc, ws, b, oh, ow, acc);
    for (int v = 0; v < V; ++v) Store<Partial>(out + ow * o + kLanes * v, acc[0][v], n);
  };
  int64_t ow = 0;
  for (; ow < lo; ++ow) one(ow);
  for (; ow + P <= hi; ow += P) {
    vf acc[P][V] = {};
    ForwardPixels<C, V, P, false>(g, x, wc, ws, b, oh, ow, acc);
    for (int p = 0; p < P; ++p)
      for (int v = 0; v < V; ++v) Store<Partial>(out + (ow + p) * o + kLanes * v, acc[p][v], n);
  }
  for (; ow < g.wo; ++ow) one(ow);
}

template <int C>
void ForwardRow(const Geometry& g, const float* x, const float* w, float* y, int64_t row) {
  const int64_t b = row / g.ho, oh = row % g.ho;
  int64_t o0 = 0;
  for (; o0 + 4 * kLanes <= g.o; o0 += 4 * kLanes) ForwardChunk<C, 4>(g, x, w, y, b, oh, o0);
  if (o0 + 2 * kLanes <= g.o) ForwardChunk<C, 2>(g, x, w, y, b, oh, o0), o0 += 2 * kLanes;
  if (o0 + kLanes <= g.o) ForwardChunk<C, 1>(g, x, w, y, b, oh, o0), o0 += kLanes;
  if (o0 < g.o) ForwardChunk<C, 1, true>(g, x, w, y, b, oh, o0, g.o - o0);
}

// Adds one output row's products to total[KH,KW,C,O] for output channels o0:o0+kLanes*V (o0:o0+n
// when Partial, V = 1): per kernel tap (i, j), C x V vectors of accumulators in registers over
// the row's valid columns.
template <int C, int V, bool Partial = false>
void WgradChunk(const Geometry& g, const float* x, const float* gy, double* total, int64_t b,
                int64_t oh, int64_t o0, int64_t n = kLanes) {
  const int64_t o = g.o;
  const int64_t width = Partial ? n : kLanes;
  const float* grow = gy + ((b * g.ho + oh) * g.wo) * o + o0;
  int64_t gs = o;  // floats between two pixels' output channels
  std::vector<float> padded;
  if (Partial) {
    padded = PaddedColumns(gy + (b * g.ho + oh) * g.wo * o, g.wo, o, o0, n);
    grow = padded.data(), gs = kLanes;
  }
  for (int64_t i = 0; i < g.kh; ++i) {
    const int64_t ih = oh * g.stride + i - g.pad_top;
    if (ih < 0 || ih >= g.h) continue;
    const float* xrow = x + (b * g.h + ih) * g.w * C;
    for (int64_t j = 0; j < g.kw; ++j) {
      int64_t lo, hi;
      ValidColumns(g, j, &lo, &hi);
      vf acc[C][V] = {};
      for (int64_t ow = lo; ow < hi; ++ow) {
        const float* xp = xrow + (ow * g.stride + j - g.pad_left) * C;
        vf gv[V];
        for (int v = 0; v < V; ++v) gv[v] = Load(grow + ow * gs + kLanes * v);
        for (int c = 0; c < C; ++c) {
          const float xv = xp[c];
          for (int v = 0; v < V; ++v) acc[c][v] = MulAdd(xv, gv[v], acc[c][v]);
        }
      }
      double* t = total + (i * g.kw + j) * C * o + o0;
      for (int c = 0; c < C; ++c)
        for (int v = 0; v < V; ++v)
          for (int64_t k = 0; k < width; ++k) t[c * o + kLanes * v + k] += acc[c][v][k];
    }
  }
}

template <int C>
void WgradImage(const Geometry& g, const float* x, const float* gy, float* dw, int64_t b) {
  const int64_t values = g.kh * g.kw * C * g.o;
  std::vector<double> total(values, 0.0);
  // Up to 3 input channels 4 vectors of output channels at a time (C x 4 vector registers of
  // accumulators), 4 input channels 2 vectors at a time.
  constexpr int kWide = C <= 3 ? 4 : 2;
  for (int64_t oh = 0; oh < g.ho; ++oh) {
    int64_t o0 = 0;
    for (; o0 + kLanes * kWide <= g.o; o0 += kLanes * kWide)
      WgradChunk<C, kWide>(g, x, gy, total.data(), b, oh, o0);
    if (kWide > 2 && o0 + 2 * kLanes <= g.o)
      WgradChunk<C, 2>(g, x, gy, total.data(), b, oh, o0), o0 += 2 * kLanes;
    if (o0 + kLanes <= g.o) WgradChunk<C, 1>(g, x, gy, total.data(), b, oh, o0), o0 += kLanes;
    if (o0 < g.o) WgradChunk<C, 1, true>(g, x, gy, total.data(), b, oh, o0, g.o - o0);
  }
  float* out = dw + b * values;
  for (int64_t t = 0; t < values; ++t) out[t] = static_cast<float>(total[t]);
}

ffi::Error Check(const Geometry& g, const char* what) {
  if (g.c < 1 || g.c > kMaxChannels || g.stride < 1 || g.kh < 1 || g.kw < 1 || g.pad_top < 0 ||
      g.pad_left < 0)
    return ffi::Error(ffi::ErrorCode::kInvalidArgument,
                      std::string("jaxcls stem conv ") + what +
                          ": needs 1-4 input channels, stride >= 1 and padding >= 0");
  return ffi::Error::Success();
}

// Calls f.template operator()<C>() for the geometry's channel count (1-4, checked before).
template <typename F>
void WithChannels(int64_t c, const F& f) {
  switch (c) {
    case 1: f(std::integral_constant<int, 1>()); break;
    case 2: f(std::integral_constant<int, 2>()); break;
    case 3: f(std::integral_constant<int, 3>()); break;
    default: f(std::integral_constant<int, 4>()); break;
  }
}

ffi::Error StemConvFwd(ffi::ThreadPool pool, ffi::Buffer<ffi::F32> x, ffi::Buffer<ffi::F32> w,
                       ffi::ResultBuffer<ffi::F32> y, int64_t stride, int64_t pad_top,
                       int64_t pad_left) {
  auto xd = x.dimensions(), wd = w.dimensions(), yd = y->dimensions();
  if (xd.size() != 4 || wd.size() != 4 || yd.size() != 4 || wd[2] != xd[3] || yd[3] != wd[3] ||
      yd[0] != xd[0])
    return ffi::Error(ffi::ErrorCode::kInvalidArgument, "jaxcls stem conv fwd: bad shapes");
  Geometry g{xd[0], xd[1], xd[2], xd[3], wd[0], wd[1], wd[3], yd[1], yd[2], stride, pad_top, pad_left};
  if (auto e = Check(g, "fwd"); e.failure()) return e;
  const float* xp = x.typed_data();
  const float* wp = w.typed_data();
  float* yp = y->typed_data();
  WithChannels(g.c, [&](auto c) {
    ParallelFor(pool, g.b * g.ho,
                [&](int64_t row) { ForwardRow<decltype(c)::value>(g, xp, wp, yp, row); });
  });
  return ffi::Error::Success();
}

ffi::Error StemConvWgrad(ffi::ThreadPool pool, ffi::Buffer<ffi::F32> x, ffi::Buffer<ffi::F32> w,
                         ffi::Buffer<ffi::F32> gy, ffi::ResultBuffer<ffi::F32> dw, int64_t stride,
                         int64_t pad_top, int64_t pad_left) {
  auto xd = x.dimensions(), wd = w.dimensions(), gd = gy.dimensions(), dd = dw->dimensions();
  if (xd.size() != 4 || wd.size() != 4 || gd.size() != 4 || dd.size() != 5 || wd[2] != xd[3] ||
      gd[3] != wd[3] || gd[0] != xd[0] || dd[0] != xd[0])
    return ffi::Error(ffi::ErrorCode::kInvalidArgument, "jaxcls stem conv wgrad: bad shapes");
  Geometry g{xd[0], xd[1], xd[2], xd[3], wd[0], wd[1], wd[3], gd[1], gd[2], stride, pad_top, pad_left};
  if (auto e = Check(g, "wgrad"); e.failure()) return e;
  const float* xp = x.typed_data();
  const float* gp = gy.typed_data();
  float* dwp = dw->typed_data();
  WithChannels(g.c, [&](auto c) {
    ParallelFor(pool, g.b,
                [&](int64_t b) { WgradImage<decltype(c)::value>(g, xp, gp, dwp, b); });
  });
  return ffi::Error::Success();
}

}  // namespace

XLA_FFI_DEFINE_HANDLER_SYMBOL(JaxclsStemConvFwd, StemConvFwd,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::ThreadPool>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>()
                                  .Attr<int64_t>("stride")
                                  .Attr<int64_t>("pad_top")
                                  .Attr<int64_t>("pad_left"));

XLA_FFI_DEFINE_HANDLER_SYMBOL(JaxclsStemConvWgrad, StemConvWgrad,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::ThreadPool>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>()
                                  .Attr<int64_t>("stride")
                                  .Attr<int64_t>("pad_top")
                                  .Attr<int64_t>("pad_left"));
