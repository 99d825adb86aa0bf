// Every small max-pool geometry through jaxcls/native/max_pool.cc's row functions, built with
// AddressSanitizer by tests/native/test_max_pool_sweep.py: no access outside the buffers, and the
// gradient equals a plain scatter of each output's gradient to its winner, added in tap order.
// With BatchNorm's apply inside (the affine forward pass, the normalising backward pass): the
// outputs are the maxima of the normalised taps, `picked` holds x at each winner, and the
// gradient is the same scatter with BatchNorm's backward applied to it.
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
                      ForwardRow<false>(g, x.data(), y.data(), win.data(), row, {}, nullptr);
                    // Each output's gradient (its value) to its winner if that is tap t, so that
                    // taps 0, 1, ... add in the kernel's order; with `picked`, counts the outputs
                    // won by tap t whose `picked` is not x there (0 for a tap in the padding).
                    auto scatter = [&](const std::vector<int8_t>& wn, const std::vector<float>& gy,
                                       int t, std::vector<float>& out, const float* picked) {
                      int bad = 0;
                      for (int b = 0; b < 2; ++b)
                        for (int oh = 0; oh < ho; ++oh)
                          for (int ow = 0; ow < wo; ++ow)
                            for (int ch = 0; ch < c; ++ch) {
                              const int at = ((b * ho + oh) * wo + ow) * c + ch;
                              if (wn[at] != t) continue;
                              const int ih = oh * s + t / k - pt, iw = ow * s + t % k - pl;
                              const bool inside = ih >= 0 && ih < h && iw >= 0 && iw < w;
                              const int in = ((b * h + ih) * w + iw) * c + ch;
                              if (picked && picked[at] != (inside ? x[in] : 0.0f)) ++bad;
                              if (inside) out[in] += gy[at];
                            }
                      return bad;
                    };
                    for (int t = 0; t < k * k; ++t) scatter(win, y, t, ref, nullptr);
                    std::vector<float> buffer;
                    for (int row = 0; row < 2 * h; ++row)
                      BackwardRow(g, y.data(), win.data(), dx.data(), row, buffer, nullptr);
                    ++geometries;
                    if (dx != ref) ++mismatches;

                    // BatchNorm inside: per-channel factors, some scales negative.
                    std::vector<float> mul(c), shift(c), alpha(c), beta(c), mean(c);
                    for (int ch = 0; ch < c; ++ch)
                      mul[ch] = d(r), shift[ch] = d(r), alpha[ch] = d(r), beta[ch] = d(r),
                      mean[ch] = d(r);
                    std::vector<float> ya(y.size()), picked(y.size()), dxa(x.size()),
                        refa(x.size(), 0.0f);
                    std::vector<int8_t> wina(y.size());
                    const Affine affine{mul.data(), shift.data()};
                    for (int row = 0; row < 2 * ho; ++row)
                      ForwardRow<true>(g, x.data(), ya.data(), wina.data(), row, affine,
                                       picked.data());
                    for (int b = 0; b < 2; ++b)  // the maximum of the normalised taps
                      for (int oh = 0; oh < ho; ++oh)
                        for (int ow = 0; ow < wo; ++ow)
                          for (int ch = 0; ch < c; ++ch) {
                            float best = kNegInf;
                            for (int t = 0; t < k * k; ++t) {
                              const int ih = oh * s + t / k - pt, iw = ow * s + t % k - pl;
                              if (ih < 0 || ih >= h || iw < 0 || iw >= w) continue;
                              const float v = MulAdd(x[((b * h + ih) * w + iw) * c + ch], mul[ch],
                                                     shift[ch]);
                              best = std::max(best, v);
                            }
                            if (ya[((b * ho + oh) * wo + ow) * c + ch] != best) ++mismatches;
                          }
                    for (int t = 0; t < k * k; ++t)
                      mismatches += scatter(wina, ya, t, refa, picked.data());
                    for (size_t i = 0; i < refa.size(); ++i) {
                      const int ch = i % c;
                      refa[i] = MulAdd(beta[ch], x[i] - mean[ch], MulAdd(mul[ch], refa[i], alpha[ch]));
                    }
                    const NormGrad norm{x.data(), mul.data(), alpha.data(), beta.data(),
                                        mean.data()};
                    for (int row = 0; row < 2 * h; ++row)
                      BackwardRow(g, ya.data(), wina.data(), dxa.data(), row, buffer, &norm);
                    if (dxa != refa) ++mismatches;
                  }
  std::printf("geometries %d mismatches %d\n", geometries, mismatches);
  return mismatches != 0;
}
