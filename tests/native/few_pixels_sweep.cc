// Every small geometry through jaxcls/native/dense_conv.cc's forward pass for few output pixels
// (ForwardFew), built with AddressSanitizer by tests/native/test_kernel_sweeps.py: no access
// outside the buffers (pixel blocks past the last pixel, output chunks narrower than a vector,
// input channels past a slice of kSliceRows, taps in the padding), each output equal to the
// packed-panel forward pass (ForwardPacked) to the bit, whatever the thread count that splits the
// pixels into runs, and within 1e-5 of a float64 direct sum relative to the largest value.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <random>
#include <vector>

#include "dense_conv.cc"
#include "serial_runner.h"

int main() {
  int geometries = 0, mismatches = 0;
  std::mt19937 r(0);
  std::normal_distribution<float> d;
  const int64_t kernels[][2] = {{1, 1}, {3, 3}, {2, 3}};
  for (int64_t b : {1, 2})
    for (int64_t h : {1, 2, 5})
      for (int64_t w : {1, 4})
        for (int64_t c : {1, 5, 17, 130})
          for (int64_t o : {1, 16, 23, 70, 130})
            for (const auto& k : kernels)
              for (int64_t stride : {1, 2})
                for (int64_t pt = 0; pt <= 2; ++pt)
                  for (int64_t pl = 0; pl <= 1; ++pl) {
                    const int64_t kh = k[0], kw = k[1];
                    // bottom/right padding as the top/left
                    const int64_t ho = (h + 2 * pt - kh) / stride + 1;
                    const int64_t wo = (w + 2 * pl - kw) / stride + 1;
                    if (h + 2 * pt < kh || w + 2 * pl < kw) continue;
                    const Geometry g{b, h, w, c, kh, kw, o, ho, wo, stride, pt, pl};
                    std::vector<float> x(b * h * w * c), wt(kh * kw * c * o),
                        few(g.pixels() * o), packed(few.size());
                    for (auto& v : x) v = d(r);
                    for (auto& v : wt) v = d(r);
                    ForwardFew(Serial{1 + (c + o) % 3}, g, x.data(), wt.data(), few.data());
                    ForwardPacked(Serial{1}, g, x.data(), wt.data(), packed.data());
                    std::vector<double> ref(few.size(), 0.0);
                    for (int64_t n = 0; n < b; ++n)
                      for (int64_t oy = 0; oy < ho; ++oy)
                        for (int64_t ox = 0; ox < wo; ++ox)
                          for (int64_t i = 0; i < kh; ++i)
                            for (int64_t j = 0; j < kw; ++j) {
                              const int64_t iy = oy * stride + i - pt, ix = ox * stride + j - pl;
                              if (iy < 0 || iy >= h || ix < 0 || ix >= w) continue;
                              for (int64_t ci = 0; ci < c; ++ci) {
                                const double xv = x[((n * h + iy) * w + ix) * c + ci];
                                for (int64_t co = 0; co < o; ++co)
                                  ref[((n * ho + oy) * wo + ox) * o + co] +=
                                      xv * wt[((i * kw + j) * c + ci) * o + co];
                              }
                            }
                    double largest = 1e-30, diff = 0.0;
                    int64_t unequal = 0;
                    for (size_t i = 0; i < few.size(); ++i) {
                      largest = std::max(largest, std::fabs(ref[i]));
                      diff = std::max(diff, std::fabs(ref[i] - few[i]));
                      unequal += few[i] != packed[i];
                    }
                    ++geometries;
                    if (diff > 1e-5 * largest || unequal) {
                      ++mismatches;
                      std::printf("b %ld %ldx%ld c %ld o %ld k %ldx%ld s %ld pads %ld %ld: %g of %g, "
                                  "%ld unequal to the packed pass\n",
                                  b, h, w, c, o, kh, kw, stride, pt, pl, diff, largest, unequal);
                    }
                  }
  std::printf("geometries %d mismatches %d\n", geometries, mismatches);
  return mismatches != 0;
}
