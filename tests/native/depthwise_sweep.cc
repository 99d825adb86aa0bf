// Every small geometry through jaxcls/native/depthwise.cc's forward pass (with its output's
// moments) and backward pass (input and kernel gradients), and the same with BatchNorm's apply and a ReLU6 or ReLU computed inside
// them (the activation's rows in a ring of rows; BatchNorm's clipped sums of the input gradient), built
// with AddressSanitizer by tests/native/test_kernel_sweeps.py: no access outside the buffers
// (channel chunks with a vector tail, kernels wider than the map, strides that skip taps), and
// each result equals a float64 direct sum within 1e-5 of its largest value.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <random>
#include <vector>

#include "depthwise.cc"

// The largest |want - got| over the largest |want| (0 when want is all zero and got equals it).
static bool Close(const std::vector<double>& want, const std::vector<float>& got) {
  double largest = 0, diff = 0;
  for (size_t i = 0; i < want.size(); ++i) {
    largest = std::max(largest, std::fabs(want[i]));
    diff = std::max(diff, std::fabs(want[i] - got[i]));
  }
  return diff <= 1e-5 * largest;
}

int main() {
  int geometries = 0, mismatches = 0;
  std::mt19937 r(0);
  std::normal_distribution<float> d;
  const int64_t b = 2;
  const int64_t kernels[][2] = {{1, 1}, {2, 2}, {3, 3}, {5, 5}, {3, 5}};
  for (int64_t h = 1; h <= 6; ++h)
    for (int64_t w = 1; w <= 6; ++w)
      for (const auto& kk : kernels)
        for (int64_t s = 1; s <= 3; ++s)
          for (int64_t pt = 0; pt < kk[0]; ++pt)
            for (int64_t pl = 0; pl < kk[1]; ++pl)
              for (int64_t pb = 0; pb < kk[0]; pb += std::max<int64_t>(1, kk[0] - 1))  // 0, kh-1
                for (int64_t pr = 0; pr < kk[1]; pr += std::max<int64_t>(1, kk[1] - 1))
                  // a tail only; 2 vectors and a tail (4 and a tail with AVX2); a whole chunk of
                  // 4 vectors and a second chunk's tail (AVX-512)
                  for (int64_t c : {3, 37, 70}) {
                    const int64_t kh = kk[0], kw = kk[1];
                    if (h + pt + pb < kh || w + pl + pr < kw) continue;
                    const int64_t ho = (h + pt + pb - kh) / s + 1, wo = (w + pl + pr - kw) / s + 1;
                    const Geometry g{b, h, w, c, kh, kw, ho, wo, s, pt, pl};
                    std::vector<float> x(b * h * w * c), k(kh * kw * c), gy(b * ho * wo * c);
                    for (auto& v : x) v = d(r);
                    for (auto& v : k) v = d(r);
                    for (auto& v : gy) v = d(r);
                    // The affine form's input: BatchNorm's apply and a ReLU6 (or ReLU).
                    std::vector<float> mul(c), shift(c);
                    for (auto& v : mul) v = d(r);
                    for (auto& v : shift) v = d(r);
                    const Affine affine{mul.data(), shift.data(), s == 2 ? INFINITY : 6.0f};
                    std::vector<float> act(x.size());
                    std::vector<bool> keep(x.size());
                    for (size_t i = 0; i < x.size(); ++i) {
                      const int64_t ch = i % c;
                      const float pre = jaxcls::MulAdd(x[i], mul[ch], shift[ch]);
                      act[i] = std::min(std::max(pre, 0.0f), affine.hi);
                      keep[i] = pre > 0.0f && pre < affine.hi;
                    }
                    // Direct sums, plain (on x) and affine (on act: ya, and the kernel gradient
                    // in out's first kh * kw rows).
                    const int64_t taps = kh * kw;
                    std::vector<double> y_ref(b * ho * wo * c, 0.0), dx_ref(x.size(), 0.0),
                        dk_ref(b * taps * c, 0.0), ya_ref(y_ref.size(), 0.0),
                        out_ref(b * (taps + 2) * c, 0.0);
                    for (int64_t n = 0; n < b; ++n)
                      for (int64_t oh = 0; oh < ho; ++oh)
                        for (int64_t ow = 0; ow < wo; ++ow)
                          for (int64_t i = 0; i < kh; ++i)
                            for (int64_t j = 0; j < kw; ++j) {
                              const int64_t ih = oh * s + i - pt, iw = ow * s + j - pl;
                              if (ih < 0 || ih >= h || iw < 0 || iw >= w) continue;
                              for (int64_t ch = 0; ch < c; ++ch) {
                                const int64_t xi = ((n * h + ih) * w + iw) * c + ch;
                                const int64_t yi = ((n * ho + oh) * wo + ow) * c + ch;
                                const int64_t ki = (i * kw + j) * c + ch;
                                y_ref[yi] += double(x[xi]) * k[ki];
                                dx_ref[xi] += double(gy[yi]) * k[ki];
                                dk_ref[n * taps * c + ki] += double(x[xi]) * gy[yi];
                                ya_ref[yi] += double(act[xi]) * k[ki];
                                out_ref[n * (taps + 2) * c + ki] += double(act[xi]) * gy[yi];
                              }
                            }
                    // The affine input gradient is the plain one; out's last two rows its sums
                    // where the activation passes its gradient.
                    for (size_t i = 0; i < x.size(); ++i) {
                      const int64_t n = i / (h * w * c), ch = i % c;
                      const double kept = keep[i] ? dx_ref[i] : 0.0;
                      out_ref[(n * (taps + 2) + taps) * c + ch] += kept;
                      out_ref[(n * (taps + 2) + taps + 1) * c + ch] += kept * x[i];
                    }
                    // The moments of each image's output, plain and affine: [2, C] per image.
                    std::vector<double> m_ref(b * 2 * c, 0.0), ma_ref(m_ref.size(), 0.0);
                    for (size_t i = 0; i < y_ref.size(); ++i) {
                      const int64_t n = i / (ho * wo * c), ch = i % c;
                      m_ref[n * 2 * c + ch] += y_ref[i];
                      m_ref[(n * 2 + 1) * c + ch] += y_ref[i] * y_ref[i];
                      ma_ref[n * 2 * c + ch] += ya_ref[i];
                      ma_ref[(n * 2 + 1) * c + ch] += ya_ref[i] * ya_ref[i];
                    }
                    std::vector<float> y(y_ref.size()), dx(x.size()), dk(dk_ref.size()),
                        ya(ya_ref.size()), dxa(x.size()), out(out_ref.size()), m(m_ref.size()),
                        ma(m_ref.size());
                    for (int64_t n = 0; n < b; ++n) {
                      const float* xb = x.data() + n * h * w * c;
                      const float* gb = gy.data() + n * ho * wo * c;
                      const ImageRows rows{xb, w * c};
                      ForwardImage(g, rows, k.data(), y.data() + n * ho * wo * c,
                                   m.data() + n * 2 * c);
                      for (int64_t ih = 0; ih < h; ++ih)
                        InputGradRow(g, gb, k.data(), dx.data() + ((n * h + ih) * w) * c, ih);
                      KernelGradImage(g, xb, gb, dk.data() + n * taps * c);
                      ActivationRows act_rows(g, affine, xb, kh);
                      ForwardImage(g, act_rows, k.data(), ya.data() + n * ho * wo * c,
                                   ma.data() + n * 2 * c);
                      AffineBackwardImage(g, affine, xb, gb, k.data(), dxa.data() + n * h * w * c,
                                          out.data() + n * (taps + 2) * c);
                    }
                    ++geometries;
                    if (!Close(y_ref, y) || !Close(dx_ref, dx) || !Close(dk_ref, dk) ||
                        !Close(ya_ref, ya) || !Close(dx_ref, dxa) || !Close(out_ref, out) ||
                        !Close(m_ref, m) || !Close(ma_ref, ma)) {
                      ++mismatches;
                      if (mismatches <= 10)
                        std::printf("mismatch h %ld w %ld k %ldx%ld s %ld pads %ld %ld %ld %ld c %ld\n",
                                    long(h), long(w), long(kh), long(kw), long(s), long(pt),
                                    long(pb), long(pl), long(pr), long(c));
                    }
                  }
  std::printf("geometries %d mismatches %d\n", geometries, mismatches);
  return mismatches != 0;
}
