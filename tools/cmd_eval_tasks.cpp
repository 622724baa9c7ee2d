#include "commands.h"
#include "rad/core/device.h"
#include "rad/core/error.h"
#include "rad/core/log.h"
#include "rad/io/checkpoint.h"
#include "rad/tasks/scorer.h"
#include "text_codec.h"

namespace rad::cli {

void register_eval_tasks(CLI::App& app) {
  auto* cmd = app.add_subcommand("eval-tasks", "Score a model on a synthetic retrieval task; prints JSON");
  static std::string dir, task = "kv", dtype = "float32", split = "eval", key_file;
  static tasks::TaskOptions o;
  static int64_t examples = 500, batch = 16;
  static uint64_t seed = 0;
  cmd->add_option("MODEL_DIR", dir, "Model directory (with tokenizer.json)")->required();
  cmd->add_option("--task", task, "kv | mqar | needle | multineedle | phonebook | copy")->capture_default_str();
  cmd->add_option("--pairs", o.pairs, "Dictionary size (kv, mqar) or phone-book entries")->capture_default_str();
  cmd->add_option("--queries", o.queries, "Queries per dictionary (mqar)")->capture_default_str();
  cmd->add_option("--context-words", o.context_words, "Filler length in words (needle, multineedle)")->capture_default_str();
  cmd->add_option("--needles", o.needles, "Facts hidden in the filler, one asked (multineedle)")->capture_default_str();
  cmd->add_option("--depth", o.depth, "Needle position, 0 = start .. 1 = end")->capture_default_str();
  cmd->add_option("--span-words", o.span_words, "Words to copy (copy)")->capture_default_str();
  cmd->add_option("--examples", examples, "Number of examples")->capture_default_str();
  cmd->add_option("--seed", seed, "Generator seed")->capture_default_str();
  cmd->add_option("--split", split,
                  "Key pool: eval (held out from training; its halves: select, test) or train")->capture_default_str();
  cmd->add_option("--key-file", key_file,
                  "Draw keys from this file instead (one word per line, e.g. other single-token corpus words)");
  cmd->add_option("--batch", batch, "Examples per forward pass")->capture_default_str();
  cmd->add_option("--dtype", dtype, "float32 or bfloat16")->capture_default_str();
  cmd->callback([] {
    o.split = tasks::parse_key_split(split);
    if (!key_file.empty()) o.custom_keys = tasks::load_key_file(key_file);
    TextCodec codec = load_text_codec(dir);
    CausalLM model = io::load_causal_lm(dir, io::parse_dtype(dtype));
    to_compute_device(*model);
    std::vector<tasks::EncodedExample> encoded;
    for (const auto& ex : tasks::make_examples(task, o, examples, seed))
      encoded.push_back(tasks::encode_example(ex, codec.encode, codec.bos));
    tasks::Accuracy a = tasks::score(model, encoded, batch);
    nlohmann::json out = {{"model", dir},       {"task", task},          {"examples", examples},
                          {"answers", a.total}, {"correct", a.correct},  {"accuracy", a.value()},
                          {"ci95", {a.low(), a.high()}},                 {"seed", seed},
                          {"max_tokens", tasks::max_length(encoded)},    {"split", key_file.empty() ? split : "file:" + key_file}};
    if (task == "kv" || task == "mqar" || task == "phonebook") out["pairs"] = o.pairs;
    if (task == "mqar") out["queries"] = o.queries;
    if (task == "needle") {
      out["context_words"] = o.context_words;
      out["depth"] = o.depth;
    }
    if (task == "multineedle") {
      out["context_words"] = o.context_words;
      out["needles"] = o.needles;
    }
    if (task == "copy") out["span_words"] = o.span_words;
    std::printf("%s\n", out.dump(2).c_str());
  });
}

}  // namespace rad::cli
