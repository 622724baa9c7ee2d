#include <filesystem>

#include "commands.h"
#include "rad/core/atomic_file.h"
#include "rad/core/log.h"
#include "rad/eval/suite.h"
#include "rad/parallel/process_group.h"

namespace rad::cli {

void register_eval(CLI::App& app) {
  auto* cmd = app.add_subcommand("eval", "Evaluate models side by side: retrieval tasks, perplexity, user tasks, cache memory");
  static std::vector<std::string> dirs;
  static std::string out, reference;
  static EvalOptions o;
  static std::string split = "test";
  cmd->add_option("MODEL_DIRS", dirs, "Model directories (teacher and/or hybrids); the first is the coverage reference")->required();
  cmd->add_option("--out", out, "Output directory for eval.json")->required();
  cmd->add_option("--reference", reference, "Model directory to compute coverage against (default: the first)");
  cmd->add_option("--kv-pairs", o.kv_pairs, "KV probe sizes, comma-separated (skipped where the context is too short)")->delimiter(',')->capture_default_str();
  cmd->add_option("--examples", o.examples, "Examples per retrieval task")->capture_default_str();
  cmd->add_option("--seed", o.seed, "Task seed")->capture_default_str();
  cmd->add_option("--split", split,
                  "Key pool of the retrieval tasks: test (default; disjoint from the keys `heads` selects on), "
                  "select, eval (both halves) or train")->capture_default_str();
  cmd->add_option("--mqar-pairs", o.mqar_pairs, "MQAR dictionary size")->capture_default_str();
  cmd->add_option("--mqar-queries", o.mqar_queries, "MQAR queries per dictionary")->capture_default_str();
  cmd->add_option("--needle-words", o.needle_words, "Needle-in-a-haystack filler lengths in words, comma-separated")->delimiter(',')->capture_default_str();
  cmd->add_option("--needle-depths", o.needle_depths, "Needle depths, comma-separated, 0 = start .. 1 = end")->delimiter(',')->capture_default_str();
  cmd->add_option("--multi-needle-words", o.multi_needle_words,
                  "Multi-needle filler lengths in words, comma-separated (--needles facts, one asked; default: none)")
      ->delimiter(',');
  cmd->add_option("--needles", o.needles, "Facts per multi-needle example")->capture_default_str();
  cmd->add_option("--phonebook-entries", o.phonebook_entries, "Phone-book size")->capture_default_str();
  cmd->add_option("--corpus", o.corpus, "Text file (perplexity on its last --heldout-fraction of lines) or a token "
                  "directory from `radistill tokenize-corpus` (its held-out split)");
  static CLI::Option* heldout = cmd->add_option("--heldout-fraction", o.heldout_fraction,
                                                "Held-out fraction of corpus lines")->capture_default_str();
  cmd->add_option("--ppl-seq", o.ppl_seq, "Tokens per held-out perplexity window")->capture_default_str()->check(
      CLI::PositiveNumber);
  cmd->add_option("--ppl-windows", o.ppl_windows, "Held-out perplexity windows at most")->capture_default_str()->check(
      CLI::PositiveNumber);
  cmd->add_option("--user-tasks", o.user_tasks, "JSONL of multiple-choice and generation tasks");
  cmd->add_option("--batch", o.batch, "Examples per forward pass")->capture_default_str();
  cmd->add_option("--kv-dtype-bytes", o.kv_dtype_bytes, "Bytes per KV element in the analytic cache figures")->capture_default_str();
  cmd->callback([] {
    o.key_split = tasks::parse_key_split(split);
    o.heldout_fraction_given = heldout->count() > 0;
    ensure_directory(out);
    // Under `radistill launch` the models are shared between the ranks (evaluate_models); rank 0 writes.
    static std::shared_ptr<parallel::ProcessGroup> group;
    parallel::run_data_parallel(group, [] {
      nlohmann::json result = evaluate_models(dirs, o, reference, group.get());
      if (group->is_main()) {
        std::string path = (std::filesystem::path(out) / "eval.json").string();
        write_text_atomic(path, result.dump(2) + "\n");
        for (const auto& m : result["models"])
          log_info("{}: retrieval coverage {}, perplexity {}", m["name"].get<std::string>(),
                   m["coverage_retrieval"].is_null() ? "n/a" : fmt::format("{:.3f}", m["coverage_retrieval"].get<double>()),
                   m.contains("perplexity") ? fmt::format("{:.2f}", m["perplexity"].get<double>()) : "n/a");
        log_info("wrote {}", path);
      }
      // No rank reports success before eval.json is written.
      group->barrier("the final barrier (rank 0 writes eval.json)");
    });
  });
}

}  // namespace rad::cli
