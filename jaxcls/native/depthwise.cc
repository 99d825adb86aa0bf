// Depthwise convolution (channel multiplier 1, NHWC, float32) for XLA:CPU, as XLA FFI handlers.
//
// Why: XLA:CPU emits reductions as scalar loops, so the kernel gradient of a depthwise conv written
// in jax.numpy ran at ~1.5 GFLOP/s, and its forward pass could not fuse the zero padding without a
// per-element bounds check. These loops run each output pixel's channel vector as one
// auto-vectorised inner loop and parallelise over rows/images on XLA's intra-op thread pool.
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
#include <cstring>
#include <vector>

#include "parallel_for.h"
#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;

namespace {

using jaxcls::ParallelFor;

struct Geometry {
  int64_t b, h, w, c, kh, kw, ho, wo, stride, pad_top, pad_left;
};

inline void MulAdd(float* __restrict acc, const float* __restrict a, const float* __restrict b,
                   int64_t n) {
  for (int64_t i = 0; i < n; ++i) acc[i] += a[i] * b[i];
}

// y[b, oh, ow] = sum_{i,j} x[b, oh*s + i - pt, ow*s + j - pl] * k[i, j] (out-of-range taps = 0).
void ForwardRow(const Geometry& g, const float* x, const float* k, float* y, int64_t row) {
  const int64_t b = row / g.ho, oh = row % g.ho, c = g.c;
  float* out = y + row * g.wo * c;
  std::memset(out, 0, sizeof(float) * g.wo * c);
  for (int64_t i = 0; i < g.kh; ++i) {
    const int64_t ih = oh * g.stride + i - g.pad_top;
    if (ih < 0 || ih >= g.h) continue;
    const float* xrow = x + (b * g.h + ih) * g.w * c;
    for (int64_t ow = 0; ow < g.wo; ++ow) {
      float* acc = out + ow * c;
      for (int64_t j = 0; j < g.kw; ++j) {
        const int64_t iw = ow * g.stride + j - g.pad_left;
        if (iw < 0 || iw >= g.w) continue;
        MulAdd(acc, xrow + iw * c, k + (i * g.kw + j) * c, c);
      }
    }
  }
}

// dx[b, ih, iw] = sum over the taps (i, j) with ih = oh*s + i - pt, iw = ow*s + j - pl of
// g[b, oh, ow] * k[i, j].
void InputGradRow(const Geometry& g, const float* gy, const float* k, float* dx, int64_t row) {
  const int64_t b = row / g.h, ih = row % g.h, c = g.c;
  float* out = dx + row * g.w * c;
  std::memset(out, 0, sizeof(float) * g.w * c);
  for (int64_t i = 0; i < g.kh; ++i) {
    const int64_t t = ih + g.pad_top - i;
    if (t < 0 || t % g.stride) continue;
    const int64_t oh = t / g.stride;
    if (oh >= g.ho) continue;
    const float* grow = gy + (b * g.ho + oh) * g.wo * c;
    for (int64_t iw = 0; iw < g.w; ++iw) {
      float* acc = out + iw * c;
      for (int64_t j = 0; j < g.kw; ++j) {
        const int64_t u = iw + g.pad_left - j;
        if (u < 0 || u % g.stride) continue;
        const int64_t ow = u / g.stride;
        if (ow >= g.wo) continue;
        MulAdd(acc, grow + ow * c, k + (i * g.kw + j) * c, c);
      }
    }
  }
}

// dk_b[i, j] = sum_{oh, ow} x[b, oh*s + i - pt, ow*s + j - pl] * g[b, oh, ow]: each output row's
// products are summed in float, rows are summed in double.
void KernelGradImage(const Geometry& g, const float* x, const float* gy, float* dk, int64_t b,
                     std::vector<float>& row_acc, std::vector<double>& total) {
  const int64_t c = g.c, taps = g.kh * g.kw;
  std::fill(total.begin(), total.end(), 0.0);
  for (int64_t oh = 0; oh < g.ho; ++oh) {
    std::fill(row_acc.begin(), row_acc.end(), 0.0f);
    const float* grow = gy + (b * g.ho + oh) * g.wo * c;
    for (int64_t i = 0; i < g.kh; ++i) {
      const int64_t ih = oh * g.stride + i - g.pad_top;
      if (ih < 0 || ih >= g.h) continue;
      const float* xrow = x + (b * g.h + ih) * g.w * c;
      for (int64_t ow = 0; ow < g.wo; ++ow) {
        const float* gp = grow + ow * c;
        for (int64_t j = 0; j < g.kw; ++j) {
          const int64_t iw = ow * g.stride + j - g.pad_left;
          if (iw < 0 || iw >= g.w) continue;
          MulAdd(row_acc.data() + (i * g.kw + j) * c, xrow + iw * c, gp, c);
        }
      }
    }
    for (int64_t t = 0; t < taps * c; ++t) total[t] += row_acc[t];
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
  const int64_t tap_values = g.kh * g.kw * g.c;
  // One task per image: its kernel-gradient partial, then its input-gradient rows (which reuse
  // the image's cotangent while it is still in cache).
  ParallelFor(pool, g.b, [&](int64_t b) {
    std::vector<float> row_acc(tap_values);
    std::vector<double> total(tap_values);
    KernelGradImage(g, xp, gp, dkp, b, row_acc, total);
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
