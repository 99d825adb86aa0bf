// One vector register of floats for the jaxcls XLA FFI kernels: 16 with AVX-512, else 8 (the
// kernels are built with -march=native; GCC/Clang vector extension, a scalar operand is
// broadcast), and unaligned loads and stores of one, whole or in part.
#ifndef JAXCLS_NATIVE_SIMD_H_
#define JAXCLS_NATIVE_SIMD_H_

#include <cstdint>
#include <cstring>

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

}  // namespace jaxcls

#endif  // JAXCLS_NATIVE_SIMD_H_
