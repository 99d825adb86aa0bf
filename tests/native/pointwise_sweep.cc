// Every small 1x1 convolution through jaxcls/native/pointwise.cc's per-image both-gradients pass,
// built with AddressSanitizer by tests/native/test_kernel_sweeps.py: no access outside the
// buffers, and the input and weight gradients equal float64 sums within 1e-5 of each result's
// largest value; with the output gradient read (jaxcls_pointwise_bwd) and built chunk by chunk
// from a BatchNorm + ReLU6's (or ReLU's) output gradient and input (jaxcls_pointwise_bn_bwd).
#include <cmath>
#include <cstdio>
#include <random>
#include <vector>

#include "pointwise.cc"

int main() {
  int geometries = 0, mismatches = 0;
  // Pixels an image around the 32-pixel chunks; channels around the vectors and register tiles
  // (6 input channels a weight tile, 6 vectors an input-gradient block, up to 48 in use).
  for (int64_t pixels : {1, 2, 7, 31, 32, 33, 63, 64, 65, 97})
    for (int64_t c : {1, 3, 5, 6, 7, 8, 9, 13, 16, 17, 24, 37, 48, 49, 56})
      for (int64_t o : {1, 5, 8, 9, 16, 17, 24, 33})
        for (int mode = 0; mode < 3; ++mode) {  // read; built for ReLU6; built for ReLU
          const int64_t images = 2;
          const Shape s{images, pixels, c, o};
          std::mt19937 r(geometries);
          std::normal_distribution<float> d;
          std::vector<float> x(images * pixels * c), w(c * o), g(images * pixels * o),
              y(g.size()), coef(5 * o);
          for (auto* v : {&x, &w, &g, &y, &coef})
            for (auto& e : *v) e = d(r);
          for (auto& e : y) e *= 4.0f;  // both of ReLU6's clips and its linear part
          const float hi = mode == 2 ? INFINITY : 6.0f;
          const BnGradient bn{g.data(), y.data(), coef.data(), hi};
          // The output gradient the kernel reads or builds, in float64 from the same floats.
          std::vector<double> gref(g.size());
          for (int64_t i = 0; i < static_cast<int64_t>(g.size()); ++i) {
            const int64_t ch = i % o;
            if (mode == 0) {
              gref[i] = g[i];
              continue;
            }
            const float mul = coef[ch], pre = MulAdd(y[i], mul, coef[o + ch]);
            const double gz = pre > 0.0f && pre < hi ? g[i] : 0.0;
            gref[i] = static_cast<double>(mul) * gz + coef[2 * o + ch] +
                      static_cast<double>(coef[3 * o + ch]) * (y[i] - coef[4 * o + ch]);
          }
          std::vector<double> dx_ref(x.size(), 0.0), dw_ref(images * c * o, 0.0);
          for (int64_t b = 0; b < images; ++b)
            for (int64_t p = 0; p < pixels; ++p)
              for (int64_t ci = 0; ci < c; ++ci)
                for (int64_t oi = 0; oi < o; ++oi) {
                  const int64_t px = b * pixels + p;
                  const double gv = gref[px * o + oi];
                  dx_ref[px * c + ci] += gv * w[ci * o + oi];
                  dw_ref[(b * c + ci) * o + oi] += gv * x[px * c + ci];
                }
          const std::vector<vf> wt = Transposed(s, w.data());
          std::vector<float> dx(x.size()), dw(images * c * o);
          for (int64_t b = 0; b < images; ++b)
            Image(s, x.data(), g.data(), mode ? &bn : nullptr,
                  reinterpret_cast<const float*>(wt.data()), dx.data(), dw.data(), b);
          ++geometries;
          for (auto [got, want] : {std::pair{&dx, &dx_ref}, std::pair{&dw, &dw_ref}}) {
            double top = 1e-30;
            for (double v : *want) top = std::max(top, std::fabs(v));
            for (size_t i = 0; i < want->size(); ++i)
              if (std::fabs((*got)[i] - (*want)[i]) > 1e-5 * top) {
                ++mismatches;
                std::printf("mismatch pixels %ld c %ld o %ld mode %d at %zu: %g, want %g\n",
                            pixels, c, o, mode, i, (*got)[i], (*want)[i]);
                break;
              }
          }
        }
  std::printf("geometries %d mismatches %d\n", geometries, mismatches);
  return mismatches != 0;
}
