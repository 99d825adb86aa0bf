// Per-channel sums over every pixel of a batch (NHWC, float32) as XLA FFI handlers, for the
// statistics of BatchNorm in training: one pass over the activations where XLA:CPU made two
// (a YNNPACK reduction each for the mean and the mean of squares; in the backward pass for the
// sums of the output gradient and of its product with the input).
//
// Why: in ResNet-18's train step at 224 px (batch 32, one device, 2 threads) the 80 reductions
// of its 20 BatchNorm layers took 105-130 ms of a 1.53-1.57 s step; each reads its tensor from
// memory (docs/performance.md, "Tighter kernels, strided input gradients and BatchNorm's sums").
//
//   jaxcls_channel_moments(x[..., C]) -> (sum x, sum x*x)[C]
//   jaxcls_channel_dots(g[..., C], x[..., C]) -> (sum g, sum g*x)[C]
//   jaxcls_image_channel_dots(g[B, ..., C], x[B, ..., C]) -> (sum g, sum g*x)[B, C], image by
//       image (the gradient of a squeeze-excite's channel gates)
//   jaxcls_channel_dots_clipped(g[..., C], x[..., C], mul[C], shift[C]; attribute hi)
//       -> (sum m*g, sum m*g*x)[C], m = 0 < x*mul + shift < hi (x*mul + shift rounded once, as
//       XLA:CPU computes BatchNorm's apply): the sums of BatchNorm's backward pass when a ReLU
//       (hi = inf) or ReLU6 (hi = 6) follows it, taken over the output gradient g of the
//       activation, whose gradient (g where m, else 0) is then never written.
//
// The rows (pixels) are summed in blocks of kRows in float, vectorised across the channels; the
// blocks' sums are added in double in block order, so each sum runs in the same order whatever
// the thread count, and is exact to float rounding of kRows-term sums.
//
// Built at first use by jaxcls/native/__init__.py (g++ -O3 -march=native) with the other kernels.

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
using jaxcls::MulAdd;
using jaxcls::ParallelFor;
using jaxcls::Splat;
using jaxcls::vf;

constexpr int64_t kRows = 256;           // rows per block, summed in float
constexpr int64_t kBlocksPerTask = 16;   // blocks per task of the thread pool

constexpr int kVectors = 4;  // vectors of channels per pass over a block's rows

enum class Kind { kMoments, kDots, kClipped };

// kClipped's per-channel mul and shift, and the range's upper end.
struct Clip {
  const float* mul = nullptr;
  const float* shift = nullptr;
  float hi = 0.0f;
};

// Channels k0 .. k0 + V*kLanes of rows [r0, r1): sums in 2*V registers.
template <Kind K, int V>
void ChunkSums(const float* a, const float* b, const Clip& clip, int64_t c, int64_t r0,
               int64_t r1, int64_t k0, float* s1, float* s2) {
  vf t1[V] = {}, t2[V] = {};
  vf mul[V], shift[V];
  if constexpr (K == Kind::kClipped)
    for (int v = 0; v < V; ++v) {
      mul[v] = Load(clip.mul + k0 + v * kLanes);
      shift[v] = Load(clip.shift + k0 + v * kLanes);
    }
  const vf hi = Splat(clip.hi);
  for (int64_t r = r0; r < r1; ++r) {
    const float* ar = a + r * c + k0;
    const float* br = (K == Kind::kMoments ? a : b) + r * c + k0;
    for (int v = 0; v < V; ++v) {
      vf av = Load(ar + v * kLanes);
      const vf bv = K == Kind::kMoments ? av : Load(br + v * kLanes);
      if constexpr (K == Kind::kClipped) {
        av = ClipGradient(av, MulAdd(bv, mul[v], shift[v]), hi);
      }
      t1[v] += av;
      t2[v] = MulAdd(av, bv, t2[v]);
    }
  }
  std::memcpy(s1 + k0, t1, sizeof(t1));
  std::memcpy(s2 + k0, t2, sizeof(t2));
}

// Rows [r0, r1) of a[rows, c] (and b's) summed into s1[c], s2[c]: sum a and sum a*a (kMoments),
// sum a and sum a*b (kDots), or those of a where 0 < b*mul + shift < hi (kClipped).
template <Kind K>
void BlockSums(const float* a, const float* b, const Clip& clip, int64_t c, int64_t r0,
               int64_t r1, float* s1, float* s2) {
  int64_t k = 0;
  for (; k + kVectors * kLanes <= c; k += kVectors * kLanes)
    ChunkSums<K, kVectors>(a, b, clip, c, r0, r1, k, s1, s2);
  for (; k + kLanes <= c; k += kLanes) ChunkSums<K, 1>(a, b, clip, c, r0, r1, k, s1, s2);
  for (; k < c; ++k) {  // the last channels, fewer than a vector
    float t1 = 0.0f, t2 = 0.0f;
    for (int64_t r = r0; r < r1; ++r) {
      float av = a[r * c + k];
      const float bv = K == Kind::kMoments ? av : b[r * c + k];
      if constexpr (K == Kind::kClipped) {
        const float pre = MulAdd(bv, clip.mul[k], clip.shift[k]);
        if (!(pre > 0.0f && pre < clip.hi)) av = 0.0f;
      }
      t1 += av;
      t2 = MulAdd(av, bv, t2);
    }
    s1[k] = t1, s2[k] = t2;
  }
}

template <Kind K>
void Sums(ffi::ThreadPool& pool, const float* a, const float* b, const Clip& clip, int64_t rows,
          int64_t c, float* out1, float* out2) {
  const int64_t blocks = (rows + kRows - 1) / kRows;
  std::vector<float> partial(blocks * 2 * c);
  const int64_t tasks = (blocks + kBlocksPerTask - 1) / kBlocksPerTask;
  ParallelFor(pool, tasks, [&](int64_t task) {
    const int64_t end = std::min(blocks, (task + 1) * kBlocksPerTask);
    for (int64_t i = task * kBlocksPerTask; i < end; ++i) {
      float* p = &partial[i * 2 * c];
      BlockSums<K>(a, b, clip, c, i * kRows, std::min(rows, (i + 1) * kRows), p, p + c);
    }
  });
  std::vector<double> t1(c, 0.0), t2(c, 0.0);
  for (int64_t i = 0; i < blocks; ++i) {
    const float* p = &partial[i * 2 * c];
    for (int64_t k = 0; k < c; ++k) t1[k] += p[k], t2[k] += p[c + k];
  }
  for (int64_t k = 0; k < c; ++k) {
    out1[k] = static_cast<float>(t1[k]);
    out2[k] = static_cast<float>(t2[k]);
  }
}

// rows x channels of an image-shaped operand whose channel count the results give, checked.
ffi::Error Layout(const char* what, ffi::Span<const int64_t> dims, int64_t c1, int64_t c2,
                  int64_t* rows, int64_t* c) {
  const std::string op = std::string("jaxcls ") + what;
  if (dims.size() == 0 || dims.back() != c1 || c1 != c2)
    return ffi::Error(ffi::ErrorCode::kInvalidArgument,
                      op + ": the results must have the operand's channel count");
  *c = dims.back();
  *rows = 1;
  for (size_t i = 0; i + 1 < dims.size(); ++i) *rows *= dims[i];
  return ffi::Error::Success();
}

ffi::Error ChannelMoments(ffi::ThreadPool pool, ffi::Buffer<ffi::F32> x,
                          ffi::ResultBuffer<ffi::F32> s1, ffi::ResultBuffer<ffi::F32> s2) {
  int64_t rows, c;
  if (auto e = Layout("channel moments", x.dimensions(), s1->element_count(),
                      s2->element_count(), &rows, &c);
      e.failure())
    return e;
  Sums<Kind::kMoments>(pool, x.typed_data(), nullptr, Clip(), rows, c, s1->typed_data(),
                       s2->typed_data());
  return ffi::Error::Success();
}

// rows x channels of the two image-shaped operands of a dots call, checked.
ffi::Error DotsLayout(const char* what, const ffi::Buffer<ffi::F32>& g,
                      const ffi::Buffer<ffi::F32>& x, int64_t c1, int64_t c2, int64_t* rows,
                      int64_t* c) {
  if (auto e = Layout(what, g.dimensions(), c1, c2, rows, c); e.failure()) return e;
  if (x.element_count() != g.element_count())
    return ffi::Error(ffi::ErrorCode::kInvalidArgument,
                      std::string("jaxcls ") + what + ": the two operands differ in size");
  return ffi::Error::Success();
}

ffi::Error ChannelDots(ffi::ThreadPool pool, ffi::Buffer<ffi::F32> g, ffi::Buffer<ffi::F32> x,
                       ffi::ResultBuffer<ffi::F32> s1, ffi::ResultBuffer<ffi::F32> s2) {
  int64_t rows, c;
  if (auto e = DotsLayout("channel dots", g, x, s1->element_count(), s2->element_count(), &rows,
                          &c);
      e.failure())
    return e;
  Sums<Kind::kDots>(pool, g.typed_data(), x.typed_data(), Clip(), rows, c, s1->typed_data(),
                    s2->typed_data());
  return ffi::Error::Success();
}

ffi::Error ChannelDotsClipped(ffi::ThreadPool pool, ffi::Buffer<ffi::F32> g,
                              ffi::Buffer<ffi::F32> x, ffi::Buffer<ffi::F32> mul,
                              ffi::Buffer<ffi::F32> shift, float hi,
                              ffi::ResultBuffer<ffi::F32> s1, ffi::ResultBuffer<ffi::F32> s2) {
  int64_t rows, c;
  if (auto e = DotsLayout("clipped channel dots", g, x, s1->element_count(),
                          s2->element_count(), &rows, &c);
      e.failure())
    return e;
  if (mul.element_count() != c || shift.element_count() != c)
    return ffi::Error(ffi::ErrorCode::kInvalidArgument,
                      "jaxcls clipped channel dots: mul and shift must have one value per channel");
  Clip clip;
  clip.mul = mul.typed_data();
  clip.shift = shift.typed_data();
  clip.hi = hi;
  Sums<Kind::kClipped>(pool, g.typed_data(), x.typed_data(), clip, rows, c, s1->typed_data(),
                       s2->typed_data());
  return ffi::Error::Success();
}

// Per image: sum g and sum g*x over each image's rows, into out1[images, c], out2[images, c];
// each image's blocks of kRows rows as Sums sums a batch's, a task per image.
void ImageSums(ffi::ThreadPool& pool, const float* g, const float* x, int64_t images,
               int64_t rows, int64_t c, float* out1, float* out2) {
  const int64_t blocks = (rows + kRows - 1) / kRows;
  ParallelFor(pool, images, [&](int64_t i) {
    std::vector<float> p(2 * c);
    std::vector<double> t1(c, 0.0), t2(c, 0.0);
    const float* gi = g + i * rows * c;
    const float* xi = x + i * rows * c;
    for (int64_t j = 0; j < blocks; ++j) {
      BlockSums<Kind::kDots>(gi, xi, Clip(), c, j * kRows, std::min(rows, (j + 1) * kRows),
                             p.data(), p.data() + c);
      for (int64_t k = 0; k < c; ++k) t1[k] += p[k], t2[k] += p[c + k];
    }
    for (int64_t k = 0; k < c; ++k) {
      out1[i * c + k] = static_cast<float>(t1[k]);
      out2[i * c + k] = static_cast<float>(t2[k]);
    }
  });
}

ffi::Error ImageChannelDots(ffi::ThreadPool pool, ffi::Buffer<ffi::F32> g,
                            ffi::Buffer<ffi::F32> x, ffi::ResultBuffer<ffi::F32> s1,
                            ffi::ResultBuffer<ffi::F32> s2) {
  const auto dims = g.dimensions();
  const auto out = s1->dimensions();
  if (dims.size() < 2 || out.size() != 2 || out[0] != dims[0] || out[1] != dims.back() ||
      s2->element_count() != s1->element_count())
    return ffi::Error(ffi::ErrorCode::kInvalidArgument,
                      "jaxcls image channel dots: the results must be [images, channels] of "
                      "the operand's");
  if (x.element_count() != g.element_count())
    return ffi::Error(ffi::ErrorCode::kInvalidArgument,
                      "jaxcls image channel dots: the two operands differ in size");
  const int64_t images = dims[0], c = dims.back();
  const int64_t rows = images * c == 0 ? 0 : g.element_count() / (images * c);
  ImageSums(pool, g.typed_data(), x.typed_data(), images, rows, c, s1->typed_data(),
            s2->typed_data());
  return ffi::Error::Success();
}

// The two dots handlers' signature: two maps in, two sums out.
auto TwoMapsTwoSums() {
  return ffi::Ffi::Bind()
      .Ctx<ffi::ThreadPool>()
      .Arg<ffi::Buffer<ffi::F32>>()
      .Arg<ffi::Buffer<ffi::F32>>()
      .Ret<ffi::Buffer<ffi::F32>>()
      .Ret<ffi::Buffer<ffi::F32>>();
}

}  // namespace

XLA_FFI_DEFINE_HANDLER_SYMBOL(JaxclsChannelMoments, ChannelMoments,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::ThreadPool>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>());

XLA_FFI_DEFINE_HANDLER_SYMBOL(JaxclsChannelDots, ChannelDots, TwoMapsTwoSums());

XLA_FFI_DEFINE_HANDLER_SYMBOL(JaxclsImageChannelDots, ImageChannelDots, TwoMapsTwoSums());

XLA_FFI_DEFINE_HANDLER_SYMBOL(JaxclsChannelDotsClipped, ChannelDotsClipped,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::ThreadPool>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Attr<float>("hi")
                                  .Ret<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>());
