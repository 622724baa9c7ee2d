// Roofline probe for bench/RESULTS.md (issue 15): this machine's memory read bandwidth and peak
// float32 FMA rate, with the same threads as the runtime. Standalone (no libtorch):
//   g++ -O3 -std=c++17 -pthread bench/roofline_probe.cpp -o /tmp/roofline_probe && /tmp/roofline_probe [threads] [MiB]
// Bandwidth: each thread sums its slice of a buffer far larger than the caches (AVX2 loads, 4
// accumulators), best of 5 passes. FMA: 10 independent 8-wide FMA chains per thread (covers the
// FMA latency), best of 5. Prints JSON.
#include <immintrin.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <thread>
#include <vector>

__attribute__((target("avx2,fma"))) static float sum_slice(const float* p, size_t n) {
  __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
  for (size_t i = 0; i + 32 <= n; i += 32) {
    a0 = _mm256_add_ps(a0, _mm256_load_ps(p + i));
    a1 = _mm256_add_ps(a1, _mm256_load_ps(p + i + 8));
    a2 = _mm256_add_ps(a2, _mm256_load_ps(p + i + 16));
    a3 = _mm256_add_ps(a3, _mm256_load_ps(p + i + 24));
  }
  __m256 s = _mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3));
  float out[8];
  _mm256_storeu_ps(out, s);
  return out[0] + out[1] + out[2] + out[3] + out[4] + out[5] + out[6] + out[7];
}

__attribute__((target("avx2,fma"))) static float fma_chains(long iters) {
  __m256 a[10];
  for (int i = 0; i < 10; ++i) a[i] = _mm256_set1_ps(0.001f * i);
  const __m256 m = _mm256_set1_ps(0.999999f), c = _mm256_set1_ps(1e-7f);
  for (long k = 0; k < iters; ++k)
    for (int i = 0; i < 10; ++i) a[i] = _mm256_fmadd_ps(a[i], m, c);
  float out[8], s = 0;
  for (int i = 0; i < 10; ++i) {
    _mm256_storeu_ps(out, a[i]);
    s += out[0];
  }
  return s;
}

template <typename F>
static double best_of(int reps, F f) {
  double best = 1e30;
  for (int r = 0; r < reps; ++r) {
    auto t0 = std::chrono::steady_clock::now();
    f();
    best = std::min(best, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  return best;
}

int main(int argc, char** argv) {
  const int threads = argc > 1 ? std::atoi(argv[1]) : 2;
  const size_t mib = argc > 2 ? std::strtoull(argv[2], nullptr, 10) : 1024;
  const size_t n = mib * 1024 * 1024 / sizeof(float);
  float* buf = static_cast<float*>(std::aligned_alloc(64, n * sizeof(float)));
  for (size_t i = 0; i < n; ++i) buf[i] = 1.0f;  // touch every page
  std::vector<float> sink(threads);
  auto run = [&](auto body) {
    std::vector<std::thread> ts;
    for (int t = 0; t < threads; ++t) ts.emplace_back([&, t] { body(t); });
    for (auto& t : ts) t.join();
  };
  double bw_s = best_of(5, [&] {
    run([&](int t) {
      const size_t per = n / threads / 32 * 32;
      sink[t] = sum_slice(buf + t * per, per);
    });
  });
  const long iters = 20000000;
  double fma_s = best_of(5, [&] { run([&](int t) { sink[t] = fma_chains(iters); }); });
  const double bytes = static_cast<double>(n / threads / 32 * 32) * threads * sizeof(float);
  const double flops = 2.0 * 8 * 10 * iters * threads;
  std::printf("{\"threads\": %d, \"buffer_mib\": %zu, \"read_bandwidth_gb_s\": %.2f, \"fma_gflop_s\": %.1f, \"check\": %g}\n",
              threads, mib, bytes / bw_s / 1e9, flops / fma_s / 1e9, static_cast<double>(sink[0]));
  std::free(buf);
  return 0;
}
