#include "rad/distill/teacher_cache.h"

#include <filesystem>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "rad/core/atomic_file.h"
#include "rad/core/error.h"
#include "rad/core/fnv1a.h"
#include "rad/heads/model_hash.h"
#include "rad/io/npy.h"

namespace rad {
namespace fs = std::filesystem;

std::string tensor_content_hash(const at::Tensor& t) {
  at::Tensor c = t.detach().to(at::kCPU).contiguous();
  Fnv1a f;
  f.add(fmt::format("{} {}", c10::toString(c.scalar_type()), c10::str(c.sizes())));
  f.add(c.data_ptr(), c.numel() * c.element_size());
  return fmt::format("fnv1a64:{:016x}", f.h);
}

TeacherHiddenCache::TeacherHiddenCache(const std::string& dir, CausalLM& teacher) : dir_(dir) {
  if (dir_.empty()) return;
  ensure_directory(dir_);
  const std::string meta = (fs::path(dir_) / "teacher.json").string();
  const std::string mine = model_hash(teacher);
  if (fs::exists(meta)) {
    nlohmann::json j = nlohmann::json::parse(read_text_file(meta), nullptr, false);
    RAD_CHECK(!j.is_discarded() && j.is_object() && j.contains("teacher_model_hash"),
              "{}: not a teacher cache's teacher.json (expected JSON with \"teacher_model_hash\")", meta);
    const std::string theirs = j["teacher_model_hash"].get<std::string>();
    RAD_CHECK(theirs == mine,
              "{}: the teacher cache holds the states of a teacher with weights hash {}, not this teacher ({}); "
              "use another --teacher-cache or remove {}",
              meta, theirs, mine, dir_);
  } else {
    write_text_atomic(meta, nlohmann::json({{"teacher_model_hash", mine}}).dump(2) + "\n");
  }
}

at::Tensor TeacherHiddenCache::logits(CausalLM& teacher, const at::Tensor& input) {
  at::NoGradGuard no_grad;
  if (dir_.empty()) return teacher->forward(input);
  const std::string key = tensor_content_hash(input);
  const std::string path =
      (fs::path(dir_) / fmt::format("{}-{}x{}.npy", key.substr(key.find(':') + 1), input.size(0), input.size(1)))
          .string();
  at::Tensor hidden;
  if (fs::exists(path)) {
    hidden = io::load_npy(path);
    const int64_t d = teacher->config().d_model;
    RAD_CHECK(hidden.scalar_type() == at::kFloat && hidden.dim() == 3 && hidden.size(0) == input.size(0) &&
                  hidden.size(1) == input.size(1) && hidden.size(2) == d,
              "{}: a cached teacher state of shape {} and dtype {}, expected float32 [{}, {}, {}]; remove the file",
              path, c10::str(hidden.sizes()), c10::toString(hidden.scalar_type()), input.size(0), input.size(1), d);
    hidden = hidden.to(input.device());
    ++hits_;
  } else {
    hidden = teacher->run_layers(teacher->embed(input), 0, teacher->config().n_layer);
    RAD_CHECK(hidden.scalar_type() == at::kFloat, "teacher cache: the teacher's hidden states are {}, only float32 "
              "states are cached (no --teacher-cache with bf16)", c10::toString(hidden.scalar_type()));
    io::save_npy(path, hidden);
    ++misses_;
  }
  return teacher->final_logits(hidden);
}

}  // namespace rad
