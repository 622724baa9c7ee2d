#include "rad/eval/suite.h"

#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <map>
#include <optional>

#include "rad/core/atomic_file.h"
#include "rad/core/device.h"
#include "rad/core/error.h"
#include "rad/core/log.h"
#include "rad/core/progress.h"
#include "rad/eval/memory.h"
#include "rad/eval/user_tasks.h"
#include "rad/io/checkpoint.h"
#include "rad/io/hf_config.h"
#include "rad/io/hybrid_checkpoint.h"
#include "rad/parallel/process_group.h"
#include "rad/runtime/engine.h"
#include "rad/tasks/scorer.h"
#include "rad/tokenizer/tokenizer.h"
#include "rad/train/data.h"
#include "rad/train/loop.h"
#include "rad/train/token_shards.h"

namespace rad {
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

struct Codec {
  tasks::Encoder encode;
  Decoder decode;
  std::optional<int64_t> bos;
};

Codec load_codec(const std::string& dir) {
  RAD_CHECK(fs::exists(fs::path(dir) / "tokenizer.json"), "{}: no tokenizer.json (eval needs the model's tokenizer)", dir);
  Tokenizer tok = Tokenizer::load(dir);
  Codec c;
  c.encode = [tok](const std::string& s) { return tok.encode(s, false); };
  c.decode = [tok](const std::vector<int64_t>& ids) { return tok.decode(ids, true); };
  c.bos = tasks::leading_bos(tok);
  return c;
}

int64_t peak_rss_bytes() {
  struct rusage u {};
  ::getrusage(RUSAGE_SELF, &u);
  return static_cast<int64_t>(u.ru_maxrss) * 1024;
}

// One retrieval task: accuracy with a 95% interval, or a skip reason when it does not fit.
json run_task(CausalLM& model, const Codec& codec, const std::string& task, tasks::TaskOptions o,
              const EvalOptions& opt) {
  o.split = opt.key_split;
  std::vector<tasks::EncodedExample> ex;
  for (const auto& e : tasks::make_examples(task, o, opt.examples, opt.seed))
    ex.push_back(tasks::encode_example(e, codec.encode, codec.bos));
  int64_t longest = tasks::max_length(ex);
  if (longest > model->config().max_position_embeddings)
    return {{"skipped", fmt::format("needs {} tokens, context is {}", longest, model->config().max_position_embeddings)}};
  tasks::Accuracy a = tasks::score(model, ex, opt.batch);
  return {{"accuracy", a.value()}, {"ci95", {a.low(), a.high()}}, {"answers", a.total}, {"max_tokens", longest}};
}

// Decode speed on the libtorch-free engine (src/rad/runtime), the way the model is served: a
// prefill of `decode_prompt` tokens, then `decode_tokens` single-token steps, greedy.
json runtime_decode(const std::string& dir, const EvalOptions& opt) {
  auto model = runtime::Model::load(dir);
  const ModelConfig& config = model->config();
  const int64_t prompt = std::min<int64_t>(opt.decode_prompt, config.max_position_embeddings / 2);
  const int64_t steps = std::min<int64_t>(opt.decode_tokens, config.max_position_embeddings - prompt - 1);
  if (prompt < 1 || steps < 1) return {{"skipped", "context too short"}};
  runtime::Session session(model, {prompt + steps + 1, 64, 0});
  std::vector<int64_t> ids(prompt);
  for (int64_t i = 0; i < prompt; ++i) ids[i] = (i * 7919 + 13) % config.n_vocab;
  const float* logits = session.forward(ids.data(), prompt);
  auto t0 = std::chrono::steady_clock::now();
  for (int64_t i = 0; i < steps; ++i) {
    int64_t next = std::max_element(logits, logits + config.n_vocab) - logits;
    logits = session.step(next);
  }
  double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return {{"engine", "runtime"}, {"prompt_tokens", prompt}, {"generated_tokens", steps},
          {"tokens_per_s", steps / std::max(s, 1e-9)}, {"threads", session.threads()},
          {"cache_bytes_used", session.cache_bytes().used()}};
}

}  // namespace

double retrieval_chance(const std::string& task) {
  // Guessing one of the listed values of a kv/mqar dictionary ("kv_50", "mqar_20x8"); a two-digit
  // number for the needle; a phone number is never guessed.
  auto number_after = [&](size_t at) { return std::stod(task.substr(at)); };
  if (task.rfind("kv_", 0) == 0) return 1.0 / number_after(3);
  if (task.rfind("mqar_", 0) == 0) return 1.0 / number_after(5);
  if (task.rfind("needle", 0) == 0) return 0.01;
  // "multineedle_4x500w": a model that keeps only the last secret number it read answers 1 in 4.
  if (task.rfind("multineedle_", 0) == 0) return 1.0 / number_after(12);
  return 0.0;
}

json evaluate_models(const std::vector<std::string>& dirs, const EvalOptions& opt, const std::string& reference,
                     parallel::ProcessGroup* group) {
  RAD_CHECK(!dirs.empty(), "eval: no models given");
  std::vector<UserTask> user;
  if (!opt.user_tasks.empty()) user = load_user_tasks(opt.user_tasks);
  const bool corpus_tokens = !opt.corpus.empty() && corpus_is_token_dir(opt.corpus);
  std::string corpus_text = opt.corpus.empty() || corpus_tokens ? "" : read_text_file(opt.corpus);
  json models = json::array();
  // Task list, in report order.
  std::vector<std::pair<std::string, std::pair<std::string, tasks::TaskOptions>>> task_list;
  for (int64_t p : opt.kv_pairs) {
    tasks::TaskOptions o;
    o.pairs = p;
    task_list.push_back({fmt::format("kv_{}", p), {"kv", o}});
  }
  {
    tasks::TaskOptions o;
    o.pairs = opt.mqar_pairs;
    o.queries = opt.mqar_queries;
    task_list.push_back({fmt::format("mqar_{}x{}", opt.mqar_pairs, opt.mqar_queries), {"mqar", o}});
  }
  for (int64_t w : opt.needle_words)
    for (double d : opt.needle_depths) {
      tasks::TaskOptions o;
      o.context_words = w;
      o.depth = d;
      task_list.push_back({fmt::format("needle_{}w_d{:.2f}", w, d), {"needle", o}});
    }
  for (int64_t w : opt.multi_needle_words) {
    tasks::TaskOptions o;
    o.context_words = w;
    o.needles = opt.needles;
    task_list.push_back({fmt::format("multineedle_{}x{}w", opt.needles, w), {"multineedle", o}});
  }
  {
    tasks::TaskOptions o;
    o.pairs = opt.phonebook_entries;
    task_list.push_back({fmt::format("phonebook_{}", opt.phonebook_entries), {"phonebook", o}});
  }
  const bool dp = group != nullptr && group->distributed();
  const int rank = dp ? group->rank() : 0, world = dp ? group->world_size() : 1;
  const bool main_rank = rank == 0;
  int64_t mine = 0;
  for (size_t i = static_cast<size_t>(rank); i < dirs.size(); i += static_cast<size_t>(world)) ++mine;
  std::optional<Progress> progress;
  if (main_rank)
    progress.emplace(dp ? "eval (rank 0's share)" : "eval", mine * static_cast<int64_t>(task_list.size() + 2), "steps");
  int64_t done = 0;
  auto tick = [&](const std::string& what) {
    if (progress) progress->update(++done, what);
  };
  // Everything but the decode timing, for one model directory.
  auto evaluate_one = [&](const std::string& dir) {
    Codec codec = load_codec(dir);
    // Weights held as stored (a bf16 teacher stays memory-mapped, no float32 copy), computed in
    // float32 one layer at a time: the same numbers as a float32 copy (bf16 -> float32 is exact).
    const at::ScalarType held = io::resolve_weights_dtype("auto", dir);
    std::optional<io::HybridModel> hybrid;
    if (io::is_hybrid_dir(dir)) hybrid = io::load_hybrid(dir, held);
    CausalLM model = hybrid ? hybrid->model : io::load_causal_lm(dir, held);
    model->set_compute_dtype(at::kFloat);
    to_compute_device(*model);
    json m = {{"name", fs::path(dir).filename().string()}, {"dir", dir}, {"parameters", model->parameter_count()}};
    CacheCost cost, cost_fp32;
    if (hybrid) {
      const io::HybridModel& h = *hybrid;
      cost = hybrid_cache_cost(h.config, opt.kv_dtype_bytes);
      cost_fp32 = hybrid_cache_cost(h.config, 4);
      m["heads_kept"] = h.config.plan.size();
      m["d_state"] = h.config.ssm.d_state;
      m["hybrid"] = true;
    } else {
      cost = teacher_cache_cost(model->config(), opt.kv_dtype_bytes);
      cost_fp32 = teacher_cache_cost(model->config(), 4);
      m["heads_kept"] = model->config().n_query_heads_total();
      m["d_state"] = nullptr;
      m["hybrid"] = false;
    }
    json tasks_json = json::object();
    for (const auto& [name, spec] : task_list) {
      tasks_json[name] = run_task(model, codec, spec.first, spec.second, opt);
      tick(name);
    }
    m["tasks"] = tasks_json;
    if (corpus_tokens || !corpus_text.empty()) {
      // A token directory is memory-mapped and checked against this model's tokenizer.
      TokenCorpus corpus = corpus_tokens ? load_corpus(opt.corpus, dir, codec.encode, model->config().n_vocab,
                                                       opt.heldout_fraction, opt.heldout_fraction_given)
                                         : TokenCorpus::from_text(corpus_text, codec.encode, opt.heldout_fraction);
      m["perplexity"] = perplexity(model, heldout_windows(corpus.heldout, opt.ppl_seq, opt.ppl_windows, codec.bos), 8);
    }
    tick("perplexity");
    if (!user.empty()) {
      UserTaskScores us = score_user_tasks(model, user, codec.encode, codec.decode, codec.bos);
      if (us.multiple_choice.total > 0) m["user_multiple_choice"] = {{"accuracy", us.multiple_choice.value()}, {"items", us.multiple_choice.total}};
      if (us.generation.total > 0) m["user_generation"] = {{"accuracy", us.generation.value()}, {"items", us.generation.total}};
    }
    // Memory: analytic at every length; measured (bytes held by the decode cache, fp32 runtime)
    // after a prefill of L tokens plus one decode step, up to max_measured_length.
    json mem = {{"per_token_bytes", cost.per_token}, {"fixed_bytes", cost.fixed}, {"kv_dtype_bytes", opt.kv_dtype_bytes},
                {"analytic", json::object()}, {"analytic_fp32", json::object()}, {"measured_fp32", json::object()}};
    for (int64_t L : opt.lengths) {
      mem["analytic"][std::to_string(L)] = cost.bytes(L);
      mem["analytic_fp32"][std::to_string(L)] = cost_fp32.bytes(L);
      if (L <= opt.max_measured_length && L < model->config().max_position_embeddings) {
        at::NoGradGuard no_grad;
        DecodeCache cache = model->new_cache();
        at::Tensor ids = (at::arange(L, at::kLong) * 7919 + 13).remainder(model->config().n_vocab).unsqueeze(0);
        at::Tensor logits = model->forward(ids, &cache);
        model->forward(logits.select(1, L - 1).argmax(-1, true), &cache);
        mem["measured_fp32"][std::to_string(L + 1)] = {{"cache_bytes", cache.bytes()}, {"process_peak_rss_bytes", peak_rss_bytes()}};
      }
    }
    m["cache"] = mem;
    tick("memory");
    return m;
  };
  std::vector<json> by_index(dirs.size());
  for (size_t i = static_cast<size_t>(rank); i < dirs.size(); i += static_cast<size_t>(world))
    by_index[i] = evaluate_one(dirs[i]);
  if (progress) progress->finish();
  if (dp) {
    json share = json::object();
    for (size_t i = static_cast<size_t>(rank); i < dirs.size(); i += static_cast<size_t>(world))
      share[std::to_string(i)] = by_index[i];
    for (const std::string& text : group->allgather_strings(share.dump(), "gathering the evaluation's results")) {
      json theirs = json::parse(text);
      for (auto it = theirs.begin(); it != theirs.end(); ++it) by_index[std::stoul(it.key())] = it.value();
    }
  }
  // Decode speed, timed on rank 0 alone while the other ranks wait (their result is the same).
  for (size_t i = 0; i < dirs.size(); ++i) {
    if (main_rank) by_index[i]["decode"] = runtime_decode(dirs[i], opt);
    models.push_back(by_index[i]);
  }
  if (dp) {
    std::vector<std::string> decode = group->allgather_strings(main_rank ? json(models).dump() : "", "sharing the decode timings");
    models = json::parse(decode[0]);
  }

  // Coverage against the reference model (docs/DESIGN.md section 8), per group. Retrieval: per task the
  // ratio student / reference capped at 1, averaged within each task family (kv, mqar, needle,
  // phonebook), then over families, so six needle variants weigh as much as one phone book. Tasks
  // where the reference is near chance are excluded and listed: coverage of noise is noise.
  size_t ref = 0;
  for (size_t i = 0; i < dirs.size(); ++i)
    if (!reference.empty() && dirs[i] == reference) ref = i;
  const json& r = models[ref];
  json excluded = json::object();
  std::map<std::string, std::vector<std::string>> families;
  for (auto it = r["tasks"].begin(); it != r["tasks"].end(); ++it) {
    const std::string& name = it.key();
    const json& rt = it.value();
    std::string family = name.substr(0, name.find('_'));
    if (!rt.contains("accuracy")) {
      excluded[name] = "skipped for the reference model";
      continue;
    }
    double acc = rt["accuracy"].get<double>(), low = rt["ci95"][0].get<double>();
    double chance = retrieval_chance(name);
    if (acc < kMinReferenceAccuracy || low <= chance) {
      excluded[name] = fmt::format("reference accuracy {:.3f} (95% interval from {:.3f}) is near chance ({:.3f})", acc,
                                   low, chance);
      continue;
    }
    families[family].push_back(name);
  }
  for (auto& m : models) {
    json cov = json::object(), fam_cov = json::object();
    double sum = 0;
    int n = 0;
    for (const auto& [family, names] : families) {
      double fsum = 0;
      int fn = 0;
      for (const auto& name : names) {
        const json& mt = m["tasks"].value(name, json::object());
        if (!mt.contains("accuracy")) continue;  // a student that skipped a task the reference ran
        double c = mt["accuracy"].get<double>() / r["tasks"][name]["accuracy"].get<double>();
        cov[name] = c;
        fsum += std::min(1.0, c);
        ++fn;
      }
      if (fn == 0) continue;
      fam_cov[family] = fsum / fn;
      sum += fsum / fn;
      ++n;
    }
    m["coverage"] = cov;
    m["coverage_retrieval_families"] = fam_cov;
    m["coverage_retrieval"] = n > 0 ? json(sum / n) : json(nullptr);
    double lsum = 0;
    int ln = 0;
    if (m.contains("perplexity") && r.contains("perplexity")) {
      double c = r["perplexity"].get<double>() / m["perplexity"].get<double>();
      m["coverage"]["perplexity"] = c;
      lsum += std::min(1.0, c);
      ++ln;
    }
    if (m.contains("user_multiple_choice") && r.contains("user_multiple_choice") &&
        r["user_multiple_choice"]["accuracy"].get<double>() > 0) {
      double c = m["user_multiple_choice"]["accuracy"].get<double>() / r["user_multiple_choice"]["accuracy"].get<double>();
      m["coverage"]["user_multiple_choice"] = c;
      lsum += std::min(1.0, c);
      ++ln;
    }
    m["coverage_language"] = ln > 0 ? json(lsum / ln) : json(nullptr);
    CacheCost mine{m["cache"]["per_token_bytes"].get<int64_t>(), m["cache"]["fixed_bytes"].get<int64_t>()};
    json be = json::object();
    for (const auto& other : models) {
      if (&other == &m) continue;
      CacheCost theirs{other["cache"]["per_token_bytes"].get<int64_t>(), other["cache"]["fixed_bytes"].get<int64_t>()};
      auto L = break_even_length(mine, theirs);
      be[other["name"].get<std::string>()] = L ? json(*L) : json(nullptr);
    }
    m["cache"]["break_even_length_vs"] = be;
  }
  return {{"reference", r["name"]}, {"models", models}, {"coverage_excluded_tasks", excluded},
          {"coverage_rule", fmt::format("per task min(1, score / reference score); retrieval = mean over task families "
                                        "(kv, mqar, needle, phonebook) of the family mean; tasks where the reference "
                                        "scores below {} or whose 95% interval reaches chance are excluded; language = "
                                        "mean of min(1, reference perplexity / perplexity) and user multiple choice",
                                        kMinReferenceAccuracy)},
          {"settings", {{"examples", opt.examples}, {"seed", opt.seed}, {"kv_pairs", opt.kv_pairs}, {"mqar_pairs", opt.mqar_pairs},
                        {"mqar_queries", opt.mqar_queries}, {"needle_words", opt.needle_words},
                        {"needle_depths", opt.needle_depths},
                        {"multi_needle_words", opt.multi_needle_words}, {"needles", opt.needles}, {"phonebook_entries", opt.phonebook_entries},
                        {"corpus", opt.corpus}, {"user_tasks", opt.user_tasks}, {"kv_dtype_bytes", opt.kv_dtype_bytes},
                        {"key_split", tasks::key_split_name(opt.key_split)},
                        {"scoring", fmt::format("teacher-forced greedy exact match of every answer token; held-out keys "
                                                "(\"{}\" pool)", tasks::key_split_name(opt.key_split))}}}};
}

}  // namespace rad
