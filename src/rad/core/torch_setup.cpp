#include "rad/core/torch_setup.h"

#include <fstream>
#include <string>

#include <ATen/Parallel.h>
#include <ATen/Version.h>
#include <dlfcn.h>
#include <sched.h>
#include <torch/version.h>

#include <cstdlib>
#include <sstream>
#include <string>

#include "rad/core/log.h"

namespace rad {
namespace {

// OpenBLAS and tcmalloc are found at run time with dlsym: libtorch loads whatever libblas.so.3
// the Debian alternatives point at, and tcmalloc is linked into the executables only.
using OpenblasGetConfig = char* (*)();
using OpenblasGetInt = int (*)();
using OpenblasSetInt = void (*)(int);
using TcVersion = const char* (*)(int*, int*, const char**);

template <typename Fn>
Fn find_symbol(const char* name) {
  return reinterpret_cast<Fn>(::dlsym(RTLD_DEFAULT, name));
}

std::string blas_backend() {
  if (auto get_config = find_symbol<OpenblasGetConfig>("openblas_get_config")) {
    std::string config = get_config();
    auto get_parallel = find_symbol<OpenblasGetInt>("openblas_get_parallel");
    if (get_parallel) {
      int mode = get_parallel();
      config += mode == 2 ? " (openmp threads)" : mode == 1 ? " (pthreads)" : " (single-threaded)";
    }
    return "OpenBLAS " + config;
  }
  return "unknown (not OpenBLAS: expect slow matrix products; run scripts/setup.sh)";
}

std::string allocator_name() {
  if (auto tc_version = find_symbol<TcVersion>("tc_version")) {
    int major = 0, minor = 0;
    const char* patch = nullptr;
    const char* text = tc_version(&major, &minor, &patch);
    return text ? std::string(text) : "tcmalloc";
  }
  return "glibc malloc (tcmalloc not loaded: expect slow training)";
}

std::string cpu_capability() {
  // at::show_config() carries a line "CPU capability usage: AVX2" in 1.13.
  std::istringstream config(at::show_config());
  std::string line;
  while (std::getline(config, line)) {
    auto pos = line.find("CPU capability usage:");
    if (pos != std::string::npos) {
      std::string value = line.substr(pos + 21);
      while (!value.empty() && value.front() == ' ') value.erase(value.begin());
      return value;
    }
  }
  return "unknown";
}

}  // namespace

int available_cores() {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (::sched_getaffinity(0, sizeof(set), &set) == 0) {
    int n = CPU_COUNT(&set);
    if (n > 0) return n;
  }
  return 1;
}

void configure_torch(int threads, bool warn) {
  if (threads <= 0) threads = available_cores();
  at::set_num_threads(threads);
  if (auto set_blas = find_symbol<OpenblasSetInt>("openblas_set_num_threads")) set_blas(threads);
  if (warn) {
    if (!find_symbol<OpenblasGetConfig>("openblas_get_config"))
      log_warn("libtorch is not using OpenBLAS; matrix products will be slow (run scripts/setup.sh)");
    if (!find_symbol<TcVersion>("tc_version"))
      log_warn("tcmalloc is not loaded; large-tensor work will be slow");
  }
}

nlohmann::json runtime_environment() {
  nlohmann::json env;
  env["libtorch_version"] = TORCH_VERSION;
  env["blas"] = blas_backend();
  auto get_blas_threads = find_symbol<OpenblasGetInt>("openblas_get_num_threads");
  env["blas_threads"] = get_blas_threads ? get_blas_threads() : -1;
  env["torch_threads"] = at::get_num_threads();
  env["torch_interop_threads"] = at::get_num_interop_threads();
  env["cores_available"] = available_cores();
  env["allocator"] = allocator_name();
  env["cpu_capability"] = cpu_capability();
  env["native_bf16"] = cpu_has_native_bf16();
  const char* coretype = std::getenv("OPENBLAS_CORETYPE");
  env["openblas_coretype"] = coretype ? nlohmann::json(coretype) : nlohmann::json(nullptr);
  return env;
}

bool cpu_has_native_bf16() {
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("flags", 0) != 0) continue;
    return line.find(" avx512_bf16") != std::string::npos || line.find(" amx_bf16") != std::string::npos;
  }
  return false;
}

}  // namespace rad
