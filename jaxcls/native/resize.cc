// Area (box-filter) downscaling of uint8 HWC images: OpenCV's INTER_AREA weights, computed
// separably so both passes run as contiguous, auto-vectorised loops.
//
// Why: OpenCV's INTER_AREA takes 0.5-1.1 ms to shrink a 300-500 px crop to 224x224 when the
// scale is not an integer (its general path walks a table of (source, destination, weight)
// triples one channel value at a time), about a fifth of the 2.5 ms one reader thread spent per
// 500x375 photo (docs/performance.md, "The area resize in C++ and malloc that keeps freed
// buffers"). Here every destination row is first the
// weighted sum of its source rows (one vector loop over the row's width x channels), then
// every destination pixel the weighted sum of its columns. The weights are OpenCV's (the overlap
// of each source pixel with the destination pixel's box, over the box's width), so the result
// equals cv2.resize(..., INTER_AREA) up to float rounding: within one grey level
// (tests/input_pipeline/test_resize_native.py).
//
// Built at first use by jaxcls/native/__init__.py (g++ -O3 -march=native) and called through
// ctypes, which releases the GIL, so reader threads resize in parallel. The Python side
// (input_pipeline/pp/ops_image.py) uses OpenCV when the library is unavailable.
//
//   jaxcls_resize_area_u8(src, src_h, src_w, src_row_stride, channels, dst, dst_h, dst_w) -> 0
//
// src rows may be strided (a crop of a larger image: stride in bytes, pixels contiguous within a
// row); dst is contiguous [dst_h, dst_w, channels]. Only shrinking (dst <= src on both axes).

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

namespace {

struct Tap {
  int dst;    // destination index
  int src;    // source index
  float w;    // weight
};

// OpenCV's computeResizeAreaTab: the source pixels under destination pixel d's box
// [d * scale, (d + 1) * scale), each with its overlap divided by the box's width.
std::vector<Tap> AreaTaps(int ssize, int dsize, double scale) {
  std::vector<Tap> taps;
  taps.reserve(static_cast<size_t>(dsize) * (static_cast<int>(scale) + 2));
  for (int d = 0; d < dsize; ++d) {
    double fs1 = d * scale, fs2 = fs1 + scale;
    double cell = std::min(scale, ssize - fs1);
    int s1 = static_cast<int>(std::ceil(fs1)), s2 = static_cast<int>(std::floor(fs2));
    s2 = std::min(s2, ssize - 1);
    s1 = std::min(s1, s2);
    if (s1 - fs1 > 1e-3) {
      taps.push_back({d, s1 - 1, static_cast<float>((s1 - fs1) / cell)});
    }
    for (int s = s1; s < s2; ++s) taps.push_back({d, s, static_cast<float>(1.0 / cell)});
    if (fs2 - s2 > 1e-3) {
      taps.push_back({d, s2, static_cast<float>(std::min(std::min(fs2 - s2, 1.0), cell) / cell)});
    }
  }
  return taps;
}

template <int C>
void ResizeArea(const uint8_t* src, int sh, int sw, int64_t stride, uint8_t* dst, int dh, int dw) {
  const std::vector<Tap> ty = AreaTaps(sh, dh, static_cast<double>(sh) / dh);
  const std::vector<Tap> tx = AreaTaps(sw, dw, static_cast<double>(sw) / dw);
  const int row = sw * C;
  std::vector<float> acc(row);
  std::vector<float> out(static_cast<size_t>(dw) * C);
  size_t t = 0;
  for (int y = 0; y < dh; ++y) {
    // Vertical: acc = this destination row's source rows, weighted (vectorised over the row).
    std::fill(acc.begin(), acc.end(), 0.0f);
    for (; t < ty.size() && ty[t].dst == y; ++t) {
      const uint8_t* s = src + ty[t].src * stride;
      const float w = ty[t].w;
      float* a = acc.data();
      for (int i = 0; i < row; ++i) a[i] += w * static_cast<float>(s[i]);
    }
    // Horizontal: every destination pixel from its columns of acc.
    std::fill(out.begin(), out.end(), 0.0f);
    for (const Tap& k : tx) {
      const float* a = acc.data() + k.src * C;
      float* o = out.data() + k.dst * C;
      for (int c = 0; c < C; ++c) o[c] += k.w * a[c];
    }
    uint8_t* d = dst + static_cast<int64_t>(y) * dw * C;
    for (int i = 0; i < dw * C; ++i) {
      d[i] = static_cast<uint8_t>(std::min(255.0f, std::max(0.0f, std::nearbyint(out[i]))));
    }
  }
}

}  // namespace

extern "C" int jaxcls_resize_area_u8(const uint8_t* src, int src_h, int src_w,
                                     int64_t src_row_stride, int channels, uint8_t* dst,
                                     int dst_h, int dst_w) {
  if (dst_h <= 0 || dst_w <= 0 || dst_h > src_h || dst_w > src_w) return 1;
  switch (channels) {
    case 1: ResizeArea<1>(src, src_h, src_w, src_row_stride, dst, dst_h, dst_w); return 0;
    case 3: ResizeArea<3>(src, src_h, src_w, src_row_stride, dst, dst_h, dst_w); return 0;
    case 4: ResizeArea<4>(src, src_h, src_w, src_row_stride, dst, dst_h, dst_w); return 0;
    default: return 2;
  }
}
