// Max pooling (NHWC, float32) as XLA FFI handlers: the forward pass, which also records each
// output's winning window tap, and the gradient, which sends each output's gradient back to that
// tap's input.
//
// Why: ResNet's 3x3 stride-2 stem pool on a [32, 112, 112, 64] map (224 px, batch 32) cost about
// 110 ms of ResNet-18's 2.1 s train step on one device, 2 threads, as XLA's loops: a padded copy
// of the input (34 ms), the reduce-window (39 ms), nine tap comparisons for the winners and, in
// the backward pass, nine strided pads added up (38 ms). Here each is one pass over its operands
// (docs/performance.md, "Max pooling natively").
//
//   jaxcls_max_pool_fwd(x[B,H,W,C]) -> (y[B,Ho,Wo,C], winner[B,Ho,Wo,C] int8)
//   jaxcls_max_pool_bwd(g[B,Ho,Wo,C], winner[B,Ho,Wo,C]) -> dx[B,H,W,C]
//
// Attributes: window_h, window_w, stride, pad_top, pad_left (the rest follows from the shapes).
//
// The same results as models/pool.py's 'taps' form, bit for bit: taps in the padding read -inf;
// the winner is the first tap (row-major) equal to the window's maximum, so ties go to the first;
// a window holding a NaN gives NaN and no winner (-1: its gradient is dropped). Each input's
// gradient adds the gradients of the outputs it won in tap order, as the taps form's sum of
// strided pads does.
//
// Built at first use by jaxcls/native/__init__.py (g++ -O3 -march=native) with the other kernels.

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "parallel_for.h"
#include "simd.h"
#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;

namespace {

using jaxcls::kLanes;
using jaxcls::Load;
using jaxcls::ParallelFor;
using jaxcls::vf;

typedef int32_t vi __attribute__((vector_size(4 * kLanes)));  // a lane mask or tap per channel
typedef int8_t vb __attribute__((vector_size(kLanes)));        // a vector's winners, as stored

constexpr int kVectors = 4;        // channel vectors per pass over a window (in registers)
constexpr int64_t kMaxTaps = 127;  // the winners are int8
constexpr float kNegInf = -std::numeric_limits<float>::infinity();

struct PoolGeometry {
  int64_t b, h, w, c, ho, wo, kh, kw, stride, pad_top, pad_left;
};

// The forward pass of one output pixel over channels c0 .. c0 + V*kLanes: tap[t] points at the
// input pixel tap t reads, or is null in the padding.
template <int V>
inline void ForwardVectors(const float* const* tap, int32_t taps, int64_t c0, float* y,
                           int8_t* winner) {
  vf best[V];
  vi win[V], nan[V];
  for (int v = 0; v < V; ++v) best[v] = vf{} + kNegInf, win[v] = vi{} - 1, nan[v] = vi{};
  for (int32_t t = 0; t < taps; ++t) {
    const vi tv = vi{} + t;
    if (!tap[t]) {  // reads -inf: wins only while nothing larger was seen
      for (int v = 0; v < V; ++v) win[v] = (win[v] < 0) & (best[v] == kNegInf) ? tv : win[v];
      continue;
    }
    for (int v = 0; v < V; ++v) {
      const vf x = Load(tap[t] + c0 + v * kLanes);
      const vi take = (x > best[v]) | ((win[v] < 0) & (x == best[v]));
      best[v] = take ? x : best[v];
      win[v] = take ? tv : win[v];
      nan[v] |= x != x;
    }
  }
  for (int v = 0; v < V; ++v) {
    const vf out = nan[v] ? vf{} + std::numeric_limits<float>::quiet_NaN() : best[v];
    const vb w = __builtin_convertvector(nan[v] ? vi{} - 1 : win[v], vb);
    std::memcpy(y + c0 + v * kLanes, &out, sizeof(out));
    std::memcpy(winner + c0 + v * kLanes, &w, sizeof(w));
  }
}

// The same for channels c0 .. c - 1 (fewer than a vector), one at a time.
inline void ForwardTail(const float* const* tap, int32_t taps, int64_t c0, int64_t c, float* y,
                        int8_t* winner) {
  for (int64_t k = c0; k < c; ++k) {
    float best = kNegInf;
    int32_t win = -1;
    bool nan = false;
    for (int32_t t = 0; t < taps; ++t) {
      const float x = tap[t] ? tap[t][k] : kNegInf;
      if (x > best || (win < 0 && x == best)) best = x, win = t;
      nan |= x != x;
    }
    y[k] = nan ? std::numeric_limits<float>::quiet_NaN() : best;
    winner[k] = static_cast<int8_t>(nan ? -1 : win);
  }
}

// Output row `row` (image * Ho + output row): y and the winners of each of its pixels.
void ForwardRow(const PoolGeometry& g, const float* x, float* y, int8_t* winner, int64_t row) {
  const int64_t b = row / g.ho, oh = row % g.ho;
  const int32_t taps = static_cast<int32_t>(g.kh * g.kw);
  const float* tap[kMaxTaps];
  constexpr int64_t kWide = kVectors * kLanes;
  for (int64_t ow = 0; ow < g.wo; ++ow) {
    for (int64_t i = 0; i < g.kh; ++i) {
      const int64_t ih = oh * g.stride + i - g.pad_top;
      for (int64_t j = 0; j < g.kw; ++j) {
        const int64_t iw = ow * g.stride + j - g.pad_left;
        const bool inside = ih >= 0 && ih < g.h && iw >= 0 && iw < g.w;
        tap[i * g.kw + j] = inside ? x + ((b * g.h + ih) * g.w + iw) * g.c : nullptr;
      }
    }
    const int64_t out = (row * g.wo + ow) * g.c;
    int64_t c0 = 0;
    for (; c0 + kWide <= g.c; c0 += kWide)
      ForwardVectors<kVectors>(tap, taps, c0, y + out, winner + out);
    for (; c0 + kLanes <= g.c; c0 += kLanes) ForwardVectors<1>(tap, taps, c0, y + out, winner + out);
    ForwardTail(tap, taps, c0, g.c, y + out, winner + out);
  }
}

// One input pixel's gradient over channels c0 .. c0 + V*kLanes: the sum, in tap order, of the
// gradients of the outputs (src[k], at tap tk[k]) whose winner it is.
template <int V>
inline void BackwardVectors(const float* const* src_g, const int8_t* const* src_w,
                            const int32_t* tk, int n, int64_t c0, float* dx) {
  vf acc[V] = {};
  for (int k = 0; k < n; ++k) {
    const vi tv = vi{} + tk[k];
    for (int v = 0; v < V; ++v) {
      vb wb;
      std::memcpy(&wb, src_w[k] + c0 + v * kLanes, sizeof(wb));
      acc[v] += __builtin_convertvector(wb, vi) == tv ? Load(src_g[k] + c0 + v * kLanes) : vf{};
    }
  }
  std::memcpy(dx + c0, acc, sizeof(acc));
}

// For each position along one axis (an input row or column), the taps that read it and the
// output position each belongs to: at[p * k + n] for its n-th tap, in tap order; count[p].
struct AxisTaps {
  std::vector<int32_t> tap, out, count;
  AxisTaps(int64_t size, int64_t out_size, int64_t kernel, int64_t stride, int64_t pad)
      : tap(size * kernel), out(size * kernel), count(size) {
    for (int64_t p = 0; p < size; ++p) {
      int32_t n = 0;
      for (int64_t i = 0; i < kernel; ++i) {
        const int64_t t = p + pad - i;  // the output's first input row, times the stride
        if (t < 0 || t % stride || t / stride >= out_size) continue;
        tap[p * kernel + n] = static_cast<int32_t>(i);
        out[p * kernel + n] = static_cast<int32_t>(t / stride);
        ++n;
      }
      count[p] = n;
    }
  }
};

// Input row `row` (image * H + input row): each pixel's gradient.
void BackwardRow(const PoolGeometry& g, const AxisTaps& rows, const AxisTaps& cols,
                 const float* gy, const int8_t* winner, float* dx, int64_t row) {
  const int64_t b = row / g.h, ih = row % g.h;
  constexpr int64_t kWide = kVectors * kLanes;
  const float* src_g[kMaxTaps];
  const int8_t* src_w[kMaxTaps];
  int32_t tk[kMaxTaps];
  for (int64_t iw = 0; iw < g.w; ++iw) {
    int n = 0;
    for (int32_t a = 0; a < rows.count[ih]; ++a) {
      const int64_t i = rows.tap[ih * g.kh + a], oh = rows.out[ih * g.kh + a];
      for (int32_t e = 0; e < cols.count[iw]; ++e) {
        const int64_t j = cols.tap[iw * g.kw + e], ow = cols.out[iw * g.kw + e];
        const int64_t at = ((b * g.ho + oh) * g.wo + ow) * g.c;
        src_g[n] = gy + at, src_w[n] = winner + at, tk[n] = static_cast<int32_t>(i * g.kw + j);
        ++n;
      }
    }
    float* out = dx + (row * g.w + iw) * g.c;
    int64_t c0 = 0;
    for (; c0 + kWide <= g.c; c0 += kWide) BackwardVectors<kVectors>(src_g, src_w, tk, n, c0, out);
    for (; c0 + kLanes <= g.c; c0 += kLanes) BackwardVectors<1>(src_g, src_w, tk, n, c0, out);
    for (; c0 < g.c; ++c0) {
      float acc = 0.0f;
      for (int k = 0; k < n; ++k) acc += src_w[k][c0] == tk[k] ? src_g[k][c0] : 0.0f;
      out[c0] = acc;
    }
  }
}

ffi::Error MakeGeometry(const char* what, ffi::Span<const int64_t> in, ffi::Span<const int64_t> out,
                        int64_t window_h, int64_t window_w, int64_t stride, int64_t pad_top,
                        int64_t pad_left, PoolGeometry* g) {
  const std::string op = std::string("jaxcls max pool ") + what;
  if (in.size() != 4 || out.size() != 4 || in[0] != out[0] || in[3] != out[3])
    return ffi::Error(ffi::ErrorCode::kInvalidArgument, op + ": bad shapes");
  if (window_h < 1 || window_w < 1 || window_h * window_w > kMaxTaps || stride < 1 ||
      pad_top < 0 || pad_left < 0 || pad_top >= window_h || pad_left >= window_w)
    return ffi::Error(ffi::ErrorCode::kInvalidArgument,
                      op + ": needs a window of 1-" + std::to_string(kMaxTaps) +
                          " taps, stride >= 1 and padding smaller than the window");
  *g = PoolGeometry{in[0],  in[1],    in[2],    in[3],  out[1],  out[2],
                    window_h, window_w, stride, pad_top, pad_left};
  return ffi::Error::Success();
}

ffi::Error MaxPoolFwd(ffi::ThreadPool pool, ffi::Buffer<ffi::F32> x,
                      ffi::ResultBuffer<ffi::F32> y, ffi::ResultBuffer<ffi::S8> winner,
                      int64_t window_h, int64_t window_w, int64_t stride, int64_t pad_top,
                      int64_t pad_left) {
  PoolGeometry g;
  if (auto e = MakeGeometry("fwd", x.dimensions(), y->dimensions(), window_h, window_w, stride,
                            pad_top, pad_left, &g);
      e.failure())
    return e;
  const float* xp = x.typed_data();
  float* yp = y->typed_data();
  int8_t* wp = winner->typed_data();
  ParallelFor(pool, g.b * g.ho, [&](int64_t row) { ForwardRow(g, xp, yp, wp, row); });
  return ffi::Error::Success();
}

ffi::Error MaxPoolBwd(ffi::ThreadPool pool, ffi::Buffer<ffi::F32> gy, ffi::Buffer<ffi::S8> winner,
                      ffi::ResultBuffer<ffi::F32> dx, int64_t window_h, int64_t window_w,
                      int64_t stride, int64_t pad_top, int64_t pad_left) {
  PoolGeometry g;
  if (auto e = MakeGeometry("bwd", dx->dimensions(), gy.dimensions(), window_h, window_w, stride,
                            pad_top, pad_left, &g);
      e.failure())
    return e;
  if (winner.element_count() != gy.element_count())
    return ffi::Error(ffi::ErrorCode::kInvalidArgument,
                      "jaxcls max pool bwd: the winners and the gradient differ in size");
  const float* gp = gy.typed_data();
  const int8_t* wp = winner.typed_data();
  float* dp = dx->typed_data();
  const AxisTaps rows(g.h, g.ho, g.kh, g.stride, g.pad_top);
  const AxisTaps cols(g.w, g.wo, g.kw, g.stride, g.pad_left);
  ParallelFor(pool, g.b * g.h,
              [&](int64_t row) { BackwardRow(g, rows, cols, gp, wp, dp, row); });
  return ffi::Error::Success();
}

}  // namespace

XLA_FFI_DEFINE_HANDLER_SYMBOL(JaxclsMaxPoolFwd, MaxPoolFwd,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::ThreadPool>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::S8>>()
                                  .Attr<int64_t>("window_h")
                                  .Attr<int64_t>("window_w")
                                  .Attr<int64_t>("stride")
                                  .Attr<int64_t>("pad_top")
                                  .Attr<int64_t>("pad_left"));

XLA_FFI_DEFINE_HANDLER_SYMBOL(JaxclsMaxPoolBwd, MaxPoolBwd,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::ThreadPool>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::S8>>()
                                  .Ret<ffi::Buffer<ffi::F32>>()
                                  .Attr<int64_t>("window_h")
                                  .Attr<int64_t>("window_w")
                                  .Attr<int64_t>("stride")
                                  .Attr<int64_t>("pad_top")
                                  .Attr<int64_t>("pad_left"));
