// One vector register of floats for the jaxcls XLA FFI kernels: 16 with AVX-512, else 8 (the
// kernels are built with -march=native; GCC/Clang vector extension, a scalar operand is
// broadcast), and an unaligned load of one.
#ifndef JAXCLS_NATIVE_SIMD_H_
#define JAXCLS_NATIVE_SIMD_H_

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

}  // namespace jaxcls

#endif  // JAXCLS_NATIVE_SIMD_H_
