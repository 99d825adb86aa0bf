// Every small max-pool geometry through jaxcls/native/max_pool.cc's row functions, built with
// AddressSanitizer by tests/native/test_max_pool_sweep.py: no access outside the buffers, and the
// gradient equals a plain scatter of each output's gradient to its winner, added in tap order.
#include <cstdio>
#include <random>
#include <vector>

#include "max_pool.cc"

int main() {
  int geometries = 0, mismatches = 0;
  for (int h = 1; h <= 6; ++h)
    for (int w = 1; w <= 6; ++w)
      for (int k = 1; k <= 4; ++k)
        for (int s = 1; s <= 3; ++s)
          for (int pt = 0; pt < k; ++pt)
            for (int pb = 0; pb <= k; ++pb)
              for (int pl = 0; pl < k; ++pl)
                for (int pr = 0; pr <= k; ++pr)
                  for (int c : {3, 37}) {  // a tail only; 2 vectors (or 4 with AVX2) and a tail
                    if (h + pt + pb < k || w + pl + pr < k) continue;
                    const int ho = (h + pt + pb - k) / s + 1, wo = (w + pl + pr - k) / s + 1;
                    PoolGeometry g{2, h, w, c, ho, wo, k, k, s, pt, pl};
                    std::vector<float> x(2 * h * w * c), y(2 * ho * wo * c), dx(x.size()),
                        ref(x.size(), 0.0f);
                    std::vector<int8_t> win(y.size());
                    std::mt19937 r(geometries);
                    std::normal_distribution<float> d;
                    for (auto& v : x) v = d(r);
                    for (int row = 0; row < 2 * ho; ++row)
                      ForwardRow(g, x.data(), y.data(), win.data(), row);
                    for (int t = 0; t < k * k; ++t)  // each output's gradient (its value) to its winner
                      for (int b = 0; b < 2; ++b)
                        for (int oh = 0; oh < ho; ++oh)
                          for (int ow = 0; ow < wo; ++ow)
                            for (int ch = 0; ch < c; ++ch) {
                              const int at = ((b * ho + oh) * wo + ow) * c + ch;
                              const int ih = oh * s + t / k - pt, iw = ow * s + t % k - pl;
                              if (win[at] != t || ih < 0 || ih >= h || iw < 0 || iw >= w) continue;
                              ref[((b * h + ih) * w + iw) * c + ch] += y[at];
                            }
                    std::vector<float> buffer;
                    for (int row = 0; row < 2 * h; ++row)
                      BackwardRow(g, y.data(), win.data(), dx.data(), row, buffer);
                    ++geometries;
                    if (dx != ref) ++mismatches;
                  }
  std::printf("geometries %d mismatches %d\n", geometries, mismatches);
  return mismatches != 0;
}
