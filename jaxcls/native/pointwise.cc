// Both gradients of a 1x1 stride-1 convolution (NHWC x [C, O], float32) in one pass over the
// output gradient, as an XLA FFI handler: for the layers where few input channels expand to many
// (MobileNetV2's and EfficientNet's expansions, 16 -> 96 at 112x112, 24 -> 144 at 56x56), whose
// output gradient is 6x the size of their input. Separately, the weight gradient (dense_conv.cc)
// and the input gradient (XLA's GEMM) each read that gradient from memory, and with few input
// channels each does little arithmetic per byte read.
//
// One task per image. The image's pixels go in chunks of kPixelChunk; a chunk's output gradient
// (at most a few tens of KB) is read from memory once and, while in L1, used by both gradients:
//   weight gradient: a register tile of Cb input channels x V vectors of output channels sums the
//     chunk's pixels, then adds into the image's totals [C][O] (float, in the pixels' order);
//   input gradient: a register tile of R pixels x up to kMaxChannelVectors vectors of input
//     channels (the weights repacked once per call as [O][C rounded up to vectors]) sums over the
//     output channels in order; more input channels take several such blocks.
// Every sum runs in the same order whatever the thread count (the image's totals are its own;
// the caller adds the images' totals up).
//
//   jaxcls_pointwise_bwd(x[B,H,W,C], w[C,O], g[B,H,W,O]) -> (dx[B,H,W,C], dw per image [B,C,O])
//
// With a BatchNorm and a ReLU or ReLU6 after the convolution (MobileNetV2's expansions, whose
// BatchNorm + activation + depthwise convolution run as depthwise.cc's affine kernels), the
// output gradient is BatchNorm's input gradient, elementwise in the activation's output gradient
// gz and BatchNorm's input y (the convolution's output): the kernel builds each chunk of it in
// cache instead of reading it, so it is never written,
//   g = mul * (0 < y * mul + shift < hi ? gz : 0) + alpha + beta * (y - mean)
// (models/batch_stats.py derives alpha and beta from BatchNorm's sums):
//   jaxcls_pointwise_bn_bwd(x, wc[C+5,O], gz[B,H,W,O], y[B,H,W,O]) -> (dx, dw per image),
//   wc: the weights, then the rows mul, shift, alpha, beta, mean; attribute hi.
//
// Any channel counts; models/conv.py sends it 1x1 layers with at most 48 input channels: with 64
// and more (several input-gradient blocks, large per-image totals) it ran 0.53-0.78x as fast as
// the two separate gradients on the zoo's shapes (AMD EPYC, AVX2).

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "parallel_for.h"
#include "simd.h"
#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;

namespace {

using jaxcls::ClipGradient;
using jaxcls::kLanes;
using jaxcls::Load;
using jaxcls::LoadPart;
using jaxcls::MulAdd;
using jaxcls::ParallelFor;
using jaxcls::Splat;
using jaxcls::StorePart;
using jaxcls::vf;

// Accumulators a register tile may hold, and the widest weight-gradient tile (vectors).
#ifdef __AVX512F__
constexpr int kTile = 24;
constexpr int kWideV = 4;
#else
constexpr int kTile = 12;
constexpr int kWideV = 2;
#endif
constexpr int kCb = 6;
constexpr int kMaxChannelVectors = 6;
constexpr int64_t kPixelChunk = 32;

struct Shape {
  int64_t images, pixels, c, o;  // pixels: an image's
  int64_t OVectors() const { return (o + kLanes - 1) / kLanes; }
  int64_t CVectors() const { return (c + kLanes - 1) / kLanes; }
};

// total[cb * stride + v] += sum over n pixels of x[p][c0 + cb] * g[p][o0 + v * lanes ...]; the
// last vector has `last` lanes (the rest of its lanes read as zero).
template <int V, int CB>
void WeightTile(const Shape& s, const float* x, const float* g, int64_t n, int64_t c0,
                int64_t o0, int64_t last, vf* total, int64_t stride) {
  vf acc[CB][V] = {};
  for (int64_t p = 0; p < n; ++p) {
    const float* gp = g + p * s.o + o0;
    vf gv[V];
    for (int v = 0; v + 1 < V; ++v) gv[v] = Load(gp + v * kLanes);
    gv[V - 1] = LoadPart(gp + (V - 1) * kLanes, last);
    const float* xp = x + p * s.c + c0;
    for (int cb = 0; cb < CB; ++cb) {
      const float xv = xp[cb];
      for (int v = 0; v < V; ++v) acc[cb][v] = MulAdd(xv, gv[v], acc[cb][v]);
    }
  }
  for (int cb = 0; cb < CB; ++cb)
    for (int v = 0; v < V; ++v) total[cb * stride + v] += acc[cb][v];
}

template <int V>
void WeightTileCb(int cb, const Shape& s, const float* x, const float* g, int64_t n, int64_t c0,
                  int64_t o0, int64_t last, vf* total, int64_t stride) {
  switch (cb) {
    case 1: WeightTile<V, 1>(s, x, g, n, c0, o0, last, total, stride); break;
    case 2: WeightTile<V, 2>(s, x, g, n, c0, o0, last, total, stride); break;
    case 3: WeightTile<V, 3>(s, x, g, n, c0, o0, last, total, stride); break;
    case 4: WeightTile<V, 4>(s, x, g, n, c0, o0, last, total, stride); break;
    case 5: WeightTile<V, 5>(s, x, g, n, c0, o0, last, total, stride); break;
    default: WeightTile<V, kCb>(s, x, g, n, c0, o0, last, total, stride); break;
  }
}

void WeightTileAny(int v, int cb, const Shape& s, const float* x, const float* g, int64_t n,
                   int64_t c0, int64_t o0, int64_t last, vf* total, int64_t stride) {
  switch (v) {
    case 1: WeightTileCb<1>(cb, s, x, g, n, c0, o0, last, total, stride); break;
#ifdef __AVX512F__
    case 2: WeightTileCb<2>(cb, s, x, g, n, c0, o0, last, total, stride); break;
    case 3: WeightTileCb<3>(cb, s, x, g, n, c0, o0, last, total, stride); break;
#endif
    default: WeightTileCb<kWideV>(cb, s, x, g, n, c0, o0, last, total, stride); break;
  }
}

// dx[p][c0 : c0 + KV * lanes] = sum over o (in order) of g[p][o] * w[c][o] for R pixels; wt: the
// weights as [O][wv * lanes] (zero beyond C), from the block's first vector.
template <int KV, int R>
void InputTile(const Shape& s, const float* g, const float* wt, int64_t wv, float* dx,
               int64_t c0) {
  vf acc[R][KV] = {};
  for (int64_t o = 0; o < s.o; ++o) {
    vf w[KV];
    for (int kv = 0; kv < KV; ++kv) w[kv] = Load(wt + (o * wv + kv) * kLanes);
    for (int r = 0; r < R; ++r) {
      const float gv = g[r * s.o + o];
      for (int kv = 0; kv < KV; ++kv) acc[r][kv] = MulAdd(gv, w[kv], acc[r][kv]);
    }
  }
  for (int r = 0; r < R; ++r)
    for (int kv = 0; kv < KV; ++kv)
      StorePart(dx + r * s.c + c0 + kv * kLanes, acc[r][kv],
                std::min<int64_t>(kLanes, s.c - c0 - kv * kLanes));
}

// The input gradient of n pixels (g, dx at the first), channels c0 .. c0 + KV vectors: tiles of R
// pixels, then single pixels.
template <int KV>
void InputRows(const Shape& s, const float* g, const float* wt, float* dx, int64_t n,
               int64_t c0) {
  constexpr int R = std::max(1, kTile / KV);
  const int64_t wv = s.CVectors();
  const float* w = wt + c0;  // c0: a multiple of the lanes
  int64_t p = 0;
  for (; p + R <= n; p += R) InputTile<KV, R>(s, g + p * s.o, w, wv, dx + p * s.c, c0);
  for (; p < n; ++p) InputTile<KV, 1>(s, g + p * s.o, w, wv, dx + p * s.c, c0);
}

// ... in blocks of at most kMaxChannelVectors vectors of input channels.
void InputRowsAny(const Shape& s, const float* g, const float* wt, float* dx, int64_t n) {
  for (int64_t v0 = 0; v0 < s.CVectors(); v0 += kMaxChannelVectors) {
    const int64_t c0 = v0 * kLanes;
    switch (std::min<int64_t>(kMaxChannelVectors, s.CVectors() - v0)) {
      case 1: InputRows<1>(s, g, wt, dx, n, c0); break;
      case 2: InputRows<2>(s, g, wt, dx, n, c0); break;
      case 3: InputRows<3>(s, g, wt, dx, n, c0); break;
      case 4: InputRows<4>(s, g, wt, dx, n, c0); break;
      case 5: InputRows<5>(s, g, wt, dx, n, c0); break;
      default: InputRows<kMaxChannelVectors>(s, g, wt, dx, n, c0); break;
    }
  }
}

// The output gradient of jaxcls_pointwise_bn_bwd, built a chunk at a time (see the header).
struct BnGradient {
  const float* gz;
  const float* y;
  const float* coef;  // [5][O]: mul, shift, alpha, beta, mean
  float hi;

  // out[p][o] for the n pixels from pixel `first`, in memory order.
  void Chunk(const Shape& s, int64_t first, int64_t n, float* out) const {
    const vf hiv = Splat(hi);
    const float *mul = coef, *shift = coef + s.o, *alpha = coef + 2 * s.o;
    const float *beta = coef + 3 * s.o, *mean = coef + 4 * s.o;
    for (int64_t p = 0; p < n; ++p) {
      const float* gp = gz + (first + p) * s.o;
      const float* yp = y + (first + p) * s.o;
      float* op = out + p * s.o;
      for (int64_t o = 0; o < s.o; o += kLanes) {
        const int64_t lanes = std::min<int64_t>(kLanes, s.o - o);
        const vf m = LoadPart(mul + o, lanes), yv = LoadPart(yp + o, lanes);
        const vf pre = MulAdd(yv, m, LoadPart(shift + o, lanes));  // as the forward computed it
        const vf gv = ClipGradient(LoadPart(gp + o, lanes), pre, hiv);
        const vf centred = yv - LoadPart(mean + o, lanes);
        const vf rest = MulAdd(LoadPart(beta + o, lanes), centred, LoadPart(alpha + o, lanes));
        StorePart(op + o, MulAdd(m, gv, rest), lanes);
      }
    }
  }
};

// Image b: its input gradient, and its weight-gradient totals into dw[b]; the output gradient
// read from g, or built by bn where given.
void Image(const Shape& s, const float* x, const float* g, const BnGradient* bn, const float* wt,
           float* dx, float* dw, int64_t b) {
  const int64_t ov = s.OVectors();
  std::vector<vf> total(s.c * ov, vf{});
  std::vector<float> built(bn ? kPixelChunk * s.o : 0);
  // Input-channel blocks of near-equal sizes, at most kCb each (as dense_conv.cc's).
  const int64_t blocks = (s.c + kCb - 1) / kCb;
  const int64_t first = b * s.pixels;
  for (int64_t pix0 = 0; pix0 < s.pixels; pix0 += kPixelChunk) {
    const int64_t n = std::min(kPixelChunk, s.pixels - pix0);
    const float* xc = x + (first + pix0) * s.c;
    const float* gc = g + (first + pix0) * s.o;
    if (bn) {
      bn->Chunk(s, first + pix0, n, built.data());
      gc = built.data();
    }
    for (int64_t j = 0; j < blocks; ++j) {
      const int64_t c0 = j * s.c / blocks, c1 = (j + 1) * s.c / blocks;
      for (int64_t v0 = 0; v0 < ov; v0 += kWideV) {
        const int v = static_cast<int>(std::min<int64_t>(kWideV, ov - v0));
        const int64_t last = std::min<int64_t>(kLanes, s.o - (v0 + v - 1) * kLanes);
        WeightTileAny(v, static_cast<int>(c1 - c0), s, xc, gc, n, c0, v0 * kLanes, last,
                      &total[c0 * ov + v0], ov);
      }
    }
    InputRowsAny(s, gc, wt, dx + (first + pix0) * s.c, n);
  }
  for (int64_t c = 0; c < s.c; ++c)
    std::memcpy(dw + (b * s.c + c) * s.o, &total[c * ov], sizeof(float) * s.o);
}

// The weights w [C][O] as [O][KV * lanes], zero beyond C: one contiguous row of vectors per
// output channel, as InputTile reads them.
std::vector<vf> Transposed(const Shape& s, const float* w) {
  const int64_t kv = s.CVectors();
  std::vector<vf> wt(s.o * kv, vf{});
  float* wtp = reinterpret_cast<float*>(wt.data());
  for (int64_t c = 0; c < s.c; ++c)
    for (int64_t o = 0; o < s.o; ++o) wtp[o * kv * kLanes + c] = w[c * s.o + o];
  return wt;
}

ffi::Error Invalid(const char* what) {
  return ffi::Error(ffi::ErrorCode::kInvalidArgument, std::string("jaxcls pointwise bwd: ") + what);
}

// Both gradients, the output gradient g (gd: its dimensions) or the one bn builds; the weights
// are the first C rows of w.
ffi::Error Run(ffi::ThreadPool& pool, ffi::Buffer<ffi::F32>& x, ffi::Buffer<ffi::F32>& w,
               ffi::Span<const int64_t> gd, const float* g, const BnGradient* bn,
               ffi::ResultBuffer<ffi::F32>& dx, ffi::ResultBuffer<ffi::F32>& dw, int64_t stride,
               int64_t pad_top, int64_t pad_left) {
  if (stride != 1 || pad_top != 0 || pad_left != 0) return Invalid("stride 1 and no padding only");
  auto xd = x.dimensions(), wd = w.dimensions();
  const int64_t rows = bn ? 5 : 0;  // rows of w after the weights
  if (xd.size() != 4 || wd.size() != 2 || gd.size() != 4 || wd[0] != xd[3] + rows ||
      gd[3] != wd[1] || gd[0] != xd[0] || gd[1] != xd[1] || gd[2] != xd[2])
    return Invalid("bad shapes");
  const Shape s{xd[0], xd[1] * xd[2], xd[3], wd[1]};
  if (s.c < 1 || s.o < 1) return Invalid("no channels");
  const std::vector<vf> wt = Transposed(s, w.typed_data());
  const float* wtp = reinterpret_cast<const float*>(wt.data());
  const float* xp = x.typed_data();
  float* dxp = dx->typed_data();
  float* dwp = dw->typed_data();
  ParallelFor(pool, s.images, [&](int64_t b) { Image(s, xp, g, bn, wtp, dxp, dwp, b); });
  return ffi::Error::Success();
}

ffi::Error PointwiseBwd(ffi::ThreadPool pool, ffi::Buffer<ffi::F32> x, ffi::Buffer<ffi::F32> w,
                        ffi::Buffer<ffi::F32> gy, ffi::ResultBuffer<ffi::F32> dx,
                        ffi::ResultBuffer<ffi::F32> dw, int64_t stride, int64_t pad_top,
                        int64_t pad_left) {
  return Run(pool, x, w, gy.dimensions(), gy.typed_data(), nullptr, dx, dw, stride, pad_top,
             pad_left);
}

ffi::Error PointwiseBnBwd(ffi::ThreadPool pool, ffi::Buffer<ffi::F32> x, ffi::Buffer<ffi::F32> w,
                          ffi::Buffer<ffi::F32> gz, ffi::Buffer<ffi::F32> y,
                          ffi::ResultBuffer<ffi::F32> dx, ffi::ResultBuffer<ffi::F32> dw,
                          int64_t stride, int64_t pad_top, int64_t pad_left, float hi) {
  auto gd = gz.dimensions(), yd = y.dimensions();
  if (yd.size() != gd.size() || !std::equal(gd.begin(), gd.end(), yd.begin()))
    return Invalid("gz and y differ in shape");
  if (w.dimensions().size() != 2 || w.dimensions()[0] < 6) return Invalid("bad shapes");
  const int64_t o = w.dimensions()[1];
  const BnGradient bn{gz.typed_data(), y.typed_data(),
                      w.typed_data() + (w.dimensions()[0] - 5) * o, hi};
  return Run(pool, x, w, gd, nullptr, &bn, dx, dw, stride, pad_top, pad_left);
}

}  // namespace

XLA_FFI_DEFINE_HANDLER_SYMBOL(JaxclsPointwiseBwd, PointwiseBwd,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::ThreadPool>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>()
                                  .Attr<int64_t>("stride")
                                  .Attr<int64_t>("pad_top")
                                  .Attr<int64_t>("pad_left"));

XLA_FFI_DEFINE_HANDLER_SYMBOL(JaxclsPointwiseBnBwd, PointwiseBnBwd,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::ThreadPool>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>()
                                  .Attr<int64_t>("stride")
                                  .Attr<int64_t>("pad_top")
                                  .Attr<int64_t>("pad_left")
                                  .Attr<float>("hi"));
