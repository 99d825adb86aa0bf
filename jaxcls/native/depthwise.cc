// Depthwise convolution (channel multiplier 1, NHWC, float32) for XLA:CPU, as XLA FFI handlers.
//
// Why: XLA:CPU emits reductions as scalar loops, so the kernel gradient of a depthwise conv written
// in jax.numpy ran at ~1.5 GFLOP/s, and its forward pass could not fuse the zero padding without a
// per-element bounds check. These loops hold a chunk of up to four vectors of channels in
// registers while they sum its taps (each output pixel's, each input pixel's, each tap's over a
// group of rows), and parallelise over rows/images on XLA's intra-op thread pool. They used to
// add every tap's channel vector into memory (a load and a store of the sum per multiply), which
// ran MobileNetV2's 4x4 and 2x2 maps at 12-21 GFLOP/s alone, 5-7 in its train step (docs/
// performance.md, "Depthwise kernels that sum in registers"). The forward pass and the input
// gradient take a pixel's chunks one after the other, so they read and write memory in order;
// with the chunk outside the pixel loop (each pass over a row reading 2 of every C/16 cache lines)
// the calls ran up to 4.1x (forward) and 2.3x (backward) slower at 96-576 channels on an AMD EPYC
// (docs/performance.md, "Depthwise kernels that walk memory in order").
// Built at first use by jaxcls/native/__init__.py (g++ -O3 -march=native); the Python side falls
// back to the pure-JAX shifted form when no compiler is available.
//
//   jaxcls_depthwise_fwd(x[B,H,W,C], k[KH,KW,C]) -> y[B,Ho,Wo,C]
//   jaxcls_depthwise_bwd(x[B,H,W,C], k[KH,KW,C], g[B,Ho,Wo,C]) -> (dx[B,H,W,C], dk[B,KH,KW,C])
//
// Attributes: stride, pad_top, pad_left (the bottom/right padding follows from the shapes). The
// backward returns the kernel gradient per image (summed over the batch by the caller), which
// keeps every image's work independent and the sum's order fixed.

#include <algorithm>
#include <cstdint>
#include <type_traits>
#include <vector>

#include "parallel_for.h"
#include "simd.h"
#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;

namespace {

using jaxcls::kLanes;
using jaxcls::Load;
using jaxcls::MulAdd;
using jaxcls::LoadPart;
using jaxcls::ParallelFor;
using jaxcls::StorePart;
using jaxcls::vf;

struct Geometry {
  int64_t b, h, w, c, kh, kw, ho, wo, stride, pad_top, pad_left;
};

// Channels summed in registers at once: 4 vectors (64 channels with AVX-512).
constexpr int kChunkVectors = 4;
// The kernel gradient sums the products of up to this many output pixels (whole rows, at least
// one) in float before it adds them to its double total.
constexpr int64_t kGroupPixels = 64;

// Calls f(std::integral_constant<int, NV>, c0, tail) for each chunk of channels [c0, c0 + NV
// vectors), NV <= kChunkVectors, whose last vector holds `tail` (1..kLanes) channels.
template <typename F>
inline void ForEachChunk(int64_t c, const F& f) {
  for (int64_t c0 = 0; c0 < c; c0 += kChunkVectors * kLanes) {
    const int64_t rest = c - c0;
    const int64_t nv = std::min<int64_t>(kChunkVectors, (rest + kLanes - 1) / kLanes);
    const int64_t tail = std::min<int64_t>(kLanes, rest - (nv - 1) * kLanes);
    switch (nv) {
      case 1: f(std::integral_constant<int, 1>{}, c0, tail); break;
      case 2: f(std::integral_constant<int, 2>{}, c0, tail); break;
      case 3: f(std::integral_constant<int, 3>{}, c0, tail); break;
      default: f(std::integral_constant<int, 4>{}, c0, tail); break;
    }
  }
}

template <int NV>
inline void LoadChunk(vf (&v)[NV], const float* p, int64_t tail) {
  for (int i = 0; i < NV - 1; ++i) v[i] = Load(p + i * kLanes);
  v[NV - 1] = LoadPart(p + (NV - 1) * kLanes, tail);
}

template <int NV>
inline void StoreChunk(float* p, const vf (&v)[NV], int64_t tail) {
  for (int i = 0; i < NV - 1; ++i) StorePart(p + i * kLanes, v[i], kLanes);
  StorePart(p + (NV - 1) * kLanes, v[NV - 1], tail);
}

// acc += a * b for a chunk at a and b.
template <int NV>
inline void MulAddChunk(vf (&acc)[NV], const float* a, const float* b, int64_t tail) {
  vf av[NV], bv[NV];
  LoadChunk(av, a, tail);
  LoadChunk(bv, b, tail);
  for (int i = 0; i < NV; ++i) acc[i] = MulAdd(av[i], bv[i], acc[i]);
}

// floor(a / s) for s > 0 and any sign of a.
inline int64_t FloorDiv(int64_t a, int64_t s) { return a >= 0 ? a / s : -((-a + s - 1) / s); }

// y[b, oh, ow] = sum_{i,j} x[b, oh*s + i - pt, ow*s + j - pl] * k[i, j] (out-of-range taps = 0),
// summed over i, then j.
void ForwardRow(const Geometry& g, const float* x, const float* k, float* y, int64_t row) {
  const int64_t b = row / g.ho, oh = row % g.ho, c = g.c, s = g.stride;
  const int64_t top = oh * s - g.pad_top;  // the input row of kernel row 0
  const int64_t i_lo = std::max<int64_t>(0, -top), i_hi = std::min(g.kh, g.h - top);
  const float* xb = x + b * g.h * g.w * c;
  float* out = y + row * g.wo * c;
  for (int64_t ow = 0; ow < g.wo; ++ow) {
    const int64_t left = ow * s - g.pad_left;  // the input column of kernel column 0
    const int64_t j_lo = std::max<int64_t>(0, -left), j_hi = std::min(g.kw, g.w - left);
    ForEachChunk(c, [&](auto nv, int64_t c0, int64_t tail) {
      constexpr int NV = decltype(nv)::value;
      vf acc[NV] = {};
      for (int64_t i = i_lo; i < i_hi; ++i)
        for (int64_t j = j_lo; j < j_hi; ++j)
          MulAddChunk(acc, xb + ((top + i) * g.w + left + j) * c + c0,
                      k + (i * g.kw + j) * c + c0, tail);
      StoreChunk(out + ow * c + c0, acc, tail);
    });
  }
}

// Along one axis, with `at` an input pixel's index plus the padding before the map: the kernel
// taps t in [0, n) through which it reaches one of the m output pixels, (at - t) % s == 0 and
// 0 <= (at - t) / s < m, are t = lo, lo + s, ... < hi (the first reaching output (at - lo) / s).
inline void TapRange(int64_t at, int64_t s, int64_t n, int64_t m, int64_t& lo, int64_t& hi) {
  lo = at % s;
  const int64_t first = at - s * (m - 1);  // the smallest tap with (at - t) / s < m
  if (first > lo) lo += (first - lo + s - 1) / s * s;
  hi = std::min(n, at + 1);
}

// dx[b, ih, iw] = sum over the taps (i, j) with ih = oh*s + i - pt, iw = ow*s + j - pl of
// g[b, oh, ow] * k[i, j], summed over i, then j.
void InputGradRow(const Geometry& g, const float* gy, const float* k, float* dx, int64_t row) {
  const int64_t b = row / g.h, ih = row % g.h, c = g.c, s = g.stride;
  const float* gb = gy + b * g.ho * g.wo * c;
  float* out = dx + row * g.w * c;
  const int64_t ti = ih + g.pad_top;
  int64_t i_lo, i_hi;
  TapRange(ti, s, g.kh, g.ho, i_lo, i_hi);
  for (int64_t iw = 0; iw < g.w; ++iw) {
    const int64_t tj = iw + g.pad_left;
    int64_t j_lo, j_hi;
    TapRange(tj, s, g.kw, g.wo, j_lo, j_hi);
    ForEachChunk(c, [&](auto nv, int64_t c0, int64_t tail) {
      constexpr int NV = decltype(nv)::value;
      vf acc[NV] = {};
      for (int64_t i = i_lo, oh = (ti - i_lo) / s; i < i_hi; i += s, --oh)
        for (int64_t j = j_lo, ow = (tj - j_lo) / s; j < j_hi; j += s, --ow)
          MulAddChunk(acc, gb + (oh * g.wo + ow) * c + c0, k + (i * g.kw + j) * c + c0, tail);
      StoreChunk(out + iw * c + c0, acc, tail);
    });
  }
}

// dk_b[i, j] = sum_{oh, ow} x[b, oh*s + i - pt, ow*s + j - pl] * g[b, oh, ow]: the products of
// each group of rows (kGroupPixels) are summed in float, in row-major order, the groups in
// double.
void KernelGradImage(const Geometry& g, const float* x, const float* gy, float* dk, int64_t b) {
  const int64_t c = g.c, s = g.stride, taps = g.kh * g.kw;
  const float* xb = x + b * g.h * g.w * c;
  const float* gb = gy + b * g.ho * g.wo * c;
  std::vector<double> total(taps * c, 0.0);
  const int64_t group = std::max<int64_t>(1, kGroupPixels / g.wo);
  for (int64_t oh0 = 0; oh0 < g.ho; oh0 += group) {
    const int64_t oh1 = std::min(g.ho, oh0 + group);
    ForEachChunk(c, [&](auto nv, int64_t c0, int64_t tail) {
      constexpr int NV = decltype(nv)::value;
      for (int64_t i = 0; i < g.kh; ++i)
        for (int64_t j = 0; j < g.kw; ++j) {
          // The output columns whose tap (i, j) lands inside the map.
          const int64_t ow_lo = std::max<int64_t>(0, FloorDiv(g.pad_left - j + s - 1, s));
          const int64_t ow_hi = std::min(g.wo, FloorDiv(g.w - 1 + g.pad_left - j, s) + 1);
          vf acc[NV] = {};
          for (int64_t oh = oh0; oh < oh1; ++oh) {
            const int64_t ih = oh * s + i - g.pad_top;
            if (ih < 0 || ih >= g.h) continue;
            const float* xr = xb + ih * g.w * c + c0;
            const float* gr = gb + oh * g.wo * c + c0;
            for (int64_t ow = ow_lo; ow < ow_hi; ++ow)
              MulAddChunk(acc, xr + (ow * s + j - g.pad_left) * c, gr + ow * c, tail);
          }
          float sums[NV * kLanes];
          StoreChunk(sums, acc, kLanes);
          double* t = total.data() + (i * g.kw + j) * c + c0;
          const int64_t n = (NV - 1) * kLanes + tail;
          for (int64_t l = 0; l < n; ++l) t[l] += sums[l];
        }
    });
  }
  float* out = dk + b * taps * c;
  for (int64_t t = 0; t < taps * c; ++t) out[t] = static_cast<float>(total[t]);
}

ffi::Error Check(const Geometry& g) {
  if (g.stride < 1 || g.kh < 1 || g.kw < 1 || g.pad_top < 0 || g.pad_left < 0)
    return ffi::Error(ffi::ErrorCode::kInvalidArgument, "jaxcls depthwise: bad stride/padding");
  return ffi::Error::Success();
}

ffi::Error DepthwiseFwd(ffi::ThreadPool pool, ffi::Buffer<ffi::F32> x, ffi::Buffer<ffi::F32> k,
                        ffi::ResultBuffer<ffi::F32> y, int64_t stride, int64_t pad_top,
                        int64_t pad_left) {
  auto xd = x.dimensions(), kd = k.dimensions(), yd = y->dimensions();
  if (xd.size() != 4 || kd.size() != 3 || yd.size() != 4 || kd[2] != xd[3] || yd[3] != xd[3] ||
      yd[0] != xd[0])
    return ffi::Error(ffi::ErrorCode::kInvalidArgument, "jaxcls depthwise fwd: bad shapes");
  Geometry g{xd[0], xd[1], xd[2], xd[3], kd[0], kd[1], yd[1], yd[2], stride, pad_top, pad_left};
  if (auto e = Check(g); e.failure()) return e;
  const float* xp = x.typed_data();
  const float* kp = k.typed_data();
  float* yp = y->typed_data();
  ParallelFor(pool, g.b * g.ho, [&](int64_t row) { ForwardRow(g, xp, kp, yp, row); });
  return ffi::Error::Success();
}

ffi::Error DepthwiseBwd(ffi::ThreadPool pool, ffi::Buffer<ffi::F32> x, ffi::Buffer<ffi::F32> k,
                        ffi::Buffer<ffi::F32> gy, ffi::ResultBuffer<ffi::F32> dx,
                        ffi::ResultBuffer<ffi::F32> dk, int64_t stride, int64_t pad_top,
                        int64_t pad_left) {
  auto xd = x.dimensions(), kd = k.dimensions(), gd = gy.dimensions();
  if (xd.size() != 4 || kd.size() != 3 || gd.size() != 4 || kd[2] != xd[3] || gd[3] != xd[3] ||
      gd[0] != xd[0])
    return ffi::Error(ffi::ErrorCode::kInvalidArgument, "jaxcls depthwise bwd: bad shapes");
  Geometry g{xd[0], xd[1], xd[2], xd[3], kd[0], kd[1], gd[1], gd[2], stride, pad_top, pad_left};
  if (auto e = Check(g); e.failure()) return e;
  const float* xp = x.typed_data();
  const float* kp = k.typed_data();
  const float* gp = gy.typed_data();
  float* dxp = dx->typed_data();
  float* dkp = dk->typed_data();
  // One task per image: its kernel-gradient partial, then its input-gradient rows (which reuse
  // the image's cotangent while it is still in cache).
  ParallelFor(pool, g.b, [&](int64_t b) {
    KernelGradImage(g, xp, gp, dkp, b);
    for (int64_t ih = 0; ih < g.h; ++ih) InputGradRow(g, gp, kp, dxp, b * g.h + ih);
  });
  return ffi::Error::Success();
}

}  // namespace

XLA_FFI_DEFINE_HANDLER_SYMBOL(JaxclsDepthwiseFwd, DepthwiseFwd,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::ThreadPool>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>()
                                  .Attr<int64_t>("stride")
                                  .Attr<int64_t>("pad_top")
                                  .Attr<int64_t>("pad_left"));

XLA_FFI_DEFINE_HANDLER_SYMBOL(JaxclsDepthwiseBwd, DepthwiseBwd,
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
