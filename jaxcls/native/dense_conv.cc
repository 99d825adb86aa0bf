// Dense 2-D convolution (NHWC x HWIO, float32) as XLA FFI handlers: the forward pass (also used,
// on the flipped kernel, for the input gradient of a stride-1 convolution) and the weight
// gradient, for the small feature maps and channel counts where XLA:CPU's convolution (Eigen's
// image-patch packing, then a GEMM) spends more time packing and synchronising than multiplying.
//
// Why: the scratch CNN's 3x3 convolutions at 32 px (16x16 maps, 32 -> 64 channels; 8x8, 64 ->
// 128), batch 32, took 1.6-2.6 ms per direction in XLA against 1.2-1.5 ms in PyTorch's oneDNN
// (forward, weight gradient); docs/performance.md has the measurements.
//
// Forward: the output pixels of the whole batch form one sequence; a block of P consecutive
// pixels (which may span rows and images) x V vectors of output channels is a register tile of
// accumulators. Per kernel tap each pixel of the block reads its input pixel's C channels, or a
// zero row where the tap falls into the padding, so the borders cost no branches in the inner
// loop. The weights are repacked per call so that each block reads one contiguous panel.
//
// Winograd F(2x2, 3x3) (3x3 stride 1, when the caller asks for it with winograd=1): each 2x2 block
// of output pixels is a 4x4 input tile. Forward: the tiles' B^T d B transforms (16 positions x C)
// times the kernel's G w G^T (16 x C x O) are 16 GEMMs, run by the forward block as 1x1
// convolutions, then A^T m A gives the 2x2 outputs. Weight gradient: G^T [sum over tiles of
// (A g A^T) * (B^T d B)] G, the sums 16 GEMMs run by the weight-gradient tile. 16 instead of 36
// multiplications per tile, input and output channel. Float32 throughout, within ~2e-6 of the
// direct sum relative to the output's largest value.
//
// Weight gradient: a tile of Cb input channels x V vectors of output channels per kernel tap is
// a register tile; it sums over a chunk of 32 output pixels in registers, then adds into the
// task's float totals (float throughout, as in XLA's GEMMs). A task owns a group of input-channel
// blocks for one chunk of output channels (with AVX2, on a large input: a run of chunks) and runs
// over every pixel, each chunk of the output gradient used by all its blocks and taps while in
// L1; every weight's sum runs in the same order whatever the thread count or tile.
//
// Built at first use by jaxcls/native/__init__.py (g++ -O3 -march=native) with the other kernels.
//
// Few output pixels (the caller asks with few=1: conv.NATIVE_FEW_PIXELS, batch-1 inference's 14x14
// and 7x7 maps): the forward pass walks the weights in slices kept in L1, each used by all of a
// task's pixels (ForwardFew, below), instead of packing every chunk's whole panel first.
//
//   jaxcls_conv_fwd(x[B,H,W,C], w[KH,KW,C,O]) -> y[B,Ho,Wo,O]
//   jaxcls_conv_wgrad(x[B,H,W,C], g[B,Ho,Wo,O]) -> dw[KH,KW,C,O]
//
// Attributes: stride, pad_top, pad_left (the bottom/right padding follows from the shapes),
// winograd (1: as F(2x2, 3x3); 3x3 stride 1 only), and for the forward pass few (1: ForwardFew).

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <string>
#include <tuple>
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
using jaxcls::LoadPart;
using jaxcls::StorePart;
using jaxcls::ParallelFor;
using jaxcls::vf;

// Accumulators a register tile may hold.
#ifdef __AVX512F__
constexpr int kTile = 24;
#else
constexpr int kTile = 12;
#endif

constexpr int64_t kMaxTaps = 64;  // kernel height x width

struct Geometry {
  int64_t b, h, w, c, kh, kw, o, ho, wo, stride, pad_top, pad_left;
  int64_t pixels() const { return b * ho * wo; }
};

// For output pixels pix0 .. pix0+n-1 (flattened over batch, rows and columns) and each kernel tap,
// the offset in x of the input pixel the tap reads, or -1 where it lies in the padding:
// off[k * taps + t] for pixel pix0 + k and tap t.
inline void TapOffsets(const Geometry& g, int64_t pix0, int64_t n, int64_t* off) {
  const int64_t taps = g.kh * g.kw;
  int64_t ow = pix0 % g.wo, oh = (pix0 / g.wo) % g.ho, b = pix0 / (g.wo * g.ho);
  for (int64_t k = 0; k < n; ++k) {
    int64_t* o = off + k * taps;
    for (int64_t i = 0; i < g.kh; ++i) {
      const int64_t ih = oh * g.stride + i - g.pad_top;
      const bool row_ok = ih >= 0 && ih < g.h;
      for (int64_t j = 0; j < g.kw; ++j) {
        const int64_t iw = ow * g.stride + j - g.pad_left;
        o[i * g.kw + j] = row_ok && iw >= 0 && iw < g.w ? ((b * g.h + ih) * g.w + iw) * g.c : -1;
      }
    }
    if (++ow == g.wo) {
      ow = 0;
      if (++oh == g.ho) oh = 0, ++b;
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Forward.

// Output channels o0 .. o0 + V*kLanes of pixels pix0 .. pix0 + n - 1 (n <= P). `panel` holds the
// chunk's weights as [taps][C] rows of V*kLanes floats, one row every `ws` floats; `width` output
// channels are real (the rest of the last vector is padding and not stored).
template <int V, int P>
void ForwardBlock(const Geometry& g, const float* x, const float* panel, int64_t ws,
                  const float* zeros, float* y, int64_t pix0, int64_t n, int64_t o0,
                  int64_t width) {
  const int64_t taps = g.kh * g.kw, c = g.c;
  int64_t off[P * kMaxTaps];
  TapOffsets(g, pix0, n, off);
  std::fill(off + n * taps, off + P * taps, -1);  // pixels past the end read zeros
  vf acc[P][V] = {};
  for (int64_t t = 0; t < taps; ++t) {
    const float* xp[P];
    for (int p = 0; p < P; ++p) xp[p] = off[p * taps + t] >= 0 ? x + off[p * taps + t] : zeros;
    const float* wp = panel + t * c * ws;
#pragma GCC unroll 2  // one thread, an L1-resident block: 168 -> 175 GFLOP/s
    for (int64_t ci = 0; ci < c; ++ci) {
      vf wv[V];
      for (int v = 0; v < V; ++v) wv[v] = Load(wp + ci * ws + v * kLanes);
      for (int p = 0; p < P; ++p) {
        const float xv = xp[p][ci];
        for (int v = 0; v < V; ++v) acc[p][v] = MulAdd(xv, wv[v], acc[p][v]);
      }
    }
  }
  for (int64_t p = 0; p < n; ++p) {
    float* out = y + (pix0 + p) * g.o + o0;
    for (int v = 0; v < V; ++v) {
      const int64_t k = std::min<int64_t>(kLanes, width - v * kLanes);
      if (k > 0) std::memcpy(out + v * kLanes, &acc[p][v], sizeof(float) * k);
    }
  }
}

// The output channels in chunks: V vectors (kLanes floats each) per chunk.
struct Chunk {
  int64_t o0, width;
  int v;
};

std::vector<Chunk> OutputChunks(int64_t o, int widest) {
  std::vector<Chunk> chunks;
  for (int64_t o0 = 0; o0 < o;) {
    const int64_t left = o - o0;
    int v = widest;
    while (v > 1 && left <= (v - 1) * kLanes) --v;  // the narrowest chunk that holds the rest
    const int64_t width = std::min<int64_t>(left, v * kLanes);
    chunks.push_back({o0, width, v});
    o0 += width;
  }
  return chunks;
}

// Weights w[taps, C, O] of one chunk as [taps, C, V*kLanes], zero beyond the chunk's width.
void PackPanel(const Geometry& g, const float* w, const Chunk& ch, float* panel) {
  const int64_t rows = g.kh * g.kw * g.c, cols = ch.v * kLanes;
  for (int64_t r = 0; r < rows; ++r) {
    float* dst = panel + r * cols;
    std::memcpy(dst, w + r * g.o + ch.o0, sizeof(float) * ch.width);
    std::fill(dst + ch.width, dst + cols, 0.0f);
  }
}

// Pixels per block for V vectors: as many as the register tile holds.
template <int V>
constexpr int PixelsFor() {
  return std::min(12, kTile / V);
}

// The same for a chunk of v vectors.
inline int64_t PixelsOf(int v) {
  static constexpr int64_t kPixels[] = {0, PixelsFor<1>(), PixelsFor<2>(), PixelsFor<3>(),
                                        PixelsFor<4>()};
  return kPixels[v];
}

#ifdef __AVX512F__
constexpr int kWidestForward = 4;  // 4 vectors: 64 output channels per block
#else
constexpr int kWidestForward = 2;  // 16 output channels per block
#endif
constexpr int64_t kBlocksPerTask = 4;

template <int V>
void ForwardChunkBlocks(const Geometry& g, const float* x, const float* panel, int64_t ws,
                        const float* zeros, float* y, const Chunk& ch, int64_t block) {
  constexpr int P = PixelsFor<V>();
  const int64_t total = g.pixels();
  for (int64_t k = 0; k < kBlocksPerTask; ++k) {
    const int64_t pix0 = (block * kBlocksPerTask + k) * P;
    if (pix0 >= total) return;
    ForwardBlock<V, P>(g, x, panel, ws, zeros, y, pix0, std::min<int64_t>(P, total - pix0),
                       ch.o0, ch.width);
  }
}

// ---------------------------------------------------------------------------------------------
// Forward over few output pixels (batch-1 inference's deeper layers: 14x14 and 7x7 maps).
//
// ForwardPacked's blocks each run over every tap and input channel, so each block reads its
// chunk's whole panel (taps x C x 64 floats, 0.6-1.2 MB at 256-512 channels) once, and the panels
// are packed up front on one thread: with a few dozen pixel blocks per chunk the packing and the
// panel reads from L2 or memory, not the multiplications, set the pace (batch 1, 7x7 512->512:
// 5.3-6.8 ms packed, 3.1 ms with the weights read in place as before; 1.5-2.0 ms here; a one-off
// 2-thread harness and tools/bench_ops.py --op=kernels --batch=1). Here a task owns one chunk of
// output channels and a run of pixel blocks and walks the kernel rows in slices of kSliceRows (one
// tap, up to kSliceRows input channels): it copies the slice's weights (kSliceRows x 64 floats, 32
// KB) into an L1-resident buffer, then runs all its pixel blocks over that slice, their
// accumulators carried in the output between slices. Every weight is read from memory once and
// the sums run in the same order as ForwardPacked's (tap, then channel), so the outputs are the
// same to the bit. Slower from about 800 pixels on (batch 1, 28x28 128->128: 0.84-0.93x; batch 4,
// 14x14 256->256: 0.78-0.84x), where each slice's pixels no longer stay in cache. Prefetching
// the next slice's weights made no difference that showed (three hint levels against none,
// alternating four times; the host's noise was larger).

constexpr int64_t kSliceRows = 128;

// Pixels pix0 .. pix0+n-1 (n <= P) x the chunk's V vectors over kernel rows [t, c0 .. c0+cs):
// the slice's weights in `slice` ([cs][V*kLanes]); `off` the pixels' tap offsets (TapOffsets,
// -1: padding). The partial sums live in y between slices (`first`: none yet).
template <int V, int P>
void ForwardSliceBlock(const Geometry& g, const float* x, const float* slice, const int64_t* off,
                       const float* zeros, float* y, int64_t pix0, int64_t n, int64_t t,
                       int64_t c0, int64_t cs, const Chunk& ch, bool first) {
  const int64_t taps = g.kh * g.kw;
  vf acc[P][V] = {};
  if (!first)
    for (int64_t p = 0; p < n; ++p)
      for (int v = 0; v < V; ++v) {
        const int64_t k = std::min<int64_t>(kLanes, ch.width - v * kLanes);
        if (k > 0) acc[p][v] = LoadPart(y + (pix0 + p) * g.o + ch.o0 + v * kLanes, k);
      }
  const float* xp[P];
  for (int p = 0; p < P; ++p) {
    const int64_t o = p < n ? off[p * taps + t] : -1;
    xp[p] = (o >= 0 ? x + o : zeros) + c0;
  }
#pragma GCC unroll 2
  for (int64_t ci = 0; ci < cs; ++ci) {
    vf wv[V];
    for (int v = 0; v < V; ++v) wv[v] = Load(slice + ci * V * kLanes + v * kLanes);
    for (int p = 0; p < P; ++p) {
      const float xv = xp[p][ci];
      for (int v = 0; v < V; ++v) acc[p][v] = MulAdd(xv, wv[v], acc[p][v]);
    }
  }
  for (int64_t p = 0; p < n; ++p)
    for (int v = 0; v < V; ++v) {
      const int64_t k = std::min<int64_t>(kLanes, ch.width - v * kLanes);
      if (k > 0) StorePart(y + (pix0 + p) * g.o + ch.o0 + v * kLanes, acc[p][v], k);
    }
}

// One task of ForwardFew: the chunk's outputs for pixel blocks [b0, b1).
template <int V>
void ForwardFewTask(const Geometry& g, const float* x, const float* w, const float* zeros,
                    float* y, const Chunk& ch, int64_t b0, int64_t b1) {
  constexpr int P = PixelsFor<V>();
  constexpr int64_t cols = V * kLanes;
  const int64_t taps = g.kh * g.kw, total = g.pixels();
  const int64_t pix0 = b0 * P, pixels = std::min(total, b1 * P) - pix0;
  std::vector<int64_t> off(pixels * taps);
  TapOffsets(g, pix0, pixels, off.data());
  std::vector<vf> slice(kSliceRows * V);  // 64-byte aligned rows
  float* s = reinterpret_cast<float*>(slice.data());
  for (int64_t t = 0; t < taps; ++t)
    for (int64_t c0 = 0; c0 < g.c; c0 += kSliceRows) {
      const int64_t cs = std::min(kSliceRows, g.c - c0);
      for (int64_t ci = 0; ci < cs; ++ci) {  // zero beyond the chunk's width
        const float* src = w + (t * g.c + c0 + ci) * g.o + ch.o0;
        for (int v = 0; v < V; ++v) {
          const int64_t lanes = std::clamp<int64_t>(ch.width - v * kLanes, 0, kLanes);
          StorePart(s + ci * cols + v * kLanes, LoadPart(src + v * kLanes, lanes), kLanes);
        }
      }
      const bool first = t == 0 && c0 == 0;
      for (int64_t p = 0; p < pixels; p += P)
        ForwardSliceBlock<V, P>(g, x, s, off.data() + p * taps, zeros, y, pix0 + p,
                                std::min<int64_t>(P, pixels - p), t, c0, cs, ch, first);
    }
}

template <typename Run>
void ForwardFew(const Run& run, const Geometry& g, const float* x, const float* w, float* y) {
  const std::vector<Chunk> chunks = OutputChunks(g.o, kWidestForward);
  const int64_t nchunks = static_cast<int64_t>(chunks.size());
  const std::vector<float> zeros(g.c, 0.0f);
  // Split each chunk's pixels into enough runs for two tasks per thread.
  const int64_t runs = std::max<int64_t>(1, (2 * run.threads() + nchunks - 1) / nchunks);
  run(nchunks * runs, [&](int64_t task) {
    const Chunk& ch = chunks[task / runs];
    const int64_t part = task % runs;
    const int64_t blocks = (g.pixels() + PixelsOf(ch.v) - 1) / PixelsOf(ch.v);
    const int64_t b0 = part * blocks / runs, b1 = (part + 1) * blocks / runs;
    if (b0 >= b1) return;
    switch (ch.v) {
      case 1: ForwardFewTask<1>(g, x, w, zeros.data(), y, ch, b0, b1); break;
      case 2: ForwardFewTask<2>(g, x, w, zeros.data(), y, ch, b0, b1); break;
#ifdef __AVX512F__
      case 3: ForwardFewTask<3>(g, x, w, zeros.data(), y, ch, b0, b1); break;
      default: ForwardFewTask<4>(g, x, w, zeros.data(), y, ch, b0, b1); break;
#endif
    }
  });
}

// Forward with each chunk's weights packed into a panel first (many pixels: each panel is read by
// many blocks). run(n, body) calls body(i) for i in [0, n) on run.threads() threads (PoolRunner).
template <typename Run>
void ForwardPacked(const Run& run, const Geometry& g, const float* x, const float* w, float* y) {
  const std::vector<Chunk> chunks = OutputChunks(g.o, kWidestForward);
  // Held as vectors, not floats: each panel starts on a 64-byte boundary, so that no vector load
  // of it spans two cache lines (forward at 56x56x64, one thread: 133 -> 147 GFLOP/s).
  std::vector<std::vector<vf>> panels(chunks.size());
  for (size_t i = 0; i < panels.size(); ++i) {
    panels[i].resize(g.kh * g.kw * g.c * chunks[i].v);
    PackPanel(g, w, chunks[i], reinterpret_cast<float*>(panels[i].data()));
  }
  const std::vector<float> zeros(g.c, 0.0f);
  // Tasks: (chunk, group of kBlocksPerTask pixel blocks).
  std::vector<int64_t> groups(chunks.size());
  int64_t tasks = 0;
  for (size_t i = 0; i < chunks.size(); ++i) {
    const int64_t blocks = (g.pixels() + PixelsOf(chunks[i].v) - 1) / PixelsOf(chunks[i].v);
    groups[i] = (blocks + kBlocksPerTask - 1) / kBlocksPerTask;
    tasks += groups[i];
  }
  run(tasks, [&](int64_t task) {
    size_t i = 0;
    while (task >= groups[i]) task -= groups[i++];
    const Chunk& ch = chunks[i];
    const float* panel = reinterpret_cast<const float*>(panels[i].data());
    const int64_t ws = ch.v * kLanes;
    switch (ch.v) {
      case 1: ForwardChunkBlocks<1>(g, x, panel, ws, zeros.data(), y, ch, task); break;
      case 2: ForwardChunkBlocks<2>(g, x, panel, ws, zeros.data(), y, ch, task); break;
#ifdef __AVX512F__
      case 3: ForwardChunkBlocks<3>(g, x, panel, ws, zeros.data(), y, ch, task); break;
      default: ForwardChunkBlocks<4>(g, x, panel, ws, zeros.data(), y, ch, task); break;
#endif
    }
  });
}

// ---------------------------------------------------------------------------------------------
// Winograd F(2x2, 3x3) forward.
//
// Against Forward (batch 32, 2 threads, one-off harness, 2026-12-04; ms): 56x56 64->64 26.0 ->
// 17.2, 28x28 128->128 24.1 -> 14.3, 14x14 256->256 22.6 -> 14.7, 8x8 256->256 7.5 -> 5.8;
// slower where the kernel's transform (16 x C x O) is spread over few tiles or is large: batch 1
// at 14x14 256->256 1.2 -> 1.9, 7x7 512->512 26.0 -> 32.4 (there a quarter of the last tiles'
// outputs are cut off too). The caller picks (conv.py, winograd_fits); docs/performance.md,
// "Winograd F(2x2, 3x3) natively".

// The kernel's transforms G w G^T of one chunk as [16][C][V*kLanes], zero beyond its width.
void PackWinogradPanel(const Geometry& g, const float* w, const Chunk& ch, float* panel) {
  const int64_t cols = ch.v * kLanes;
  for (int64_t c = 0; c < g.c; ++c) {
    for (int q = 0; q < ch.v; ++q) {
      const int64_t lanes = std::min<int64_t>(kLanes, ch.width - q * kLanes);
      vf k[3][3], t[4][3];
      for (int i = 0; i < 3; ++i)
        for (int j = 0; j < 3; ++j)
          k[i][j] = LoadPart(w + ((i * 3 + j) * g.c + c) * g.o + ch.o0 + q * kLanes, lanes);
      for (int j = 0; j < 3; ++j) {  // G k: rows
        t[0][j] = k[0][j];
        t[1][j] = 0.5f * (k[0][j] + k[1][j] + k[2][j]);
        t[2][j] = 0.5f * (k[0][j] - k[1][j] + k[2][j]);
        t[3][j] = k[2][j];
      }
      for (int r = 0; r < 4; ++r) {  // (G k) G^T: columns
        const vf u[4] = {t[r][0], 0.5f * (t[r][0] + t[r][1] + t[r][2]),
                         0.5f * (t[r][0] - t[r][1] + t[r][2]), t[r][2]};
        for (int j = 0; j < 4; ++j)
          std::memcpy(panel + ((r * 4 + j) * g.c + c) * cols + q * kLanes, &u[j], sizeof(vf));
      }
    }
  }
}

// The output's 2x2 tiles: ty x tx per image, flattened over the batch.
struct Tiles {
  int64_t ty, tx;
  // Image, first output row and column of tile t.
  void Locate(int64_t t, int64_t* b, int64_t* oy, int64_t* ox) const {
    *b = t / (ty * tx);
    *oy = (t % (ty * tx)) / tx * 2, *ox = t % tx * 2;
  }
};

// Channels c0 .. c1-1 of input tiles t0 .. t0+n-1 transformed, B^T d B, into
// v[16][rows][c1 - c0].
void WinogradInput(const Geometry& g, const Tiles& tiles, const float* x, int64_t t0, int64_t n,
                   int64_t rows, int64_t c0, int64_t c1, float* v) {
  const int64_t cw = c1 - c0;
  for (int64_t k = 0; k < n; ++k) {
    int64_t b, oy, ox;
    tiles.Locate(t0 + k, &b, &oy, &ox);
    const float* src[4][4];  // nullptr: padding
    for (int i = 0; i < 4; ++i)
      for (int j = 0; j < 4; ++j) {
        const int64_t iy = oy + i - g.pad_top, ix = ox + j - g.pad_left;
        const bool in = iy >= 0 && iy < g.h && ix >= 0 && ix < g.w;
        src[i][j] = in ? x + ((b * g.h + iy) * g.w + ix) * g.c : nullptr;
      }
    for (int64_t c = c0; c < c1; c += kLanes) {
      const int64_t lanes = std::min<int64_t>(kLanes, c1 - c);
      vf d[4][4], t[4][4];
      for (int i = 0; i < 4; ++i)
        for (int j = 0; j < 4; ++j) d[i][j] = src[i][j] ? LoadPart(src[i][j] + c, lanes) : vf{};
      for (int j = 0; j < 4; ++j) {  // B^T d: rows
        t[0][j] = d[0][j] - d[2][j];
        t[1][j] = d[1][j] + d[2][j];
        t[2][j] = d[2][j] - d[1][j];
        t[3][j] = d[1][j] - d[3][j];
      }
      for (int i = 0; i < 4; ++i) {  // (B^T d) B: columns
        const vf o[4] = {t[i][0] - t[i][2], t[i][1] + t[i][2], t[i][2] - t[i][1],
                         t[i][1] - t[i][3]};
        for (int j = 0; j < 4; ++j)
          StorePart(v + ((i * 4 + j) * rows + k) * cw + c - c0, o[j], lanes);
      }
    }
  }
}

// One chunk of output channels for tiles t0 .. t0+n-1: the 16 GEMMs v[e] @ panel[e] into
// m[16][rows][V*kLanes], then A^T m A into y.
template <int V>
void WinogradChunk(const Geometry& g, const Tiles& tiles, const float* v, const float* panel,
                   const float* zeros, float* m, float* y, int64_t t0, int64_t n, int64_t rows,
                   const Chunk& ch) {
  constexpr int P = PixelsFor<V>();
  constexpr int64_t cols = V * kLanes;
  // Each GEMM as a 1x1 convolution of a one-row image of `rows` pixels.
  const Geometry gemm{1, 1, rows, g.c, 1, 1, cols, 1, rows, 1, 0, 0};
  for (int e = 0; e < 16; ++e)
    for (int64_t r0 = 0; r0 < n; r0 += P)
      ForwardBlock<V, P>(gemm, v + e * rows * g.c, panel + e * g.c * cols, cols, zeros,
                         m + e * rows * cols, r0, std::min<int64_t>(P, n - r0), 0, cols);
  for (int64_t k = 0; k < n; ++k) {
    int64_t b, oy, ox;
    tiles.Locate(t0 + k, &b, &oy, &ox);
    for (int q = 0; q < V; ++q) {
      const int64_t lanes = std::min<int64_t>(kLanes, ch.width - q * kLanes);
      if (lanes <= 0) break;
      vf s[2][4];
      for (int j = 0; j < 4; ++j) {  // A^T m: rows
        vf mm[4];
        for (int i = 0; i < 4; ++i) mm[i] = Load(m + ((i * 4 + j) * rows + k) * cols + q * kLanes);
        s[0][j] = mm[0] + mm[1] + mm[2];
        s[1][j] = mm[1] - mm[2] - mm[3];
      }
      for (int i = 0; i < 2 && oy + i < g.ho; ++i) {  // (A^T m) A: columns
        const vf out[2] = {s[i][0] + s[i][1] + s[i][2], s[i][1] - s[i][2] - s[i][3]};
        for (int j = 0; j < 2 && ox + j < g.wo; ++j)
          StorePart(y + ((b * g.ho + oy + i) * g.wo + ox + j) * g.o + ch.o0 + q * kLanes, out[j],
                    lanes);
      }
    }
  }
}

// Tiles per task: the transformed input, 16 x C floats a tile, within about 1 MB of L2.
int64_t WinogradRows(int64_t c) {
  return std::clamp<int64_t>((1 << 20) / (16 * c * 4) / 24 * 24, 24, 96);
}

template <typename Run>
void WinogradForward(const Run& run, const Geometry& g, const float* x, const float* w,
                     float* y) {
  const std::vector<Chunk> chunks = OutputChunks(g.o, kWidestForward);
  std::vector<std::vector<vf>> panels(chunks.size());  // 64-byte aligned, as Forward's
  for (size_t i = 0; i < chunks.size(); ++i) {
    panels[i].resize(16 * g.c * chunks[i].v);
    PackWinogradPanel(g, w, chunks[i], reinterpret_cast<float*>(panels[i].data()));
  }
  const Tiles tiles{(g.ho + 1) / 2, (g.wo + 1) / 2};
  const int64_t count = g.b * tiles.ty * tiles.tx, rows = WinogradRows(g.c);
  const std::vector<float> zeros(g.c, 0.0f);
  run((count + rows - 1) / rows, [&](int64_t task) {
    thread_local std::vector<vf> vbuf, mbuf;  // kept for the thread's next call
    vbuf.resize(16 * rows * g.c / kLanes + 1);
    mbuf.resize(16 * rows * kWidestForward);
    float* v = reinterpret_cast<float*>(vbuf.data());
    float* m = reinterpret_cast<float*>(mbuf.data());
    const int64_t t0 = task * rows, n = std::min(rows, count - t0);
    WinogradInput(g, tiles, x, t0, n, rows, 0, g.c, v);
    for (size_t i = 0; i < chunks.size(); ++i) {
      const float* panel = reinterpret_cast<const float*>(panels[i].data());
      const auto args = std::make_tuple(std::cref(g), std::cref(tiles), v, panel, zeros.data(),
                                        m, y, t0, n, rows, std::cref(chunks[i]));
      switch (chunks[i].v) {
        case 1: std::apply(WinogradChunk<1>, args); break;
        case 2: std::apply(WinogradChunk<2>, args); break;
#ifdef __AVX512F__
        case 3: std::apply(WinogradChunk<3>, args); break;
        default: std::apply(WinogradChunk<4>, args); break;
#endif
      }
    }
  });
}

// ---------------------------------------------------------------------------------------------
// Weight gradient.

// Input channels per register tile x vectors of output channels: 6 x 4 = 24 accumulators of
// AVX-512's 32 registers (one thread, 3x3 at 56x56x64 and 14x14x256: 130 -> 139 and 136 -> 147
// GFLOP/s against 4 x 4; 8 x 4 spills); with AVX2's 16, 6 x 2 (12 accumulators, two vectors of
// the output gradient, one broadcast input: the usual AVX2 GEMM tile). On an AMD EPYC (Zen 3,
// AVX2) 6 x 2 against the 4 x 2 before: Winograd's 3x3 weight gradient 106-120 -> 124-171
// GFLOP/s at 56x56x64 to 14x14x256, the direct one 73-89 -> 120-135 (tools/bench_ops.py
// --op=kernels, batch 32, 2 threads; docs/performance.md, "The weight-gradient kernel on an
// AMD EPYC with AVX2").
//
// With AVX2, on inputs of at least kRunMinInputBytes (beyond the caches), a direct weight
// gradient's task takes a run of up to kChunkRun chunks of output channels together (64
// channels): the input is read from memory once per run instead of once per 16 channels (14x14
// 1024 -> 256: 16 passes over a 25.7 MB input before, 4 now). The input channels are split into
// groups as narrow as keeps a task's totals within kTaskTotalsBytes (L2), and where a group
// would have fewer than kMinGroupChannels the runs are shortened instead. Same Zen 3 machine,
// the kernel alone, batch 32, 2 threads, one run alternating with the kernel before either
// change: the 1x1 weight gradients at ResNet-50's shapes 40-57 -> 71-112 GFLOP/s; the 3x3
// stride-2 ones, where the runs came with the channel groups, 1.03-1.64x on top of the 6 x 2
// tile. Unchanged with AVX-512, where it was not measured.
//
// The tasks are sized so that the threads finish together: a stretch of chunks splits into runs
// of near-equal lengths (6 chunks: 3 + 3, not 4 + 2), into as many runs as the threads share
// evenly where that is at least as even (9 chunks on 2 threads: 5 + 4, not 3 + 3 + 3), largest
// first; on a large input a last, narrower chunk is widened to join a run (24 output channels: one
// run of 16 + 8 reading the input once); and where the output gradient that more input-channel
// groups read again is small (kRereadBytes), groups are added until no thread waits. Same Zen 3
// machine, the 1x1 weight gradients the zoo runs natively at 224 px, batch 32, 2 threads,
// alternating with the kernel before: EfficientNet-B0's 15 shapes 158 -> 142 ms (16 -> 96 at
// 112x112, 4 + 2 chunks before: 1.32x; 240 -> 80 at 14x14, 4 + 1: 1.41x; 96 -> 24 at 56x56
// 0.80-0.95x), MobileNetV2's 109 -> 95 ms, ResNet-50's 204 -> 192 ms (docs/performance.md, "Even
// weight-gradient tasks"). Not measured with AVX-512, where runs are single chunks.
#ifdef __AVX512F__
constexpr int kCb = 6;
constexpr int kWidestWgrad = 4;
constexpr int64_t kChunkRun = 1;
#else
constexpr int kCb = 6;
constexpr int kWidestWgrad = 2;
constexpr int64_t kChunkRun = 4;
#endif
constexpr int64_t kTaskTotalsBytes = 192 * 1024;
constexpr int64_t kRunMinInputBytes = 2 << 20;
constexpr int64_t kMinGroupChannels = 24;
// Chosen between the measured cases, not tuned: more groups paid where the output gradient was
// 2-4 MB (80-240 channels at 14x14 and 28x28) and cost where it was 9.6 MB (96 -> 24 at 56x56:
// 0.79x) and 58 MB (24 -> 144 at 56x56: 0.89x and 0.95x), in one-off runs without that limit.
constexpr int64_t kRereadBytes = 8 << 20;
constexpr int64_t kPixelChunk = 32;

// Adds, for each kernel tap, the products of input channels c0 .. c0+CB-1 with the output
// gradient's chunk over pixels pix0 .. pix0+n-1 to total[taps][CB][V] (vectors). off: [n][taps]
// input offsets (-1 in the padding); gp: the chunk's output gradient, one pixel every gs floats.
template <int V, int CB>
void WgradTile(const Geometry& g, const float* x, const float* gp, int64_t gs, const float* zeros,
               const int64_t* off, int64_t n, int64_t c0, vf* total) {
  const int64_t taps = g.kh * g.kw;
  for (int64_t t = 0; t < taps; ++t) {
    vf acc[CB][V] = {};
    for (int64_t k = 0; k < n; ++k) {
      const int64_t o = off[k * taps + t];
      const float* xp = (o >= 0 ? x + o : zeros) + c0;
      vf gv[V];
      for (int v = 0; v < V; ++v) gv[v] = Load(gp + k * gs + v * kLanes);
      for (int cb = 0; cb < CB; ++cb) {
        const float xv = xp[cb];
        for (int v = 0; v < V; ++v) acc[cb][v] = MulAdd(xv, gv[v], acc[cb][v]);
      }
    }
    vf* tt = total + t * CB * V;
    for (int cb = 0; cb < CB; ++cb)
      for (int v = 0; v < V; ++v) tt[cb * V + v] += acc[cb][v];
  }
}

template <int V>
void WgradTileAny(int cb, const Geometry& g, const float* x, const float* gp, int64_t gs,
                  const float* zeros, const int64_t* off, int64_t n, int64_t c0, vf* total) {
  switch (cb) {
    case 1: WgradTile<V, 1>(g, x, gp, gs, zeros, off, n, c0, total); break;
    case 2: WgradTile<V, 2>(g, x, gp, gs, zeros, off, n, c0, total); break;
    case 3: WgradTile<V, 3>(g, x, gp, gs, zeros, off, n, c0, total); break;
    case 4: WgradTile<V, 4>(g, x, gp, gs, zeros, off, n, c0, total); break;
    case 5: WgradTile<V, 5>(g, x, gp, gs, zeros, off, n, c0, total); break;
    default: WgradTile<V, kCb>(g, x, gp, gs, zeros, off, n, c0, total); break;
  }
}

// Channels c0 .. c1 in blocks of at most kCb, of near-equal sizes (32 channels: 5, 5, 6, 5, 5, 6,
// not 6 x 5 and 2): block j covers [Start(j), Start(j + 1)).
struct ChannelBlocks {
  int64_t c0, channels, count;
  ChannelBlocks(int64_t c0, int64_t c1)
      : c0(c0), channels(c1 - c0), count((c1 - c0 + kCb - 1) / kCb) {}
  int64_t Start(int64_t j) const { return c0 + j * channels / count; }
};

// dw[:, :, c0:c1, chunks] over every pixel, for `count` chunks of V vectors each from `first`:
// each chunk of pixels' output gradient is read once (into L1) and used for every input channel
// block and tap, and each block's input pixels for every chunk of the run.
template <int V>
void WgradTask(const Geometry& g, const float* x, const float* gy, const float* zeros, float* dw,
               int64_t c0, int64_t c1, const Chunk* first, int64_t count) {
  const int64_t taps = g.kh * g.kw, total_pixels = g.pixels();
  const ChannelBlocks blocks(c0, c1);
  // Chunk q's block j's totals: [taps][its channels][V] vectors from
  // (q * taps * (c1 - c0) + taps * (Start(j) - c0)) * V.
  const int64_t per_chunk = taps * (c1 - c0) * V;
  std::vector<vf> total(count * per_chunk, vf{});
  std::vector<int64_t> off(kPixelChunk * taps);
  // A chunk narrower than its vectors (the last) reads a zero-padded copy of its gradient.
  std::vector<vf> gpad(kPixelChunk * V * count, vf{});  // aligned, as XLA's buffers are
  std::vector<const float*> gps(count);
  std::vector<int64_t> gss(count);
  for (int64_t pix0 = 0; pix0 < total_pixels; pix0 += kPixelChunk) {
    const int64_t n = std::min(kPixelChunk, total_pixels - pix0);
    TapOffsets(g, pix0, n, off.data());
    for (int64_t q = 0; q < count; ++q) {
      const Chunk& ch = first[q];
      gps[q] = gy + pix0 * g.o + ch.o0, gss[q] = g.o;
      if (ch.width < V * kLanes) {
        vf* pad = &gpad[kPixelChunk * V * q];
        for (int64_t k = 0; k < n; ++k)
          std::memcpy(&pad[k * V], gps[q] + k * g.o, sizeof(float) * ch.width);
        gps[q] = reinterpret_cast<const float*>(pad), gss[q] = V * kLanes;
      }
    }
    for (int64_t j = 0; j < blocks.count; ++j) {
      const int64_t c = blocks.Start(j);
      const int cb = static_cast<int>(blocks.Start(j + 1) - c);
      for (int64_t q = 0; q < count; ++q)
        WgradTileAny<V>(cb, g, x, gps[q], gss[q], zeros, off.data(), n, c,
                        &total[q * per_chunk + taps * (c - c0) * V]);
    }
  }
  for (int64_t q = 0; q < count; ++q)
    for (int64_t j = 0; j < blocks.count; ++j) {
      const int64_t c = blocks.Start(j), cb = blocks.Start(j + 1) - c;
      const vf* block = &total[q * per_chunk + taps * (c - c0) * V];
      for (int64_t t = 0; t < taps; ++t)
        for (int64_t k = 0; k < cb; ++k)
          std::memcpy(dw + (t * g.c + c + k) * g.o + first[q].o0, &block[(t * cb + k) * V],
                      sizeof(float) * first[q].width);
    }
}

// ---------------------------------------------------------------------------------------------
// Winograd F(2x2, 3x3) weight gradient: dw = G^T [sum over tiles (A g A^T) * (B^T d B)] G, the
// sums as 16 GEMMs over the tiles (run by WgradTile as 1x1 weight gradients), in the tasks of
// Wgrad: (input channel group, output channel chunk).

// The output gradient's tiles t0 .. t0+n-1, one chunk: A g A^T (2x2 -> 4x4; outside the map
// zero) into gt[16][rows][V] vectors.
template <int V>
void WinogradGradTiles(const Geometry& g, const Tiles& tiles, const float* gy, int64_t t0,
                       int64_t n, int64_t rows, const Chunk& ch, vf* gt) {
  for (int64_t k = 0; k < n; ++k) {
    int64_t b, oy, ox;
    tiles.Locate(t0 + k, &b, &oy, &ox);
    for (int q = 0; q < V; ++q) {
      const int64_t lanes = std::min<int64_t>(kLanes, ch.width - q * kLanes);
      vf d[2][2];
      for (int i = 0; i < 2; ++i)
        for (int j = 0; j < 2; ++j) {
          const bool in = lanes > 0 && oy + i < g.ho && ox + j < g.wo;
          const int64_t at = ((b * g.ho + oy + i) * g.wo + ox + j) * g.o + ch.o0 + q * kLanes;
          d[i][j] = in ? LoadPart(gy + at, lanes) : vf{};
        }
      const vf r[4][2] = {{d[0][0], d[0][1]},  // A d: rows
                          {d[0][0] + d[1][0], d[0][1] + d[1][1]},
                          {d[0][0] - d[1][0], d[0][1] - d[1][1]},
                          {-d[1][0], -d[1][1]}};
      for (int i = 0; i < 4; ++i) {  // (A d) A^T: columns
        const vf o[4] = {r[i][0], r[i][0] + r[i][1], r[i][0] - r[i][1], -r[i][1]};
        for (int j = 0; j < 4; ++j) gt[((i * 4 + j) * rows + k) * V + q] = o[j];
      }
    }
  }
}

template <int V>
void WinogradWgradTask(const Geometry& g, const float* x, const float* gy, const float* zeros,
                       float* dw, int64_t c0, int64_t c1, const Chunk& ch) {
  constexpr int64_t rows = kPixelChunk;
  const Tiles tiles{(g.ho + 1) / 2, (g.wo + 1) / 2};
  const int64_t count = g.b * tiles.ty * tiles.tx, cw = c1 - c0;
  const ChannelBlocks blocks(0, cw);
  // Each GEMM as the weight gradient of a 1x1 convolution over a one-row image of `rows` tiles.
  const Geometry gemm{1, 1, rows, cw, 1, 1, V * kLanes, 1, rows, 1, 0, 0};
  std::vector<int64_t> off(rows);
  TapOffsets(gemm, 0, rows, off.data());
  std::vector<vf> total(16 * cw * V, vf{}), vbuf(16 * rows * cw / kLanes + 1), gt(16 * rows * V);
  float* v = reinterpret_cast<float*>(vbuf.data());
  for (int64_t t0 = 0; t0 < count; t0 += rows) {
    const int64_t n = std::min(rows, count - t0);
    WinogradInput(g, tiles, x, t0, n, rows, c0, c1, v);
    WinogradGradTiles<V>(g, tiles, gy, t0, n, rows, ch, gt.data());
    for (int e = 0; e < 16; ++e)
      for (int64_t j = 0; j < blocks.count; ++j) {
        const int64_t c = blocks.Start(j);
        WgradTileAny<V>(static_cast<int>(blocks.Start(j + 1) - c), gemm, v + e * rows * cw,
                        reinterpret_cast<const float*>(gt.data() + e * rows * V), V * kLanes,
                        zeros, off.data(), n, c, &total[(e * cw + c) * V]);
      }
  }
  // G^T dU G per input channel and vector of output channels.
  for (int64_t c = 0; c < cw; ++c)
    for (int q = 0; q < V; ++q) {
      const int64_t lanes = std::min<int64_t>(kLanes, ch.width - q * kLanes);
      if (lanes <= 0) break;
      vf u[4][4], s[3][4];
      for (int e = 0; e < 16; ++e) u[e / 4][e % 4] = total[(e * cw + c) * V + q];
      for (int j = 0; j < 4; ++j) {  // G^T dU: rows
        s[0][j] = u[0][j] + 0.5f * (u[1][j] + u[2][j]);
        s[1][j] = 0.5f * (u[1][j] - u[2][j]);
        s[2][j] = 0.5f * (u[1][j] + u[2][j]) + u[3][j];
      }
      for (int i = 0; i < 3; ++i) {  // (G^T dU) G: columns
        const vf out[3] = {s[i][0] + 0.5f * (s[i][1] + s[i][2]), 0.5f * (s[i][1] - s[i][2]),
                           0.5f * (s[i][1] + s[i][2]) + s[i][3]};
        for (int j = 0; j < 3; ++j)
          StorePart(dw + ((i * 3 + j) * g.c + c0 + c) * g.o + ch.o0 + q * kLanes, out[j], lanes);
      }
    }
}

// Tasks own (input channel group, output channel chunk) tiles; the channels are split into as
// many groups as leave one task per thread (evenly: 64 channels on 2 threads, 32 each): the more
// channels a task holds, the more often each chunk of the output gradient is used while in L1
// (one thread, 32x32 -> 16x16 x 64 at batch 32: 80 GFLOP/s with one block of 4 channels per
// task, 117 with all). Each weight's sum runs in the same order whatever the grouping.
using Runs = std::vector<std::pair<int64_t, int64_t>>;  // (first chunk, count) of each run

// How long the tasks (each run of chunks times each of `groups` groups of the c input channels)
// keep the busiest of `threads` threads, claimed in order, in vectors x channels.
int64_t Span(const Runs& runs, const std::vector<Chunk>& chunks, int64_t c, int64_t groups,
             int64_t threads) {
  std::vector<int64_t> load(threads, 0);
  for (const auto& [first, count] : runs)  // task order: run-major, as Wgrad numbers them
    for (int64_t k = 0; k < groups; ++k)
      *std::min_element(load.begin(), load.end()) +=
          count * chunks[first].v * ((k + 1) * c / groups - k * c / groups);
  return *std::max_element(load.begin(), load.end());
}

// Chunks first .. first+len-1 (of equal width) as n runs of near-equal lengths (6 chunks in 2:
// 3 + 3, not 4 + 2), appended to `runs`.
void AddRuns(int64_t first, int64_t len, int64_t n, Runs& runs) {
  for (int64_t r = 0; r < n; ++r)
    runs.emplace_back(first + r * len / n, (r + 1) * len / n - r * len / n);
}

template <typename Run>
void Wgrad(const Run& run, const Geometry& g, const float* x, const float* gy, float* dw,
           bool winograd) {
  std::vector<Chunk> chunks = OutputChunks(g.o, kWidestWgrad);
  const bool large = g.b * g.h * g.w * g.c * int64_t{sizeof(float)} >= kRunMinInputBytes;
  // On a large input a last, narrower chunk is widened to the others' width (zeros in its extra
  // lanes) so that a run can take it with them: 24 output channels are one run of 16 + 8 that
  // reads the input once, not a 16 and an 8 that each read it.
  if (kChunkRun > 1 && !winograd && large && chunks.size() > 1) chunks.back().v = chunks.front().v;
  const int64_t threads = run.threads(), nchunks = static_cast<int64_t>(chunks.size());
  int64_t longest = winograd || !large ? 1 : std::min(kChunkRun, nchunks);
  // Fewer runs than threads split the input channels; where that leaves narrow groups, shorter
  // runs instead.
  const int64_t full_runs = (nchunks + longest - 1) / longest;
  if (full_runs < threads && g.c * full_runs / threads < kMinGroupChannels)
    longest = std::clamp<int64_t>(nchunks / threads, 1, longest);
  // Runs of chunks of equal width one task takes together: each stretch of equal chunks as the
  // fewest runs of at most `longest`; with runs of several chunks, as many runs as the threads
  // share evenly where that is as even or better (9 chunks on 2 threads: 5 + 4, which read the
  // input twice, not 3 + 3 + 3).
  const int64_t blocks = (g.c + kCb - 1) / kCb;
  Runs runs;
  for (int64_t i = 0; i < nchunks;) {
    int64_t j = i + 1;
    while (j < nchunks && chunks[j].v == chunks[i].v) ++j;
    const int64_t len = j - i;
    int64_t n = (len + longest - 1) / longest;
    if (longest > 1 && n % threads != 0) {  // fewest runs among the evenest (ascending m)
      int64_t best_span = INT64_MAX;
      for (int64_t m : {n / threads * threads, n, (n / threads + 1) * threads}) {
        if (m < 1 || m > len) continue;
        Runs trial;
        AddRuns(i, len, m, trial);
        const int64_t groups = std::clamp<int64_t>(threads / m, 1, blocks);
        const int64_t span = Span(trial, chunks, g.c, groups, threads);
        if (span < best_span) best_span = span, n = m;
      }
    }
    AddRuns(i, len, n, runs);
    i = j;
  }
  // Largest runs first: the tasks are claimed in order, so the last ones to start are small.
  std::stable_sort(runs.begin(), runs.end(), [&](const auto& a, const auto& b) {
    return a.second * chunks[a.first].v > b.second * chunks[b.first].v;
  });
  const int64_t nruns = static_cast<int64_t>(runs.size());
  int64_t groups = std::clamp<int64_t>(threads / nruns, 1, blocks);
  int64_t run_chunks = 1;
  for (const auto& r : runs) run_chunks = std::max(run_chunks, r.second);
  if (run_chunks > 1) {  // input channels per group: a task's totals within kTaskTotalsBytes
    const int64_t per_channel = g.kh * g.kw * run_chunks * kWidestWgrad * sizeof(vf);
    const int64_t width = std::max<int64_t>(kCb, kTaskTotalsBytes / per_channel);
    groups = std::min(blocks, std::max(groups, (g.c + width - 1) / width));
  }
  // Where the threads would still wait on each other, more groups, up to 4 tasks a thread, when
  // the output gradient that each group reads again stays in the shared cache: the fewest that
  // keep every thread busy until within 1/32 of the end, or the count that comes closest.
  if (threads > 1 && g.pixels() * g.o * int64_t{sizeof(float)} <= kRereadBytes) {
    const int64_t most = std::max(groups, std::min(blocks, (4 * threads + nruns - 1) / nruns));
    int64_t total = 0;
    for (const auto& [first, count] : runs) total += count * chunks[first].v * g.c;
    int64_t best = groups, best_span = INT64_MAX;
    for (int64_t k = groups; k <= most; ++k) {
      const int64_t span = Span(runs, chunks, g.c, k, threads);
      if (span < best_span) best = k, best_span = span;
      if (32 * (span * threads - total) <= total) break;
    }
    groups = best;
  }
  const std::vector<float> zeros(g.c + kCb, 0.0f);
  run(groups * nruns, [&](int64_t task) {
    const auto [first, count] = runs[task / groups];
    const Chunk& ch = chunks[first];
    const int64_t group = task % groups;
    const int64_t c0 = group * g.c / groups, c1 = (group + 1) * g.c / groups;
    const float* z = zeros.data();
    switch (ch.v) {
      case 1:
        winograd ? WinogradWgradTask<1>(g, x, gy, z, dw, c0, c1, ch)
                 : WgradTask<1>(g, x, gy, z, dw, c0, c1, &ch, count);
        break;
      case 2:
        winograd ? WinogradWgradTask<2>(g, x, gy, z, dw, c0, c1, ch)
                 : WgradTask<2>(g, x, gy, z, dw, c0, c1, &ch, count);
        break;
#ifdef __AVX512F__
      case 3:
        winograd ? WinogradWgradTask<3>(g, x, gy, z, dw, c0, c1, ch)
                 : WgradTask<3>(g, x, gy, z, dw, c0, c1, &ch, count);
        break;
      default:
        winograd ? WinogradWgradTask<4>(g, x, gy, z, dw, c0, c1, ch)
                 : WgradTask<4>(g, x, gy, z, dw, c0, c1, &ch, count);
        break;
#endif
    }
  });
}

// Runs tasks over XLA's intra-op thread pool.
struct PoolRunner {
  ffi::ThreadPool& pool;
  int64_t threads() const { return std::max<int64_t>(1, pool.num_threads()); }
  template <typename F>
  void operator()(int64_t n, const F& body) const {
    ParallelFor(pool, n, body);
  }
};

// The geometry of a convolution of x [B,H,W,C] with a kernel-shaped k [KH,KW,C,O] (the weights,
// or the weight gradient) whose output-shaped image is [B,Ho,Wo,O] (the output, or its gradient),
// checked, also that Winograd's form (winograd=1) gets a 3x3 stride-1 convolution.
ffi::Error MakeGeometry(const char* what, ffi::Span<const int64_t> xd, ffi::Span<const int64_t> kd,
                        ffi::Span<const int64_t> yd, int64_t stride, int64_t pad_top,
                        int64_t pad_left, int64_t winograd, Geometry* g) {
  const std::string op = std::string("jaxcls conv ") + what;
  if (xd.size() != 4 || kd.size() != 4 || yd.size() != 4 || kd[2] != xd[3] || yd[3] != kd[3] ||
      yd[0] != xd[0])
    return ffi::Error(ffi::ErrorCode::kInvalidArgument, op + ": bad shapes");
  *g = Geometry{xd[0], xd[1], xd[2], xd[3], kd[0], kd[1], kd[3], yd[1], yd[2], stride, pad_top, pad_left};
  if (g->c < 1 || g->o < 1 || stride < 1 || g->kh < 1 || g->kw < 1 || g->kh * g->kw > kMaxTaps ||
      pad_top < 0 || pad_left < 0)
    return ffi::Error(ffi::ErrorCode::kInvalidArgument,
                      op + ": needs stride >= 1, padding >= 0 and at most " +
                          std::to_string(kMaxTaps) + " kernel taps");
  if (winograd && (g->kh != 3 || g->kw != 3 || stride != 1))
    return ffi::Error(ffi::ErrorCode::kInvalidArgument,
                      op + ": winograd=1 needs a 3x3 kernel and stride 1");
  return ffi::Error::Success();
}

ffi::Error ConvFwd(ffi::ThreadPool pool, ffi::Buffer<ffi::F32> x, ffi::Buffer<ffi::F32> w,
                   ffi::ResultBuffer<ffi::F32> y, int64_t stride, int64_t pad_top,
                   int64_t pad_left, int64_t winograd, int64_t few) {
  Geometry g;
  if (auto e = MakeGeometry("fwd", x.dimensions(), w.dimensions(), y->dimensions(), stride,
                            pad_top, pad_left, winograd, &g);
      e.failure())
    return e;
  if (winograd)
    WinogradForward(PoolRunner{pool}, g, x.typed_data(), w.typed_data(), y->typed_data());
  else if (few)
    ForwardFew(PoolRunner{pool}, g, x.typed_data(), w.typed_data(), y->typed_data());
  else
    ForwardPacked(PoolRunner{pool}, g, x.typed_data(), w.typed_data(), y->typed_data());
  return ffi::Error::Success();
}

ffi::Error ConvWgrad(ffi::ThreadPool pool, ffi::Buffer<ffi::F32> x, ffi::Buffer<ffi::F32> gy,
                     ffi::ResultBuffer<ffi::F32> dw, int64_t stride, int64_t pad_top,
                     int64_t pad_left, int64_t winograd) {
  Geometry g;
  if (auto e = MakeGeometry("wgrad", x.dimensions(), dw->dimensions(), gy.dimensions(), stride,
                            pad_top, pad_left, winograd, &g);
      e.failure())
    return e;
  Wgrad(PoolRunner{pool}, g, x.typed_data(), gy.typed_data(), dw->typed_data(), winograd);
  return ffi::Error::Success();
}

}  // namespace

XLA_FFI_DEFINE_HANDLER_SYMBOL(JaxclsConvFwd, ConvFwd,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::ThreadPool>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>()
                                  .Attr<int64_t>("stride")
                                  .Attr<int64_t>("pad_top")
                                  .Attr<int64_t>("pad_left")
                                  .Attr<int64_t>("winograd")
                                  .Attr<int64_t>("few"));

XLA_FFI_DEFINE_HANDLER_SYMBOL(JaxclsConvWgrad, ConvWgrad,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::ThreadPool>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>()
                                  .Attr<int64_t>("stride")
                                  .Attr<int64_t>("pad_top")
                                  .Attr<int64_t>("pad_left")
                                  .Attr<int64_t>("winograd"));
