#include <ATen/ATen.h>

#include <chrono>
#include <sstream>

#include "commands.h"
#include "rad/core/device.h"
#include "rad/core/error.h"
#include "rad/core/log.h"
#include "rad/io/checkpoint.h"
#include "rad/io/npy.h"

namespace rad::cli {

std::vector<std::string> split_comma_list(const std::string& text) {
  std::vector<std::string> out;
  std::stringstream in(text);
  std::string item;
  while (std::getline(in, item, ','))
    if (!item.empty()) out.push_back(item);
  return out;
}

std::vector<int64_t> parse_token_ids(const std::string& text) {
  std::vector<int64_t> ids;
  size_t start = 0;
  while (start <= text.size()) {
    size_t end = text.find(',', start);
    if (end == std::string::npos) end = text.size();
    std::string item = text.substr(start, end - start);
    while (!item.empty() && item.front() == ' ') item.erase(item.begin());
    while (!item.empty() && item.back() == ' ') item.pop_back();
    RAD_CHECK(!item.empty() && item.find_first_not_of("0123456789") == std::string::npos && item.size() < 19,
              "--token-ids: \"{}\" is not a non-negative integer (expected e.g. 1,5,9)", item);
    ids.push_back(std::stoll(item));
    start = end + 1;
  }
  return ids;
}

void register_forward(CLI::App& app) {
  auto* cmd = app.add_subcommand("forward", "Full forward pass; print the top-5 next tokens as JSON");
  static std::string dir, ids_text, text, dump, dtype = "float32", weights_dtype;
  static bool no_special = false;
  cmd->add_option("MODEL_DIR", dir, "Hugging Face model directory")->required();
  auto* ids_opt = cmd->add_option("--token-ids", ids_text, "Comma-separated input token ids, e.g. 1,5,9");
  auto* text_opt = cmd->add_option("--text", text, "Input text, tokenized with MODEL_DIR's tokenizer (BOS as its post-processor says)");
  add_no_special_tokens_flag(cmd, no_special);
  ids_opt->excludes(text_opt);
  cmd->add_option("--dump-logits", dump, "Write float32 logits of every position, shape [T, n_vocab], to this .npy");
  cmd->add_option("--dtype", dtype, "Compute dtype: float32 or bfloat16")->capture_default_str();
  cmd->add_option("--weights-dtype", weights_dtype,
                  "Dtype the weights are held in, when not --dtype: auto (as stored, memory-mapped), float32 or "
                  "bfloat16; converted to --dtype one layer at a time");
  cmd->callback([ids_opt, text_opt] {
    std::vector<int64_t> ids = prompt_ids(dir, ids_text, ids_opt, text, text_opt, !no_special);
    const at::ScalarType compute = io::parse_dtype(dtype);
    CausalLM model =
        io::load_causal_lm(dir, weights_dtype.empty() ? compute : io::resolve_weights_dtype(weights_dtype, dir));
    if (!weights_dtype.empty()) model->set_compute_dtype(compute);
    to_compute_device(*model);
    at::NoGradGuard no_grad;
    auto t0 = std::chrono::steady_clock::now();
    at::Tensor logits = model->forward(at::tensor(ids, at::kLong).unsqueeze(0)).squeeze(0).to(at::kFloat);  // [T, V]
    log_info("forward of {} tokens, weights {}, compute {}: {:.1f} ms", ids.size(), io::dtype_name(model->dtype()),
             io::dtype_name(model->compute_dtype()),
             std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
    if (!dump.empty()) io::save_npy(dump, logits);
    at::Tensor last = logits[logits.size(0) - 1];
    at::Tensor probs = at::softmax(last, -1);
    auto top = last.topk(std::min<int64_t>(5, last.size(0)));
    nlohmann::json out = {{"tokens", ids.size()}, {"top5", nlohmann::json::array()}};
    for (int64_t i = 0; i < std::get<1>(top).size(0); ++i) {
      int64_t id = std::get<1>(top)[i].item<int64_t>();
      out["top5"].push_back({{"id", id}, {"logit", std::get<0>(top)[i].item<double>()},
                             {"prob", probs[id].item<double>()}});
    }
    std::printf("%s\n", out.dump(2).c_str());
  });
}

}  // namespace rad::cli
