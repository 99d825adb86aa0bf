// ParallelFor over XLA's intra-op thread pool, shared by the jaxcls XLA FFI kernels.
#ifndef JAXCLS_NATIVE_PARALLEL_FOR_H_
#define JAXCLS_NATIVE_PARALLEL_FOR_H_

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>

#include "xla/ffi/api/ffi.h"

namespace jaxcls {

// Runs body(i) for i in [0, n) on the calling thread and on up to num_threads - 1 pool workers.
// Never blocks on a task that has not started: work is claimed from a shared counter, and the
// caller only waits for workers that are already running, so a busy pool cannot deadlock it.
template <typename F>
void ParallelFor(xla::ffi::ThreadPool& pool, int64_t n, const F& body) {
  int64_t workers = std::min<int64_t>(pool.num_threads(), n) - 1;
  if (workers <= 0) {
    for (int64_t i = 0; i < n; ++i) body(i);
    return;
  }
  struct State {
    std::atomic<int64_t> next{0};
    std::atomic<int64_t> active{0};
    std::mutex mu;
    std::condition_variable cv;
  };
  auto state = std::make_shared<State>();
  const F* fn = &body;
  for (int64_t t = 0; t < workers; ++t) {
    pool.Schedule([state, fn, n]() {
      state->active.fetch_add(1);
      for (int64_t i; (i = state->next.fetch_add(1)) < n;) (*fn)(i);
      if (state->active.fetch_sub(1) == 1) {
        std::lock_guard<std::mutex> lock(state->mu);
        state->cv.notify_all();
      }
    });
  }
  for (int64_t i; (i = state->next.fetch_add(1)) < n;) body(i);
  // `next` is now >= n, so a worker that starts from here on claims nothing (and never calls
  // body); one that claimed an index incremented `active` before, so this waits for it.
  std::unique_lock<std::mutex> lock(state->mu);
  state->cv.wait(lock, [&] { return state->active.load() == 0; });
}

}  // namespace jaxcls

#endif  // JAXCLS_NATIVE_PARALLEL_FOR_H_
