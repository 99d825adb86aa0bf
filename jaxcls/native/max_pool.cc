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
// And with BatchNorm's apply inside (training; models/batch_stats.py): the pool of
// x * mul + shift (per channel, one fused multiply-add as XLA computes it) without that map ever
// written, and its gradient with BatchNorm's backward applied as it is written out:
//   jaxcls_max_pool_affine_fwd(x[B,H,W,C], a[2,C] = (mul, shift))
//       -> (y, winner, picked[B,Ho,Wo,C]): picked is x at each output's winning tap (0 for a
//       winner in the padding or a NaN window), for the sums BatchNorm's gradient needs
//   jaxcls_max_pool_affine_bwd(g, a[4,C] = (mul, alpha, beta, mean), winner, x) -> dx[B,H,W,C]:
//       mul * gx + alpha + beta * (x - mean), gx the plain pool gradient above
//
// Attributes: window_h, window_w, stride, pad_top, pad_left (the rest follows from the shapes).
//
// The same results as models/pool.py's 'taps' form, bit for bit, except for NaN: taps in the
// padding read -inf; the winner is the first tap (row-major) equal to the window's maximum, so
// ties go to the first; a window holding a NaN gives NaN and no winner (-1: its gradient is
// dropped), where XLA's reduce-window keeps or drops the NaN by its place. Each input's
// gradient adds the gradients of the outputs it won in tap order, as the taps form's sum of
// strided pads does.
//
// Built at first use by jaxcls/native/__init__.py (g++ -O3 -march=native) with the other kernels.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#if defined(__AVX2__) || defined(__AVX512F__)
#include <immintrin.h>
#endif
#include <limits>
#include <string>
#include <utility>
#include <vector>

#include "parallel_for.h"
#include "simd.h"
#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;

namespace {

using jaxcls::kLanes;
using jaxcls::Load;
using jaxcls::MulAdd;
using jaxcls::ParallelFor;
using jaxcls::Splat;
using jaxcls::vf;

typedef int32_t vi __attribute__((vector_size(4 * kLanes)));  // a lane mask or tap per channel

constexpr int kVectors = 4;        // channel vectors per pass over a window (in registers)
constexpr int64_t kMaxTaps = 127;  // the winners are int8
constexpr float kNegInf = -std::numeric_limits<float>::infinity();

struct PoolGeometry {
  int64_t b, h, w, c, ho, wo, kh, kw, stride, pad_top, pad_left;
};

// Stores a vector's winners as int8.
inline void StoreWinners(int8_t* dst, vi w) {
#ifdef __AVX512F__
  const __m128i bytes = _mm512_cvtepi32_epi8(reinterpret_cast<__m512i>(w));
  _mm_storeu_si128(reinterpret_cast<__m128i*>(dst), bytes);
#else
  for (int k = 0; k < kLanes; ++k) dst[k] = static_cast<int8_t>(w[k]);
#endif
}

// g's lanes whose winner (int8, at w) is tap t, zero elsewhere. (GCC's generic int8 -> int32
// vector conversion went lane by lane here: 2x slower than XLA's loops.)
inline vf Chosen(const int8_t* w, const float* g, int32_t t) {
#if defined(__AVX512F__)
  const __m512i wi = _mm512_cvtepi8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(w)));
  return reinterpret_cast<vf>(
      _mm512_maskz_loadu_ps(_mm512_cmpeq_epi32_mask(wi, _mm512_set1_epi32(t)), g));
#elif defined(__AVX2__)
  const __m256i wi = _mm256_cvtepi8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(w)));
  const __m256 chosen = _mm256_castsi256_ps(_mm256_cmpeq_epi32(wi, _mm256_set1_epi32(t)));
  return reinterpret_cast<vf>(_mm256_and_ps(chosen, _mm256_loadu_ps(g)));
#else
  vf out;
  for (int k = 0; k < kLanes; ++k) out[k] = w[k] == t ? g[k] : 0.0f;
  return out;
#endif
}

// Copies n floats to dst with non-temporal stores where dst is 64-byte aligned: the gradient is
// written once and not read back soon, and ordinary stores would first read every line of it
// (fresh memory: 2x the traffic).
inline void StreamOut(const float* src, float* dst, int64_t n) {
#ifdef __AVX512F__
  int64_t k = 0;
  while (k < n && reinterpret_cast<uintptr_t>(dst + k) % 64) dst[k] = src[k], ++k;
  for (; k + 16 <= n; k += 16) _mm512_stream_ps(dst + k, _mm512_loadu_ps(src + k));
  for (; k < n; ++k) dst[k] = src[k];
  _mm_sfence();  // this thread's streamed stores are visible before its task counts as done
#else
  std::memcpy(dst, src, sizeof(float) * n);
#endif
}

// The per-channel map the affine forward pass applies to every input before pooling (null: none).
struct Affine {
  const float* mul = nullptr;
  const float* shift = nullptr;
};

// The forward pass of one output pixel over channels c0 .. c0 + V*kLanes: tap[t] points at the
// input pixel tap t reads, or is null in the padding.
template <int V, bool kAffine>
inline void ForwardVectors(const float* const* tap, int32_t taps, int64_t c0, float* y,
                           int8_t* winner, const Affine& affine, float* picked) {
  vf best[V], mul[V], shift[V], raw[V];
  vi win[V], nan[V];
  for (int v = 0; v < V; ++v) best[v] = Splat(kNegInf), win[v] = vi{} - 1, nan[v] = vi{};
  if constexpr (kAffine) {
    for (int v = 0; v < V; ++v) {
      mul[v] = Load(affine.mul + c0 + v * kLanes);
      shift[v] = Load(affine.shift + c0 + v * kLanes);
      raw[v] = vf{};
    }
  }
  for (int32_t t = 0; t < taps; ++t) {
    const vi tv = vi{} + t;
    if (!tap[t]) {  // reads -inf: wins only while nothing larger was seen
      for (int v = 0; v < V; ++v) win[v] = (win[v] < 0) & (best[v] == kNegInf) ? tv : win[v];
      continue;
    }
    for (int v = 0; v < V; ++v) {
      const vf in = Load(tap[t] + c0 + v * kLanes);
      vf x = in;
      if constexpr (kAffine) x = MulAdd(in, mul[v], shift[v]);
      const vi take = (x > best[v]) | ((win[v] < 0) & (x == best[v]));
      best[v] = take ? x : best[v];
      if constexpr (kAffine) raw[v] = take ? in : raw[v];
      win[v] = take ? tv : win[v];
      nan[v] |= x != x;
    }
  }
  for (int v = 0; v < V; ++v) {
    const vf out = nan[v] ? Splat(std::numeric_limits<float>::quiet_NaN()) : best[v];
    std::memcpy(y + c0 + v * kLanes, &out, sizeof(out));
    StoreWinners(winner + c0 + v * kLanes, nan[v] ? vi{} - 1 : win[v]);
    if constexpr (kAffine) {
      const vf in = nan[v] ? vf{} : raw[v];
      std::memcpy(picked + c0 + v * kLanes, &in, sizeof(in));
    }
  }
}

// The same for channels c0 .. c - 1 (fewer than a vector), one at a time.
template <bool kAffine>
inline void ForwardTail(const float* const* tap, int32_t taps, int64_t c0, int64_t c, float* y,
                        int8_t* winner, const Affine& affine, float* picked) {
  for (int64_t k = c0; k < c; ++k) {
    float best = kNegInf, raw = 0.0f;
    int32_t win = -1;
    bool nan = false;
    for (int32_t t = 0; t < taps; ++t) {
      const float in = tap[t] ? tap[t][k] : kNegInf;
      float x = in;
      if (kAffine && tap[t]) x = MulAdd(in, affine.mul[k], affine.shift[k]);
      if (x > best || (win < 0 && x == best)) best = x, win = t, raw = tap[t] ? in : 0.0f;
      nan |= x != x;
    }
    y[k] = nan ? std::numeric_limits<float>::quiet_NaN() : best;
    winner[k] = static_cast<int8_t>(nan ? -1 : win);
    if (kAffine) picked[k] = nan ? 0.0f : raw;
  }
}

// Output row `row` (image * Ho + output row): y and the winners of each of its pixels.
template <bool kAffine>
void ForwardRow(const PoolGeometry& g, const float* x, float* y, int8_t* winner, int64_t row,
                const Affine& affine, float* picked) {
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
    float* p = kAffine ? picked + out : nullptr;
    for (; c0 + kWide <= g.c; c0 += kWide)
      ForwardVectors<kVectors, kAffine>(tap, taps, c0, y + out, winner + out, affine, p);
    for (; c0 + kLanes <= g.c; c0 += kLanes)
      ForwardVectors<1, kAffine>(tap, taps, c0, y + out, winner + out, affine, p);
    ForwardTail<kAffine>(tap, taps, c0, g.c, y + out, winner + out, affine, p);
  }
}

// Input row `row` (image * H + input row): each pixel's gradient, the sum over the window taps in
// tap order of the gradients of the outputs that have the pixel as that tap and chose it. The
// row is zeroed, then each tap adds its outputs' gradients (an output's pixel differs per tap, so
// every pixel gets at most one term per tap); the row stays in cache across the taps.
// BatchNorm's backward pass applied to each input gradient gx as it is written out (null: none):
// mul * gx + alpha + beta * (x - mean), per channel, x the pool's (BatchNorm's) input.
struct NormGrad {
  const float* x;
  const float* mul;
  const float* alpha;
  const float* beta;
  const float* mean;
};

void BackwardRow(const PoolGeometry& g, const float* gy, const int8_t* winner, float* dx,
                 int64_t row, std::vector<float>& buffer, const NormGrad* norm) {
  const int64_t b = row / g.h, ih = row % g.h, c = g.c, n = g.w * c;
  buffer.assign(n, 0.0f);
  float* out = buffer.data();
  const int64_t full = c / kLanes * kLanes;
  for (int64_t i = 0; i < g.kh; ++i) {
    const int64_t th = ih + g.pad_top - i;  // the output row's first input row, times the stride
    if (th < 0 || th % g.stride || th / g.stride >= g.ho) continue;
    const int64_t oh = th / g.stride;
    for (int64_t j = 0; j < g.kw; ++j) {
      const int32_t t = static_cast<int32_t>(i * g.kw + j);
      // Outputs ow whose tap j lands inside the row: 0 <= ow * stride + j - pad_left < W (none
      // where the tap lies beyond the row's last pixel for ow = 0: C++ division truncates).
      const int64_t first = g.pad_left - j, last = g.w - 1 + g.pad_left - j;
      if (last < 0) continue;
      const int64_t lo = first > 0 ? (first + g.stride - 1) / g.stride : 0;
      const int64_t hi = std::min<int64_t>(g.wo, last / g.stride + 1);
      for (int64_t ow = lo; ow < hi; ++ow) {
        const int64_t at = ((b * g.ho + oh) * g.wo + ow) * c;
        const float* gp = gy + at;
        const int8_t* wp = winner + at;
        float* dp = out + (ow * g.stride + j - g.pad_left) * c;
        int64_t k = 0;
        for (; k < full; k += kLanes) {
          const vf sum = Load(dp + k) + Chosen(wp + k, gp + k, t);
          std::memcpy(dp + k, &sum, sizeof(sum));
        }
        for (; k < c; ++k) dp[k] += wp[k] == t ? gp[k] : 0.0f;
      }
    }
  }
  if (norm) {  // one channel vector at a time, its four factors in registers
    const float* xr = norm->x + row * n;
    for (int64_t k = 0; k < full; k += kLanes) {
      const vf mul = Load(norm->mul + k), alpha = Load(norm->alpha + k);
      const vf beta = Load(norm->beta + k), mean = Load(norm->mean + k);
      for (int64_t p = k; p < n; p += c) {
        const vf v = MulAdd(beta, Load(xr + p) - mean, MulAdd(mul, Load(out + p), alpha));
        std::memcpy(out + p, &v, sizeof(v));
      }
    }
    for (int64_t k = full; k < c; ++k)
      for (int64_t p = k; p < n; p += c)
        out[p] = MulAdd(norm->beta[k], xr[p] - norm->mean[k],
                        MulAdd(norm->mul[k], out[p], norm->alpha[k]));
  }
  StreamOut(out, dx + row * n, n);
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

// The forward pass over every output row: plain, or with BatchNorm's apply (kAffine).
template <bool kAffine>
void Forward(ffi::ThreadPool& pool, const PoolGeometry& g, const float* x, float* y,
             int8_t* winner, const Affine& affine, float* picked) {
  ParallelFor(pool, g.b * g.ho,
              [&](int64_t row) { ForwardRow<kAffine>(g, x, y, winner, row, affine, picked); });
}

// The backward pass over every input row; norm as in BackwardRow.
void Backward(ffi::ThreadPool& pool, const PoolGeometry& g, const float* gy, const int8_t* winner,
              float* dx, const NormGrad* norm) {
  ParallelFor(pool, g.b * g.h, [&](int64_t row) {
    thread_local std::vector<float> buffer;
    BackwardRow(g, gy, winner, dx, row, buffer, norm);
  });
}

// The geometry of a backward call, its winners checked against the output gradient.
ffi::Error BackwardGeometry(const char* what, const ffi::Buffer<ffi::F32>& gy,
                            const ffi::Buffer<ffi::S8>& winner, ffi::Span<const int64_t> dx,
                            int64_t window_h, int64_t window_w, int64_t stride, int64_t pad_top,
                            int64_t pad_left, PoolGeometry* g) {
  if (auto e = MakeGeometry(what, dx, gy.dimensions(), window_h, window_w, stride,
                            pad_top, pad_left, g);
      e.failure())
    return e;
  if (winner.element_count() != gy.element_count())
    return ffi::Error(ffi::ErrorCode::kInvalidArgument,
                      std::string("jaxcls max pool ") + what +
                          ": the winners and the gradient differ in size");
  return ffi::Error::Success();
}

// The operand of per-channel vectors (rows x C) must match the map's channels.
ffi::Error CheckVectors(const char* what, const ffi::Buffer<ffi::F32>& a, int64_t rows,
                        const PoolGeometry& g) {
  if (a.element_count() != rows * g.c)
    return ffi::Error(ffi::ErrorCode::kInvalidArgument,
                      std::string("jaxcls max pool ") + what + ": needs " +
                          std::to_string(rows) + " per-channel vectors");
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
  Forward<false>(pool, g, x.typed_data(), y->typed_data(), winner->typed_data(), {}, nullptr);
  return ffi::Error::Success();
}

ffi::Error MaxPoolAffineFwd(ffi::ThreadPool pool, ffi::Buffer<ffi::F32> x,
                            ffi::Buffer<ffi::F32> a, ffi::ResultBuffer<ffi::F32> y,
                            ffi::ResultBuffer<ffi::S8> winner, ffi::ResultBuffer<ffi::F32> picked,
                            int64_t window_h, int64_t window_w, int64_t stride, int64_t pad_top,
                            int64_t pad_left) {
  PoolGeometry g;
  if (auto e = MakeGeometry("affine fwd", x.dimensions(), y->dimensions(), window_h, window_w,
                            stride, pad_top, pad_left, &g);
      e.failure())
    return e;
  if (auto e = CheckVectors("affine fwd", a, 2, g); e.failure()) return e;
  if (picked->element_count() != y->element_count())
    return ffi::Error(ffi::ErrorCode::kInvalidArgument,
                      "jaxcls max pool affine fwd: the picked inputs must have the output's shape");
  const Affine affine{a.typed_data(), a.typed_data() + g.c};
  Forward<true>(pool, g, x.typed_data(), y->typed_data(), winner->typed_data(), affine,
                picked->typed_data());
  return ffi::Error::Success();
}

ffi::Error MaxPoolBwd(ffi::ThreadPool pool, ffi::Buffer<ffi::F32> gy, ffi::Buffer<ffi::S8> winner,
                      ffi::ResultBuffer<ffi::F32> dx, int64_t window_h, int64_t window_w,
                      int64_t stride, int64_t pad_top, int64_t pad_left) {
  PoolGeometry g;
  if (auto e = BackwardGeometry("bwd", gy, winner, dx->dimensions(), window_h, window_w, stride, pad_top,
                                pad_left, &g);
      e.failure())
    return e;
  Backward(pool, g, gy.typed_data(), winner.typed_data(), dx->typed_data(), nullptr);
  return ffi::Error::Success();
}

ffi::Error MaxPoolAffineBwd(ffi::ThreadPool pool, ffi::Buffer<ffi::F32> gy,
                            ffi::Buffer<ffi::F32> a, ffi::Buffer<ffi::S8> winner,
                            ffi::Buffer<ffi::F32> x, ffi::ResultBuffer<ffi::F32> dx,
                            int64_t window_h, int64_t window_w, int64_t stride, int64_t pad_top,
                            int64_t pad_left) {
  PoolGeometry g;
  if (auto e = BackwardGeometry("affine bwd", gy, winner, dx->dimensions(), window_h, window_w, stride,
                                pad_top, pad_left, &g);
      e.failure())
    return e;
  if (auto e = CheckVectors("affine bwd", a, 4, g); e.failure()) return e;
  if (x.element_count() != dx->element_count())
    return ffi::Error(ffi::ErrorCode::kInvalidArgument,
                      "jaxcls max pool affine bwd: the input and its gradient differ in size");
  const float* ap = a.typed_data();
  const NormGrad norm{x.typed_data(), ap, ap + g.c, ap + 2 * g.c, ap + 3 * g.c};
  Backward(pool, g, gy.typed_data(), winner.typed_data(), dx->typed_data(), &norm);
  return ffi::Error::Success();
}

// Every handler's attributes, after its operands and results: the window, stride and padding.
template <typename Binding>
auto PoolAttrs(Binding binding) {
  return std::move(binding)
      .template Attr<int64_t>("window_h")
      .template Attr<int64_t>("window_w")
      .template Attr<int64_t>("stride")
      .template Attr<int64_t>("pad_top")
      .template Attr<int64_t>("pad_left");
}

}  // namespace

using F32 = ffi::Buffer<ffi::F32>;
using S8 = ffi::Buffer<ffi::S8>;

XLA_FFI_DEFINE_HANDLER_SYMBOL(
    JaxclsMaxPoolFwd, MaxPoolFwd,
    PoolAttrs(ffi::Ffi::Bind().Ctx<ffi::ThreadPool>().Arg<F32>().Ret<F32>().Ret<S8>()));

XLA_FFI_DEFINE_HANDLER_SYMBOL(
    JaxclsMaxPoolBwd, MaxPoolBwd,
    PoolAttrs(ffi::Ffi::Bind().Ctx<ffi::ThreadPool>().Arg<F32>().Arg<S8>().Ret<F32>()));

XLA_FFI_DEFINE_HANDLER_SYMBOL(JaxclsMaxPoolAffineFwd, MaxPoolAffineFwd,
                              PoolAttrs(ffi::Ffi::Bind()
                                            .Ctx<ffi::ThreadPool>()
                                            .Arg<F32>()
                                            .Arg<F32>()
                                            .Ret<F32>()
                                            .Ret<S8>()
                                            .Ret<F32>()));

XLA_FFI_DEFINE_HANDLER_SYMBOL(JaxclsMaxPoolAffineBwd, MaxPoolAffineBwd,
                              PoolAttrs(ffi::Ffi::Bind()
                                            .Ctx<ffi::ThreadPool>()
                                            .Arg<F32>()
                                            .Arg<F32>()
                                            .Arg<S8>()
                                            .Arg<F32>()
                                            .Ret<F32>()));
