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
//   jaxcls_depthwise_fwd_moments(x[B,H,W,C], k[KH,KW,C]) -> (y[B,Ho,Wo,C], m[B,2,C])
//   jaxcls_depthwise_bwd(x[B,H,W,C], k[KH,KW,C], g[B,Ho,Wo,C]) -> (dx[B,H,W,C], dk[B,KH,KW,C])
//
// Attributes: stride, pad_top, pad_left (the bottom/right padding follows from the shapes). The
// backward returns the kernel gradient per image (summed over the batch by the caller), which
// keeps every image's work independent and the sum's order fixed. In training the forward pass
// runs as jaxcls_depthwise_fwd_moments, which also returns, per image, the moments of its output
// (sum y, sum y * y per channel, taken over each output row right after it is written, while in
// cache) for the BatchNorm that follows
// (models/batch_stats.py; docs/performance.md, "BatchNorm's moments from the depthwise kernels"):
// that BatchNorm no longer reads the whole output again to sum it.
//
// The same on BatchNorm's output passed through a ReLU (hi = inf) or ReLU6 (hi = 6), computed
// inside the kernels from BatchNorm's input x and per-channel mul and shift (models/batch_stats.py
// normalize_act_depthwise_train; docs/performance.md, "BatchNorm and ReLU6 inside the depthwise
// kernels"):
//
//   jaxcls_depthwise_affine_fwd(x[B,H,W,C], ka[KH*KW+2,C]) -> (y[B,Ho,Wo,C], m[B,2,C])
//   jaxcls_depthwise_affine_bwd(x[B,H,W,C], ka[KH*KW+2,C], g[B,Ho,Wo,C])
//       -> (gy[B,H,W,C], out[B,KH*KW+2,C])
//
// ka: the kernel's taps, then mul, then shift; attributes as above and kw, hi. gy is the
// activation's output gradient (the plain input gradient; the caller applies the activation's
// gradient in BatchNorm's elementwise backward); out holds, per image, the kernel gradient's
// taps, then BatchNorm's backward sums, sum m * gy and sum m * gy * x with m = 0 < x * mul +
// shift < hi (as jaxcls_channel_dots_clipped).

#include <algorithm>
#include <cstdint>
#include <type_traits>
#include <vector>

#include "parallel_for.h"
#include "simd.h"
#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;

namespace {

using jaxcls::ClipGradient;
using jaxcls::kLanes;
using jaxcls::Load;
using jaxcls::MulAdd;
using jaxcls::LoadPart;
using jaxcls::ParallelFor;
using jaxcls::Splat;
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

// One image's map as rows: rows(r) is row r's first pixel (plain memory, or `ActivationRows`).
struct ImageRows {
  const float* base;
  int64_t row;  // floats per row
  const float* operator()(int64_t r) const { return base + r * row; }
  void Upto(int64_t) const {}  // every row is there (as `ActivationRows::Upto`)
};

// y[oh, ow] = sum_{i,j} x[oh*s + i - pt, ow*s + j - pl] * k[i, j] (out-of-range taps = 0) for
// one image's x (its rows) and output row oh (out), summed over i, then j.
template <typename Rows>
void ForwardRow(const Geometry& g, const Rows& rows, const float* k, float* out, int64_t oh) {
  const int64_t c = g.c, s = g.stride;
  const int64_t top = oh * s - g.pad_top;  // the input row of kernel row 0
  const int64_t i_lo = std::max<int64_t>(0, -top), i_hi = std::min(g.kh, g.h - top);
  for (int64_t ow = 0; ow < g.wo; ++ow) {
    const int64_t left = ow * s - g.pad_left;  // the input column of kernel column 0
    const int64_t j_lo = std::max<int64_t>(0, -left), j_hi = std::min(g.kw, g.w - left);
    ForEachChunk(c, [&](auto nv, int64_t c0, int64_t tail) {
      constexpr int NV = decltype(nv)::value;
      vf acc[NV] = {};
      for (int64_t i = i_lo; i < i_hi; ++i) {
        const float* xr = rows(top + i) + c0;
        for (int64_t j = j_lo; j < j_hi; ++j)
          MulAddChunk(acc, xr + (left + j) * c, k + (i * g.kw + j) * c + c0, tail);
      }
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

// BatchNorm's apply and a ReLU or ReLU6 on the convolution's input (x * mul + shift rounded once,
// as channel_sums.cc's clipped sums and XLA:CPU compute it; a NaN stays a NaN, as jnp's clip).
struct Affine {
  const float* mul;
  const float* shift;
  float hi;
};

// Per-channel sums over one row of w pixels of d, summed in float pixel by pixel, then added in
// double to s1 and s2, up to two vectors of channels at a time (their sums, and mul and shift, in
// registers over the row); as channel_sums.cc's kernels:
//   kClipped: BatchNorm's backward sums where a ReLU or ReLU6 follows it, over the activation's
//     output gradient d (just written, in cache) and BatchNorm's input x: s1 += d and s2 += d * x
//     per channel where 0 < x * mul + shift < hi (x and a unused otherwise);
//   otherwise: d's moments, s1 += d and s2 += d * d (the output row just written, for the
//     BatchNorm that follows the convolution).
template <bool kClipped>
void RowSums(const Affine& a, const float* x, const float* d, int64_t w, int64_t c, double* s1,
             double* s2) {
  constexpr int kV = 2;
  const vf hi = Splat(a.hi);
  for (int64_t c0 = 0; c0 < c; c0 += kV * kLanes) {
    const int nv = c - c0 > kLanes ? 2 : 1;
    int64_t n[kV];
    vf mul[kV], shift[kV], t1[kV] = {}, t2[kV] = {};
    for (int v = 0; v < nv; ++v) {
      n[v] = std::min<int64_t>(kLanes, c - c0 - v * kLanes);
      if constexpr (kClipped) {
        mul[v] = LoadPart(a.mul + c0 + v * kLanes, n[v]);
        shift[v] = LoadPart(a.shift + c0 + v * kLanes, n[v]);
      }
    }
    for (int64_t p = 0; p < w; ++p)
      for (int v = 0; v < nv; ++v) {
        const int64_t at = p * c + c0 + v * kLanes;
        vf dv = LoadPart(d + at, n[v]);
        vf xv = dv;
        if constexpr (kClipped) {
          xv = LoadPart(x + at, n[v]);
          dv = ClipGradient(dv, MulAdd(xv, mul[v], shift[v]), hi);
        }
        t1[v] += dv;
        t2[v] = MulAdd(dv, xv, t2[v]);
      }
    for (int v = 0; v < nv; ++v)
      for (int64_t l = 0; l < n[v]; ++l) {
        s1[c0 + v * kLanes + l] += t1[v][l];
        s2[c0 + v * kLanes + l] += t2[v][l];
      }
  }
}

// An image's per-channel sums in double, written out as float: the moments of its output
// (RowSums<false>) for the BatchNorm after the convolution, [2, C]: sum y, then sum y * y.
class ImageMoments {
 public:
  explicit ImageMoments(int64_t c) : c_(c), total_(2 * c, 0.0) {}
  void AddRow(const float* y, int64_t w) {
    RowSums<false>(Affine{}, nullptr, y, w, c_, total_.data(), total_.data() + c_);
  }
  void Write(float* out) const {
    for (int64_t t = 0; t < 2 * c_; ++t) out[t] = static_cast<float>(total_[t]);
  }

 private:
  int64_t c_;
  std::vector<double> total_;
};

// dx[ih, iw] = sum over the taps (i, j) with ih = oh*s + i - pt, iw = ow*s + j - pl of
// g[oh, ow] * k[i, j] for one image's g (gb) and input row ih (out), summed over i, then j.
void InputGradRow(const Geometry& g, const float* gb, const float* k, float* out, int64_t ih) {
  const int64_t c = g.c, s = g.stride;
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

// The output rows whose products the kernel gradient sums in float at once (kGroupPixels).
inline int64_t GroupRows(const Geometry& g) { return std::max<int64_t>(1, kGroupPixels / g.wo); }

// total[i, j] += sum over output rows [oh0, oh1) of x[oh*s + i - pt, ow*s + j - pl] * g[oh, ow]
// for one image's x (its rows) and g (gb): the products summed in float, in row-major order, then
// added in double.
template <typename Rows>
void KernelGradGroup(const Geometry& g, const Rows& rows, const float* gb, int64_t oh0,
                     int64_t oh1, double* total) {
  const int64_t c = g.c, s = g.stride;
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
          const float* xr = rows(ih) + c0;
          const float* gr = gb + oh * g.wo * c + c0;
          for (int64_t ow = ow_lo; ow < ow_hi; ++ow)
            MulAddChunk(acc, xr + (ow * s + j - g.pad_left) * c, gr + ow * c, tail);
        }
        float sums[NV * kLanes];
        StoreChunk(sums, acc, kLanes);
        double* t = total + (i * g.kw + j) * c + c0;
        const int64_t n = (NV - 1) * kLanes + tail;
        for (int64_t l = 0; l < n; ++l) t[l] += sums[l];
      }
  });
}

// dk_b[i, j] = sum_{oh, ow} x[oh*s + i - pt, ow*s + j - pl] * g[oh, ow] for one image's x (xb)
// and g (gb), into out, group by group (`KernelGradGroup`).
void KernelGradImage(const Geometry& g, const float* xb, const float* gb, float* out) {
  const int64_t taps = g.kh * g.kw;
  std::vector<double> total(taps * g.c, 0.0);
  const ImageRows rows{xb, g.w * g.c};
  const int64_t group = GroupRows(g);
  for (int64_t oh0 = 0; oh0 < g.ho; oh0 += group)
    KernelGradGroup(g, rows, gb, oh0, std::min(g.ho, oh0 + group), total.data());
  for (int64_t t = 0; t < taps * g.c; ++t) out[t] = static_cast<float>(total[t]);
}

// One image's forward pass on its rows (`ImageRows`, or `ActivationRows`: then each output row
// first computes the activation's rows it is the first to read), one output row at a time, and
// the moments of its output taken over each row just written (m: [2, C], `ImageMoments`).
template <typename Rows>
void ForwardImage(const Geometry& g, Rows& rows, const float* k, float* yb, float* m) {
  ImageMoments moments(g.c);
  for (int64_t oh = 0; oh < g.ho; ++oh) {
    rows.Upto(oh * g.stride - g.pad_top + g.kh - 1);
    float* out = yb + oh * g.wo * g.c;
    ForwardRow(g, rows, k, out, oh);
    moments.AddRow(out, g.wo);
  }
  moments.Write(m);
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
  ParallelFor(pool, g.b * g.ho, [&](int64_t row) {
    const int64_t b = row / g.ho;
    const ImageRows rows{xp + b * g.h * g.w * g.c, g.w * g.c};
    ForwardRow(g, rows, kp, yp + row * g.wo * g.c, row % g.ho);
  });
  return ffi::Error::Success();
}

// The forward pass and its output's moments per image (m[B, 2, C]): one task per image.
ffi::Error DepthwiseFwdMoments(ffi::ThreadPool pool, ffi::Buffer<ffi::F32> x,
                               ffi::Buffer<ffi::F32> k, ffi::ResultBuffer<ffi::F32> y,
                               ffi::ResultBuffer<ffi::F32> m, int64_t stride, int64_t pad_top,
                               int64_t pad_left) {
  auto xd = x.dimensions(), kd = k.dimensions(), yd = y->dimensions();
  if (xd.size() != 4 || kd.size() != 3 || yd.size() != 4 || kd[2] != xd[3] || yd[3] != xd[3] ||
      yd[0] != xd[0] || m->element_count() != xd[0] * 2 * xd[3])
    return ffi::Error(ffi::ErrorCode::kInvalidArgument, "jaxcls depthwise fwd: bad shapes");
  Geometry g{xd[0], xd[1], xd[2], xd[3], kd[0], kd[1], yd[1], yd[2], stride, pad_top, pad_left};
  if (auto e = Check(g); e.failure()) return e;
  const float* xp = x.typed_data();
  const float* kp = k.typed_data();
  float* yp = y->typed_data();
  float* mp = m->typed_data();
  const int64_t x_image = g.h * g.w * g.c, y_image = g.ho * g.wo * g.c;
  ParallelFor(pool, g.b, [&](int64_t b) {
    const ImageRows rows{xp + b * x_image, g.w * g.c};
    ForwardImage(g, rows, kp, yp + b * y_image, mp + b * 2 * g.c);
  });
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
  const int64_t x_image = g.h * g.w * g.c, g_image = g.ho * g.wo * g.c;
  ParallelFor(pool, g.b, [&](int64_t b) {
    const float* gb = gp + b * g_image;
    KernelGradImage(g, xp + b * x_image, gb, dkp + b * g.kh * g.kw * g.c);
    for (int64_t ih = 0; ih < g.h; ++ih)
      InputGradRow(g, gb, kp, dxp + b * x_image + ih * g.w * g.c, ih);
  });
  return ffi::Error::Success();
}

// One image's activation min(max(x * mul + shift, 0), hi) as rows, each computed when first
// asked for (`Upto`) into a thread's buffer of at least `rows` rows reused in turn, so that it
// stays in cache and is never written to memory: row r is valid from Upto(r) until Upto(r +
// rows). The buffer's row count is a power of two, so that finding a row is a mask, not a
// division (the forward pass looks one up per output pixel, channel chunk and kernel row).
class ActivationRows {
 public:
  ActivationRows(const Geometry& g, const Affine& a, const float* xb, int64_t rows)
      : g_(g), a_(a), xb_(xb), row_(g.w * g.c) {
    while (mask_ + 1 < rows) mask_ = 2 * mask_ + 1;
    thread_local std::vector<float> buffer;
    if (static_cast<int64_t>(buffer.size()) < (mask_ + 1) * row_) buffer.resize((mask_ + 1) * row_);
    buf_ = buffer.data();
  }
  const float* operator()(int64_t r) const { return buf_ + (r & mask_) * row_; }
  // Computes the rows up to r (at most the last) not computed yet.
  void Upto(int64_t r) {
    const vf zero = {}, hi = Splat(a_.hi);
    for (r = std::min(r, g_.h - 1); next_ <= r; ++next_) {
      const float* x = xb_ + next_ * row_;
      float* out = buf_ + (next_ & mask_) * row_;
      for (int64_t p = 0; p < g_.w; ++p)
        for (int64_t c0 = 0; c0 < g_.c; c0 += kLanes) {
          const int64_t n = std::min<int64_t>(kLanes, g_.c - c0), at = p * g_.c + c0;
          vf v = MulAdd(LoadPart(x + at, n), LoadPart(a_.mul + c0, n), LoadPart(a_.shift + c0, n));
          v = v < zero ? zero : v;
          v = v > hi ? hi : v;
          StorePart(out + at, v, n);
        }
    }
  }

 private:
  const Geometry& g_;
  const Affine& a_;
  const float* xb_;
  int64_t row_, mask_ = 0, next_ = 0;
  float* buf_;
};

// One image's backward pass on its activation, in one sweep down it: each group of output rows
// computes the activation's rows it is the first to read and adds its kernel-gradient products
// (as KernelGradImage), then the input-gradient rows of the input rows just read are written and
// BatchNorm's clipped sums taken over them (`RowSums<true>`), while those rows are in cache.
// out: the kernel gradient's kh * kw taps, then those two sums (C values each).
void AffineBackwardImage(const Geometry& g, const Affine& a, const float* xb, const float* gb,
                         const float* k, float* dxb, float* out) {
  const int64_t taps = g.kh * g.kw, c = g.c, row = g.w * c, group = GroupRows(g);
  ActivationRows rows(g, a, xb, (group - 1) * g.stride + g.kh);
  std::vector<double> total((taps + 2) * c, 0.0);
  double* s1 = total.data() + taps * c;
  double* s2 = s1 + c;
  int64_t next_ih = 0;
  auto input_rows_upto = [&](int64_t last) {
    for (; next_ih <= std::min(last, g.h - 1); ++next_ih) {
      float* dx_row = dxb + next_ih * row;
      InputGradRow(g, gb, k, dx_row, next_ih);
      RowSums<true>(a, xb + next_ih * row, dx_row, g.w, c, s1, s2);
    }
  };
  for (int64_t oh0 = 0; oh0 < g.ho; oh0 += group) {
    const int64_t oh1 = std::min(g.ho, oh0 + group);
    const int64_t last = (oh1 - 1) * g.stride - g.pad_top + g.kh - 1;
    rows.Upto(last);
    KernelGradGroup(g, rows, gb, oh0, oh1, total.data());
    input_rows_upto(last);
  }
  input_rows_upto(g.h - 1);
  for (int64_t t = 0; t < (taps + 2) * c; ++t) out[t] = static_cast<float>(total[t]);
}

// The geometry and affine of an affine call: ka holds the kernel's kh * kw taps, then mul, then
// shift, C values each.
ffi::Error AffineLayout(ffi::Buffer<ffi::F32>& x, ffi::Buffer<ffi::F32>& ka, int64_t ho,
                        int64_t wo, int64_t stride, int64_t pad_top, int64_t pad_left, int64_t kw,
                        float hi, Geometry* g, Affine* a) {
  auto xd = x.dimensions(), kd = ka.dimensions();
  if (xd.size() != 4 || kd.size() != 2 || kd[1] != xd[3] || kw < 1 || kd[0] < kw + 2 ||
      (kd[0] - 2) % kw != 0 || !(hi > 0.0f))
    return ffi::Error(ffi::ErrorCode::kInvalidArgument, "jaxcls depthwise affine: bad shapes");
  const int64_t kh = (kd[0] - 2) / kw, c = xd[3];
  *g = Geometry{xd[0], xd[1], xd[2], c, kh, kw, ho, wo, stride, pad_top, pad_left};
  const float* k = ka.typed_data();
  *a = Affine{k + kh * kw * c, k + (kh * kw + 1) * c, hi};
  return Check(*g);
}

ffi::Error DepthwiseAffineFwd(ffi::ThreadPool pool, ffi::Buffer<ffi::F32> x,
                              ffi::Buffer<ffi::F32> ka, ffi::ResultBuffer<ffi::F32> y,
                              ffi::ResultBuffer<ffi::F32> m, int64_t stride, int64_t pad_top,
                              int64_t pad_left, int64_t kw, float hi) {
  auto yd = y->dimensions();
  if (yd.size() != 4 || yd[0] != x.dimensions()[0] || yd[3] != x.dimensions()[3] ||
      m->element_count() != yd[0] * 2 * yd[3])
    return ffi::Error(ffi::ErrorCode::kInvalidArgument, "jaxcls depthwise affine fwd: bad shapes");
  Geometry g;
  Affine a;
  if (auto e = AffineLayout(x, ka, yd[1], yd[2], stride, pad_top, pad_left, kw, hi, &g, &a);
      e.failure())
    return e;
  const float* xp = x.typed_data();
  const float* kp = ka.typed_data();
  float* yp = y->typed_data();
  float* mp = m->typed_data();
  const int64_t x_image = g.h * g.w * g.c, y_image = g.ho * g.wo * g.c;
  ParallelFor(pool, g.b, [&](int64_t b) {
    ActivationRows rows(g, a, xp + b * x_image, g.kh);
    ForwardImage(g, rows, kp, yp + b * y_image, mp + b * 2 * g.c);
  });
  return ffi::Error::Success();
}

ffi::Error DepthwiseAffineBwd(ffi::ThreadPool pool, ffi::Buffer<ffi::F32> x,
                              ffi::Buffer<ffi::F32> ka, ffi::Buffer<ffi::F32> gy,
                              ffi::ResultBuffer<ffi::F32> dx, ffi::ResultBuffer<ffi::F32> dk,
                              int64_t stride, int64_t pad_top, int64_t pad_left, int64_t kw,
                              float hi) {
  auto gd = gy.dimensions(), xd = x.dimensions();
  if (gd.size() != 4 || gd[0] != xd[0] || gd[3] != xd[3] || dx->element_count() != x.element_count())
    return ffi::Error(ffi::ErrorCode::kInvalidArgument, "jaxcls depthwise affine bwd: bad shapes");
  Geometry g;
  Affine a;
  if (auto e = AffineLayout(x, ka, gd[1], gd[2], stride, pad_top, pad_left, kw, hi, &g, &a);
      e.failure())
    return e;
  const int64_t taps = g.kh * g.kw, c = g.c;
  if (dk->element_count() != g.b * (taps + 2) * c)
    return ffi::Error(ffi::ErrorCode::kInvalidArgument, "jaxcls depthwise affine bwd: bad shapes");
  const float* xp = x.typed_data();
  const float* kp = ka.typed_data();
  const float* gp = gy.typed_data();
  float* dxp = dx->typed_data();
  float* dkp = dk->typed_data();
  const int64_t x_image = g.h * g.w * c, g_image = g.ho * g.wo * c;
  ParallelFor(pool, g.b, [&](int64_t b) {
    AffineBackwardImage(g, a, xp + b * x_image, gp + b * g_image, kp, dxp + b * x_image,
                        dkp + b * (taps + 2) * c);
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

XLA_FFI_DEFINE_HANDLER_SYMBOL(JaxclsDepthwiseFwdMoments, DepthwiseFwdMoments,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::ThreadPool>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>()
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

XLA_FFI_DEFINE_HANDLER_SYMBOL(JaxclsDepthwiseAffineFwd, DepthwiseAffineFwd,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::ThreadPool>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>()
                                  .Attr<int64_t>("stride")
                                  .Attr<int64_t>("pad_top")
                                  .Attr<int64_t>("pad_left")
                                  .Attr<int64_t>("kw")
                                  .Attr<float>("hi"));

XLA_FFI_DEFINE_HANDLER_SYMBOL(JaxclsDepthwiseAffineBwd, DepthwiseAffineBwd,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::ThreadPool>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>()
                                  .Attr<int64_t>("stride")
                                  .Attr<int64_t>("pad_top")
                                  .Attr<int64_t>("pad_left")
                                  .Attr<int64_t>("kw")
                                  .Attr<float>("hi"));
