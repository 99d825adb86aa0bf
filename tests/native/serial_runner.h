// The `run` the dense convolution kernels take (PoolRunner's interface), for the sweeps: runs the
// tasks in order on this thread, split as for `count` threads (the forward pass splits pixels
// into runs by it, the weight gradient input channels into groups).
#ifndef JAXCLS_TESTS_NATIVE_SERIAL_RUNNER_H_
#define JAXCLS_TESTS_NATIVE_SERIAL_RUNNER_H_

#include <cstdint>

struct Serial {
  int64_t count;
  int64_t threads() const { return count; }
  template <typename F>
  void operator()(int64_t n, const F& body) const {
    for (int64_t i = 0; i < n; ++i) body(i);
  }
};

#endif  // JAXCLS_TESTS_NATIVE_SERIAL_RUNNER_H_
