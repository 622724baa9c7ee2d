// The global --device: parsing, the errors a CPU-only libtorch gives, and that cpu changes nothing.
#include <ATen/ATen.h>
#include <torch/cuda.h>

#include <nlohmann/json.hpp>

#include <map>
#include <string>

#include "rad/core/device.h"
#include "rad/core/error.h"
#include "test_util.h"

namespace rad::test {
namespace {

std::string error_of(const std::string& spec, const std::map<std::string, std::string>& env = {}) {
  try {
    parse_device(spec, [&](const char* name) -> const char* {
      auto it = env.find(name);
      return it == env.end() ? nullptr : it->second.c_str();
    });
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(Device, CpuIsTheDefaultAndMovesNothing) {
  EXPECT_TRUE(compute_device().is_cpu());
  EXPECT_EQ(parse_device("cpu"), at::Device(at::kCPU));
  at::Tensor t = at::ones({3});
  EXPECT_TRUE(to_compute_device(t).is_same(t));
}

TEST(Device, MalformedSpecsNameTheFlagAndWhatIsExpected) {
  for (const std::string bad : {"gpu", "", "CPU", "cuda0", "cuda:", "cuda:-1", "cuda:x", "cuda:99999"}) {
    const std::string e = error_of(bad);
    EXPECT_NE(e.find("--device"), std::string::npos) << bad << ": " << e;
    EXPECT_TRUE(e.find("expected cpu, cuda or cuda:N") != std::string::npos ||
                e.find("expected cuda:N with N a GPU index") != std::string::npos)
        << bad << ": " << e;
  }
  // A bare cuda under a launcher takes LOCAL_RANK, which must then be an index.
  EXPECT_NE(error_of("cuda", {{"LOCAL_RANK", "two"}}).find("LOCAL_RANK must be a non-negative integer"),
            std::string::npos);
}

TEST(Device, CudaNeedsACudaLibtorchAndAVisibleGpu) {
  if (!libtorch_has_cuda()) {  // Debian's libtorch: every cuda spec is refused, saying how to rebuild
    for (const std::string spec : {"cuda", "cuda:0", "cuda:3"}) {
      const std::string e = error_of(spec);
      EXPECT_NE(e.find("without CUDA"), std::string::npos) << e;
      EXPECT_NE(e.find("-DRAD_CUDA=ON"), std::string::npos) << e;
    }
    return;
  }
  const int n = static_cast<int>(torch::cuda::device_count());
  if (n == 0) {
    EXPECT_NE(error_of("cuda").find("sees no GPU"), std::string::npos);
    return;
  }
  EXPECT_EQ(parse_device("cuda"), at::Device(at::kCUDA, 0));
  EXPECT_EQ(parse_device("cuda", [n](const char* name) -> const char* {
              static const std::string last = std::to_string(n - 1);
              return std::string(name) == "LOCAL_RANK" ? last.c_str() : nullptr;
            }),
            at::Device(at::kCUDA, static_cast<c10::DeviceIndex>(n - 1)));
  EXPECT_NE(error_of("cuda:" + std::to_string(n)).find("is not visible"), std::string::npos);
}

TEST(Device, CliTakesDeviceBeforeTheSubcommand) {
  const std::string model = fixture_model("llama_gqa");
  CliResult plain = run_cli("forward " + model + " --token-ids 1,5,9");
  CliResult cpu = run_cli("--device cpu forward " + model + " --token-ids 1,5,9");
  ASSERT_EQ(plain.exit_code, 0) << plain.err;
  ASSERT_EQ(cpu.exit_code, 0) << cpu.err;
  EXPECT_EQ(nlohmann::json::parse(plain.out)["top5"], nlohmann::json::parse(cpu.out)["top5"]);
  CliResult bad = run_cli("--device tpu forward " + model + " --token-ids 1,5,9");
  EXPECT_EQ(bad.exit_code, 1);
  EXPECT_NE(bad.err.find("--device: expected cpu, cuda or cuda:N"), std::string::npos) << bad.err;
  if (!libtorch_has_cuda()) {
    CliResult cuda = run_cli("--device cuda forward " + model + " --token-ids 1,5,9");
    EXPECT_EQ(cuda.exit_code, 1);
    EXPECT_NE(cuda.err.find("--device cuda: this radistill runs on a libtorch without CUDA"), std::string::npos)
        << cuda.err;
  }
}

}  // namespace
}  // namespace rad::test
