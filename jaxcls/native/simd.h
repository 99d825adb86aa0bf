// One vector register of floats for the jaxcls XLA FFI kernels: 16 with AVX-512, else 8 (the
// kernels are built with -march=native; GCC/Clang vector extension, a scalar operand is
// broadcast), unaligned loads and stores of one, whole or in part, and a multiply-add rounded once.
#ifndef JAXCLS_NATIVE_SIMD_H_
#define JAXCLS_NATIVE_SIMD_H_

#include <cmath>
#include <cstdint>
#include <cstring>

#if defined(__AVX512F__) || defined(__AVX2__) || defined(__FMA__)
#include <immintrin.h>
#endif

namespace jaxcls {

#ifdef __AVX512F__
constexpr int kLanes = 16;
#else
constexpr int kLanes = 8;
#endif
typedef float vf __attribute__((vector_size(4 * kLanes)));

inline vf Load(const float* p) {
  vf v;
  std::memcpy(&v, p, sizeof(v));
  return v;
}

// The first `lanes` (1 .. kLanes) floats at p, zero beyond; a plain vector load when all.
inline vf LoadPart(const float* p, int64_t lanes) {
  if (lanes == kLanes) return Load(p);
  vf v = {};
  std::memcpy(&v, p, sizeof(float) * lanes);
  return v;
}

// Stores the first `lanes` (1 .. kLanes) floats of v at p; a plain vector store when all.
inline void StorePart(float* p, vf v, int64_t lanes) {
  if (lanes == kLanes)
    std::memcpy(p, &v, sizeof(v));
  else
    std::memcpy(p, &v, sizeof(float) * lanes);
}

// a * b + c rounded once where the machine has FMA (as XLA:CPU computes BatchNorm's apply there).
inline vf MulAdd(vf a, vf b, vf c) {
#if defined(__AVX512F__)
  return reinterpret_cast<vf>(_mm512_fmadd_ps(reinterpret_cast<__m512>(a),
                                              reinterpret_cast<__m512>(b),
                                              reinterpret_cast<__m512>(c)));
#elif defined(__FMA__)
  return reinterpret_cast<vf>(_mm256_fmadd_ps(reinterpret_cast<__m256>(a),
                                              reinterpret_cast<__m256>(b),
                                              reinterpret_cast<__m256>(c)));
#else
  return a * b + c;
#endif
}

// a in every lane: one broadcast instruction (vf{} + a would be an addition the compiler must
// keep, 0 + -0 being +0; a lane-by-lane loop became 8 inserts).
inline vf Splat(float a) {
#if defined(__AVX512F__)
  return reinterpret_cast<vf>(_mm512_set1_ps(a));
#elif defined(__AVX2__) || defined(__FMA__)
  return reinterpret_cast<vf>(_mm256_set1_ps(a));
#else
  vf v;
  for (int i = 0; i < kLanes; ++i) v[i] = a;
  return v;
#endif
}

// The same with a broadcast to every lane: acc = MulAdd(x, w, acc) for acc += x * w.
inline vf MulAdd(float a, vf b, vf c) { return MulAdd(Splat(a), b, c); }

inline float MulAdd(float a, float b, float c) {
#if defined(__FMA__) || defined(__AVX512F__)
  return std::fma(a, b, c);
#else
  return a * b + c;
#endif
}

// g where a ReLU (hi = inf) or ReLU6 (hi = 6) whose input is pre passes its gradient, 0 < pre <
// hi (where jax.nn.relu's and relu6's derivatives are 1), and 0 elsewhere: the one mask of
// BatchNorm's backward sums in channel_sums.cc and depthwise.cc.
inline vf ClipGradient(vf g, vf pre, vf hi) {
  const vf zero = {};
  return (pre > zero) & (pre < hi) ? g : zero;
}

}  // namespace jaxcls

#endif  // JAXCLS_NATIVE_SIMD_H_
