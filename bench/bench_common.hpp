// Shared pieces of curvkit's Google Benchmark binaries (bench/<family>_bench.cpp):
//   * host buffers, cache eviction and batch sizing, so every case times DRAM, not a cache;
//   * the roofline benchmarks each binary runs next to its kernels
//       roofline/copy/bytes:<N>   streaming copy, GBps counts bytes read + bytes written
//       roofline/fma/<scalar>     one-thread FMA throughput, GFLOPS
//       roofline/cuda_copy/bytes:<N>  device-to-device copy (CUDA builds)
//     tools/bench_table.py divides the kernels' counters by these to get the floor fraction,
//     so ceilings and kernels come from the same run of the same binary;
//   * counters: GFLOPS and GBps (per second, computed by Google Benchmark from the real or
//     manual time), so floor/time = max(GFLOPS / peak, GBps / bandwidth);
//   * the main() body: Kokkos initialised (curvkit::ScopeGuard) before Google Benchmark and a
//     default --benchmark_min_time that a command-line flag overrides;
//   * CUDA helpers (device buffers, event timing, L2 flush) when CURVKIT_HAVE_CUDA.
#pragma once

#include <benchmark/benchmark.h>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <new>
#include <random>
#include <string>
#include <type_traits>
#include <vector>

#if defined(__AVX512F__) || defined(__FMA__)
#include <immintrin.h>
#endif

#include "curvkit/curvkit.hpp"

#if CURVKIT_HAVE_CUDA
#include <cuda_runtime.h>
#endif

namespace curvkit::bench {

// ---- sizes ---------------------------------------------------------------------------------

/// Bytes a CPU case moves at least (DESIGN.md §7, anchors-performance.md §8: >= 64 MB, twice
/// this machine's 32 MB L3).
inline constexpr double kHostMinBytes = 64e6;
/// Bytes a GPU case moves at least: well above the H100's 50 MB L2.
inline constexpr double kDeviceMinBytes = 512e6;

/// Smallest power of two >= x (x >= 1).
inline index_t pow2_at_least(double x) {
  index_t p = 1;
  while (static_cast<double>(p) < x) p *= 2;
  return p;
}

/// Batch so that batch * bytes_per_item >= min_bytes, rounded up to a power of two.
inline index_t batch_for_bytes(double bytes_per_item, double min_bytes = kHostMinBytes) {
  return pow2_at_least(min_bytes / bytes_per_item);
}

template <class T>
const char* scalar_name() {
  if constexpr (std::is_same_v<T, float>)
    return "float";
  else
    return "double";
}

// ---- host memory ---------------------------------------------------------------------------

/// 64-byte aligned, uninitialised host array (first touch happens when the case fills it).
template <class T>
class HostBuffer {
 public:
  HostBuffer() = default;
  explicit HostBuffer(std::size_t count) : count_(count) {
    if (count == 0) return;
    const std::size_t bytes = (count * sizeof(T) + 63) / 64 * 64;
    data_ = static_cast<T*>(std::aligned_alloc(64, bytes));
    if (data_ == nullptr) throw std::bad_alloc();
  }
  ~HostBuffer() { std::free(data_); }
  HostBuffer(HostBuffer&& o) noexcept : data_(o.data_), count_(o.count_) {
    o.data_ = nullptr;
    o.count_ = 0;
  }
  HostBuffer& operator=(HostBuffer&& o) noexcept {
    std::swap(data_, o.data_);
    std::swap(count_, o.count_);
    return *this;
  }
  HostBuffer(const HostBuffer&) = delete;
  HostBuffer& operator=(const HostBuffer&) = delete;

  T* data() const { return data_; }
  std::size_t size() const { return count_; }
  std::size_t bytes() const { return count_ * sizeof(T); }
  T& operator[](std::size_t i) const { return data_[i]; }
  void copy_from(const HostBuffer& src) {
    if (count_ != 0) std::memcpy(data_, src.data_, bytes());
  }

 private:
  T* data_ = nullptr;
  std::size_t count_ = 0;
};

/// Registers a CPU case timed in wall-clock milliseconds.
template <class F>
void add(const std::string& name, F f) {
  benchmark::RegisterBenchmark(name.c_str(), f)->Unit(benchmark::kMillisecond)->UseRealTime();
}

/// Registers a GPU case, which times itself (SetIterationTime from CUDA events).
template <class F>
void add_gpu(const std::string& name, F f) {
  benchmark::RegisterBenchmark(name.c_str(), f)->Unit(benchmark::kMillisecond)->UseManualTime();
}

/// Gaussian entries times `scale`, reproducible from `seed`.
template <class T>
void fill_gaussian(HostBuffer<T>& b, double scale, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> g;
  for (std::size_t i = 0; i < b.size(); ++i) b[i] = static_cast<T>(scale * g(rng));
}

/// Pushes the last case's data out of the CPU caches by streaming a buffer larger than the
/// L3 (32 MB here); called between iterations, outside the timed region.
inline void evict_host_caches() {
  static HostBuffer<std::uint64_t> flush = [] {
    HostBuffer<std::uint64_t> b((std::size_t{96} << 20) / sizeof(std::uint64_t));
    for (std::size_t i = 0; i < b.size(); ++i) b[i] = i;
    return b;
  }();
  std::uint64_t sum = 0;
  for (std::size_t i = 0; i < flush.size(); i += 8) sum += flush[i];  // one load per line
  benchmark::DoNotOptimize(sum);
}

/// The CPU timing loop of an in-place op: restore() (inputs back to pristine) and a cache
/// eviction outside the timed region, then call() timed.
template <class Restore, class Call>
void timed_loop(benchmark::State& st, Restore&& restore, Call&& call) {
  for (auto _ : st) {
    st.PauseTiming();
    restore();
    evict_host_caches();
    st.ResumeTiming();
    call();
  }
}

// ---- counters ------------------------------------------------------------------------------

/// GFLOPS and GBps counters for one iteration that performs `flops` and moves `bytes`.
inline void set_rate_counters(benchmark::State& st, double flops, double bytes) {
  st.counters["GFLOPS"] =
      benchmark::Counter(flops * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
  st.counters["GBps"] =
      benchmark::Counter(bytes * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
}

// ---- roofline: host ------------------------------------------------------------------------

/// Streaming copy of `bytes` (std::memcpy: glibc switches to non-temporal stores at this size,
/// so no read-for-ownership traffic, as for an in-place kernel).  GBps = 2 * bytes / time.
inline void roofline_copy(benchmark::State& st, std::size_t bytes) {
  HostBuffer<unsigned char> src(bytes), dst(bytes);
  std::memset(src.data(), 1, bytes);
  std::memset(dst.data(), 2, bytes);
  for (auto _ : st) {
    std::memcpy(dst.data(), src.data(), bytes);
    benchmark::ClobberMemory();
  }
  set_rate_counters(st, 0.0, 2.0 * static_cast<double>(bytes));
  st.counters.erase("GFLOPS");
}

namespace detail {
// Independent accumulators: enough to cover FMA latency x issue width on current x86 cores
// (Zen 4: 4 cycles x 2 pipes; Intel: 4 x 2).
inline constexpr int kFmaChains = 12;
inline constexpr long kFmaSteps = 1 << 16;

template <class T>
double fma_loop() {
#if defined(__AVX512F__)
  constexpr int lanes = 64 / sizeof(T);
  auto set1 = [](T x) {
    if constexpr (std::is_same_v<T, float>)
      return _mm512_set1_ps(x);
    else
      return _mm512_set1_pd(x);
  };
  using V = decltype(set1(T(0)));
  auto fma = [](V a, V b, V c) {
    if constexpr (std::is_same_v<T, float>)
      return _mm512_fmadd_ps(a, b, c);
    else
      return _mm512_fmadd_pd(a, b, c);
  };
  auto reduce = [](V v) {
    if constexpr (std::is_same_v<T, float>)
      return static_cast<double>(_mm512_reduce_add_ps(v));
    else
      return _mm512_reduce_add_pd(v);
  };
#elif defined(__FMA__)
  constexpr int lanes = 32 / sizeof(T);
  auto set1 = [](T x) {
    if constexpr (std::is_same_v<T, float>)
      return _mm256_set1_ps(x);
    else
      return _mm256_set1_pd(x);
  };
  using V = decltype(set1(T(0)));
  auto fma = [](V a, V b, V c) {
    if constexpr (std::is_same_v<T, float>)
      return _mm256_fmadd_ps(a, b, c);
    else
      return _mm256_fmadd_pd(a, b, c);
  };
  auto reduce = [](V v) {
    alignas(32) T tmp[lanes];
    if constexpr (std::is_same_v<T, float>)
      _mm256_store_ps(tmp, v);
    else
      _mm256_store_pd(tmp, v);
    double s = 0;
    for (int i = 0; i < lanes; ++i) s += tmp[i];
    return s;
  };
#else
  constexpr int lanes = 1;  // scalar fallback: what a build without FMA/vector flags can reach
  auto set1 = [](T x) { return x; };
  using V = T;
  auto fma = [](V a, V b, V c) { return std::fma(a, b, c); };
  auto reduce = [](V v) { return static_cast<double>(v); };
#endif
  // acc = acc * m + c converges to c / (1 - m): no overflow, no denormals.
  V m = set1(T(0.999)), c = set1(T(0.001));
  V acc[kFmaChains];
  for (int k = 0; k < kFmaChains; ++k) acc[k] = set1(T(k));
  benchmark::DoNotOptimize(m);
  benchmark::DoNotOptimize(c);
  for (long s = 0; s < kFmaSteps; ++s) {
#pragma GCC unroll 12
    for (int k = 0; k < kFmaChains; ++k) acc[k] = fma(acc[k], m, c);
  }
  double sum = 0;
  for (int k = 0; k < kFmaChains; ++k) sum += reduce(acc[k]);
  benchmark::DoNotOptimize(sum);
  return 2.0 * kFmaChains * lanes * static_cast<double>(kFmaSteps);  // flops done
}
}  // namespace detail

/// Single-thread FMA throughput with the widest vectors the build flags allow.
template <class T>
void roofline_fma(benchmark::State& st) {
  double flops = 0;
  for (auto _ : st) flops = detail::fma_loop<T>();
  set_rate_counters(st, flops, 0.0);
  st.counters.erase("GBps");
}

// ---- CUDA ----------------------------------------------------------------------------------
#if CURVKIT_HAVE_CUDA

inline bool have_cuda_device() {
  int count = 0;
  return cudaGetDeviceCount(&count) == cudaSuccess && count > 0;
}

/// Device array; check ok() after construction (allocation can fail).
template <class T>
class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  explicit DeviceBuffer(std::size_t count) : count_(count) {
    if (count != 0 &&
        cudaMalloc(reinterpret_cast<void**>(&data_), count * sizeof(T)) != cudaSuccess) {
      data_ = nullptr;
      count_ = 0;
      ok_ = false;
    }
  }
  ~DeviceBuffer() {
    if (data_ != nullptr) cudaFree(data_);
  }
  DeviceBuffer(DeviceBuffer&& o) noexcept : data_(o.data_), count_(o.count_), ok_(o.ok_) {
    o.data_ = nullptr;
    o.count_ = 0;
  }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  bool ok() const { return ok_; }
  T* data() const { return data_; }
  std::size_t size() const { return count_; }
  std::size_t bytes() const { return count_ * sizeof(T); }

 private:
  T* data_ = nullptr;
  std::size_t count_ = 0;
  bool ok_ = true;
};

/// Stream + start/stop events for manual timing of one iteration.
class CudaTimer {
 public:
  CudaTimer() {
    ok_ = cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking) == cudaSuccess &&
          cudaEventCreate(&start_) == cudaSuccess && cudaEventCreate(&stop_) == cudaSuccess;
  }
  ~CudaTimer() {
    if (start_) cudaEventDestroy(start_);
    if (stop_) cudaEventDestroy(stop_);
    if (stream_) cudaStreamDestroy(stream_);
  }
  CudaTimer(const CudaTimer&) = delete;
  CudaTimer& operator=(const CudaTimer&) = delete;
  bool ok() const { return ok_; }
  cudaStream_t stream() const { return stream_; }
  void start() { cudaEventRecord(start_, stream_); }
  /// Records the stop event, waits for it, returns seconds between start and stop (< 0 on error).
  double stop() {
    float ms = 0;
    if (cudaEventRecord(stop_, stream_) != cudaSuccess ||
        cudaEventSynchronize(stop_) != cudaSuccess ||
        cudaEventElapsedTime(&ms, start_, stop_) != cudaSuccess)
      return -1.0;
    return ms * 1e-3;
  }

 private:
  cudaStream_t stream_ = nullptr;
  cudaEvent_t start_ = nullptr, stop_ = nullptr;
  bool ok_ = false;
};

/// Overwrites a buffer larger than the GPU's L2 (H100: 50 MB) on `stream`, so the next timed
/// region starts from cold L2; enqueue outside the timed events.
inline cudaError_t flush_device_l2(cudaStream_t stream) {
  static void* scratch = nullptr;
  constexpr std::size_t bytes = std::size_t{256} << 20;
  if (scratch == nullptr) {
    if (cudaError_t e = cudaMalloc(&scratch, bytes); e != cudaSuccess) {
      scratch = nullptr;
      return e;
    }
  }
  return cudaMemsetAsync(scratch, 0, bytes, stream);
}

/// Device-to-device copy roofline.  GBps = 2 * bytes / time.
inline void roofline_cuda_copy(benchmark::State& st, std::size_t bytes) {
  if (!have_cuda_device()) {
    st.SkipWithError("no CUDA device");
    return;
  }
  DeviceBuffer<unsigned char> src(bytes), dst(bytes);
  CudaTimer timer;
  if (!src.ok() || !dst.ok() || !timer.ok()) {
    st.SkipWithError("cudaMalloc / stream creation failed");
    return;
  }
  cudaMemsetAsync(src.data(), 1, bytes, timer.stream());
  for (auto _ : st) {
    timer.start();
    cudaMemcpyAsync(dst.data(), src.data(), bytes, cudaMemcpyDeviceToDevice, timer.stream());
    const double s = timer.stop();
    if (s < 0) {
      st.SkipWithError("CUDA error in the copy");
      break;
    }
    st.SetIterationTime(s);
  }
  set_rate_counters(st, 0.0, 2.0 * static_cast<double>(bytes));
  st.counters.erase("GFLOPS");
}
#endif  // CURVKIT_HAVE_CUDA

/// Registers the roofline benchmarks; call once from each bench binary's main().
inline void register_roofline() {
  constexpr std::size_t copy_bytes = std::size_t{256} << 20;
  benchmark::RegisterBenchmark(("roofline/copy/bytes:" + std::to_string(copy_bytes)).c_str(),
                               [](benchmark::State& st) { roofline_copy(st, copy_bytes); })
      ->Unit(benchmark::kMillisecond)
      ->UseRealTime();
  benchmark::RegisterBenchmark("roofline/fma/float", roofline_fma<float>)
      ->Unit(benchmark::kMillisecond)
      ->UseRealTime();
  benchmark::RegisterBenchmark("roofline/fma/double", roofline_fma<double>)
      ->Unit(benchmark::kMillisecond)
      ->UseRealTime();
#if CURVKIT_HAVE_CUDA
  constexpr std::size_t dev_bytes = std::size_t{1} << 30;
  benchmark::RegisterBenchmark(("roofline/cuda_copy/bytes:" + std::to_string(dev_bytes)).c_str(),
                               [](benchmark::State& st) { roofline_cuda_copy(st, dev_bytes); })
      ->Unit(benchmark::kMillisecond)
      ->UseManualTime();
#endif
}

/// Body of every bench main(): Kokkos is initialised (ScopeGuard) before Google Benchmark
/// parses flags or runs anything; --benchmark_min_time defaults to `default_min_time` seconds
/// unless given on the command line (a per-benchmark MinTime() would override the flag).
template <class RegisterFn>
int run_main(int argc, char** argv, RegisterFn register_benchmarks, double default_min_time = 0.5) {
  curvkit::ScopeGuard guard;
  std::vector<char*> args(argv, argv + argc);
  std::string min_time = "--benchmark_min_time=" + std::to_string(default_min_time);
  bool has_min_time = false;
  for (int i = 1; i < argc; ++i)
    if (std::strncmp(argv[i], "--benchmark_min_time", 20) == 0) has_min_time = true;
  if (!has_min_time) args.insert(args.begin() + 1, min_time.data());
  int n = static_cast<int>(args.size());
  args.push_back(nullptr);
  register_roofline();
  register_benchmarks();
  benchmark::Initialize(&n, args.data());
  if (benchmark::ReportUnrecognizedArguments(n, args.data())) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}

}  // namespace curvkit::bench
