// Every small geometry through jaxcls/native/dense_conv.cc's Winograd F(2x2, 3x3) forward pass and
// weight gradient, built with AddressSanitizer by tests/native/test_kernel_sweeps.py: no access
// outside the buffers (tiles past the map's last row or column, channel counts that leave a vector
// tail, channel groups), and each result equals a float64 direct sum within 1e-5 of its largest
// value.
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
  for (int64_t b : {1, 3})
    for (int64_t h = 1; h <= 9; h += 2)
      for (int64_t w = 2; w <= 8; w += 3)
        for (int64_t c : {1, 5, 16, 17, 40})
          for (int64_t o : {1, 16, 23, 70})
            for (int64_t pt = 0; pt <= 3; ++pt)
              for (int64_t pb = 0; pb <= 1; ++pb)
                for (int64_t pl = 0; pl <= 2; ++pl) {
                  const int64_t ho = h + pt + pb - 2, wo = w + pl + 1 - 2;  // right padding 1
                  if (ho < 1 || wo < 1) continue;
                  const Geometry g{b, h, w, c, 3, 3, o, ho, wo, 1, pt, pl};
                  std::vector<float> x(b * h * w * c), k(9 * c * o), y(b * ho * wo * o),
                      gy(y.size()), dw(k.size());
                  for (auto& v : x) v = d(r);
                  for (auto& v : k) v = d(r);
                  for (auto& v : gy) v = d(r);
                  WinogradForward(Serial{1}, g, x.data(), k.data(), y.data());
                  Wgrad(Serial{(c + 1) % 4 + 1}, g, x.data(), gy.data(), dw.data(), true);
                  std::vector<double> ref(y.size(), 0.0), dw_ref(dw.size(), 0.0);
                  for (int64_t n = 0; n < b; ++n)
                    for (int64_t oy = 0; oy < ho; ++oy)
                      for (int64_t ox = 0; ox < wo; ++ox)
                        for (int64_t i = 0; i < 3; ++i)
                          for (int64_t j = 0; j < 3; ++j) {
                            const int64_t iy = oy + i - pt, ix = ox + j - pl;
                            if (iy < 0 || iy >= h || ix < 0 || ix >= w) continue;
                            for (int64_t ci = 0; ci < c; ++ci)
                              for (int64_t co = 0; co < o; ++co) {
                                const double xv = x[((n * h + iy) * w + ix) * c + ci];
                                const int64_t at = ((n * ho + oy) * wo + ox) * o + co;
                                const int64_t kt = ((i * 3 + j) * c + ci) * o + co;
                                ref[at] += xv * k[kt];
                                dw_ref[kt] += xv * gy[at];
                              }
                          }
                  for (int which = 0; which < 2; ++which) {
                    const std::vector<float>& got = which ? dw : y;
                    const std::vector<double>& want = which ? dw_ref : ref;
                    double largest = 1e-30, diff = 0.0;
                    for (size_t i = 0; i < got.size(); ++i) {
                      largest = std::max(largest, std::fabs(want[i]));
                      diff = std::max(diff, std::fabs(want[i] - got[i]));
                    }
                    ++geometries;
                    if (diff > 1e-5 * largest) {
                      ++mismatches;
                      std::printf("%s b %ld %ldx%ld c %ld o %ld pads %ld %ld %ld: %g of %g\n",
                                  which ? "wgrad" : "fwd", b, h, w, c, o, pt, pb, pl, diff,
                                  largest);
                    }
                  }
                }
  std::printf("geometries %d mismatches %d\n", geometries, mismatches);
  return mismatches != 0;
}
