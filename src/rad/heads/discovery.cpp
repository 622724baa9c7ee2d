#include "rad/heads/discovery.h"

#include <fmt/format.h>

#include <algorithm>
#include <filesystem>
#include <numeric>
#include <optional>
#include <random>

#include "rad/core/atomic_file.h"
#include "rad/core/error.h"
#include "rad/core/log.h"
#include "rad/heads/model_hash.h"
#include "rad/parallel/process_group.h"
#include "rad/report/svg.h"

namespace rad {
namespace fs = std::filesystem;

int64_t fitting_pairs(const ModelConfig& config, const tasks::Encoder& encode, std::optional<int64_t> bos,
                      int64_t wanted, uint64_t seed) {
  for (int64_t pairs = std::min<int64_t>(wanted, 100); pairs >= 1; --pairs) {
    tasks::TaskOptions o;
    o.pairs = pairs;
    std::vector<tasks::EncodedExample> ex;
    for (const auto& e : tasks::make_examples("kv", o, 16, seed)) ex.push_back(tasks::encode_example(e, encode, bos));
    // 10% margin: other draws can have longer keys than these 16.
    if (tasks::max_length(ex) * 11 / 10 <= config.max_position_embeddings) return pairs;
  }
  fail("even a 1-pair KV probe does not fit the model's context of {} tokens", config.max_position_embeddings);
}

uint64_t causal_probe_seed(uint64_t seed) { return seed ^ 0xca05a1c0ffeeull; }

std::vector<int64_t> causal_k_values(int64_t budget, int64_t n_heads) {
  std::set<int64_t> ks = {1, 2, 3, 5, budget, 2 * budget, 3 * budget};
  std::vector<int64_t> out;
  for (int64_t k : ks)
    if (k >= 1 && k <= n_heads) out.push_back(k);
  return out;
}

std::string describe_probe(const DiscoveryOptions& o) {
  if (o.task == "kv") return fmt::format("KV retrieval, {} pairs", o.pairs);
  if (o.task == "mqar") return fmt::format("multi-query KV retrieval, {} pairs", o.pairs);
  if (o.task == "needle") return fmt::format("needle in {} filler words", o.context_words);
  if (o.task == "phonebook") return fmt::format("phone book, {} entries", o.pairs);
  return o.task;
}

DiscoveryResult discover_heads(CausalLM& model, const tasks::Encoder& encode, std::optional<int64_t> bos,
                               const DiscoveryOptions& o, const std::string& out_dir) {
  const ModelConfig& c = model->config();
  ensure_directory(out_dir);
  // Selection and causal evidence use disjoint examples over disjoint keys: the sweep draws from the
  // "select" half of the held-out keys, the causal check (like the students' evaluation) from the
  // "test" half, with its own seed stream.
  auto make_probe = [&](tasks::KeySplit split, uint64_t seed, int64_t count) {
    tasks::TaskOptions probe_options;
    probe_options.pairs = o.pairs;
    probe_options.context_words = o.context_words;
    probe_options.split = split;
    std::vector<tasks::EncodedExample> out;
    for (const auto& e : tasks::make_examples(o.task, probe_options, count, seed))
      out.push_back(tasks::encode_example(e, encode, bos));
    return out;
  };
  std::vector<tasks::EncodedExample> probe = make_probe(tasks::KeySplit::kSelect, o.seed, o.examples);
  if (o.task == "kv" || o.task == "mqar")
    RAD_CHECK(tasks::max_length(probe) <= c.max_position_embeddings,
              "a {}-pair probe needs {} tokens but the model's context is {}; use --pairs {}", o.pairs,
              tasks::max_length(probe), c.max_position_embeddings, fitting_pairs(c, encode, bos, o.pairs, o.seed));
  RAD_CHECK(tasks::max_length(probe) <= c.max_position_embeddings,
            "the {} probe needs {} tokens but the model's context is {}; make it shorter", describe_probe(o),
            tasks::max_length(probe), c.max_position_embeddings);
  model->eval();
  HeadAblator ablator(model, probe, o.ablation, o.batch);
  const int64_t n_heads = c.n_layer * c.n_head;
  const int64_t n_batches = (o.examples + o.batch - 1) / o.batch;
  SweepResult sweep;
  const bool main_rank = o.group == nullptr || o.group->is_main();
  {
    std::optional<Progress> progress;
    if (main_rank) progress.emplace("heads", n_heads * n_batches, "head-batches");
    sweep = ablator.sweep(progress ? &*progress : nullptr, o.group);
    if (progress) progress->finish(fmt::format("teacher accuracy {:.3f}", sweep.teacher_accuracy));
  }
  HeadSet kept = select_heads(sweep.ranked, o.selector);
  HeadPlan plan;
  plan.kept_heads.assign(kept.begin(), kept.end());
  plan.selector = o.selector.to_json();

  // Causal evidence: the top-k heads ablated together against k random heads, on held-out examples.
  // Every rank holds the sweep's ranking and draws the same sets; with a group, rank r scores the
  // runs r, r + N, ... and one all-reduce gathers the accuracies (run 0: nothing ablated).
  const uint64_t causal_seed = causal_probe_seed(o.seed);
  HeadAblator causal(model, make_probe(tasks::KeySplit::kTest, causal_seed, o.causal_examples), o.ablation, o.batch);
  const int64_t budget = std::max<int64_t>(1, static_cast<int64_t>(kept.size()));
  std::mt19937_64 rng(o.seed ^ 0x5eedull);
  std::vector<int64_t> ks = causal_k_values(budget, n_heads);
  std::vector<HeadSet> runs = {HeadSet{}};
  for (int64_t k : ks) {
    HeadSet top;
    for (int64_t i = 0; i < k; ++i) top.insert({sweep.ranked[i].layer, sweep.ranked[i].head});
    runs.push_back(top);
    for (int64_t d = 0; d < o.random_draws; ++d) {
      std::vector<int64_t> all(n_heads);
      std::iota(all.begin(), all.end(), 0);
      std::shuffle(all.begin(), all.end(), rng);
      HeadSet random;
      for (int64_t i = 0; i < k; ++i) random.insert({all[i] / c.n_head, all[i] % c.n_head});
      runs.push_back(random);
    }
  }
  const bool dp = o.group != nullptr && o.group->distributed();
  const int64_t rank = dp ? o.group->rank() : 0, world = dp ? o.group->world_size() : 1;
  std::vector<double> accuracy(runs.size(), 0.0);
  {
    const int64_t mine = (static_cast<int64_t>(runs.size()) - rank + world - 1) / world;
    std::optional<Progress> progress;
    if (main_rank) progress.emplace(dp ? "causal check (rank 0's share)" : "causal check", mine, "probe runs");
    int64_t done = 0;
    for (size_t i = static_cast<size_t>(rank); i < runs.size(); i += static_cast<size_t>(world)) {
      accuracy[i] = causal.accuracy(runs[i]);
      if (progress) progress->update(++done);
    }
    if (progress) progress->finish();
  }
  if (dp) {
    at::Tensor gathered = at::tensor(accuracy, at::kDouble);  // zeros where another rank scored
    o.group->allreduce(gathered, parallel::Reduce::kSum, "the causal check's all-reduce");
    for (size_t i = 0; i < accuracy.size(); ++i) accuracy[i] = gathered[static_cast<int64_t>(i)].item<double>();
  }
  if (!main_rank) return {sweep, {}, {}};  // rank 0 writes
  plan.model_hash = model_hash(model);
  const double causal_clean = accuracy[0];
  nlohmann::json top_k = nlohmann::json::array(), random_k = nlohmann::json::array();
  std::vector<std::pair<double, double>> top_points, rand_points, rand_band;
  size_t next = 1;
  for (int64_t k : ks) {
    const double acc = accuracy[next++];
    top_k.push_back({{"k", k}, {"accuracy", acc}});
    top_points.emplace_back(k, acc);
    double sum = 0, lo = 1, hi = 0;
    for (int64_t d = 0; d < o.random_draws; ++d) {
      const double a = accuracy[next++];
      sum += a;
      lo = std::min(lo, a);
      hi = std::max(hi, a);
    }
    double mean = o.random_draws > 0 ? sum / o.random_draws : 0;
    random_k.push_back({{"k", k}, {"accuracy_mean", mean}, {"accuracy_min", lo}, {"accuracy_max", hi},
                        {"draws", o.random_draws}});
    rand_points.emplace_back(k, mean);
    rand_band.emplace_back(lo, hi);
  }

  nlohmann::json heads = nlohmann::json::array();
  for (const auto& s : sweep.ranked)
    heads.push_back({{"layer", s.layer}, {"head", s.head}, {"kv_group", s.kv_group}, {"score", s.score},
                     {"logprob_drop", s.score}, {"accuracy_drop", s.accuracy_drop},
                     {"accuracy_without", s.accuracy_without}, {"rank", s.rank}, {"kept", kept.count({s.layer, s.head}) > 0}});
  nlohmann::json j = {
      {"teacher_accuracy", sweep.teacher_accuracy},
      {"teacher_answer_logprob", sweep.teacher_logprob},
      {"score", "mean drop of the answer's log-probability (nats) when the head is ablated; ties by (layer, head)"},
      {"probe", {{"task", o.task}, {"description", describe_probe(o)}, {"pairs", o.pairs}, {"context_words", o.context_words},
                 {"examples", o.examples}, {"answers", sweep.answers},
                 {"seed", o.seed}, {"ablation", o.ablation}, {"key_split", "select"}}},
      {"causal_probe", {{"task", o.task}, {"description", describe_probe(o)}, {"pairs", o.pairs},
                        {"context_words", o.context_words}, {"examples", o.causal_examples}, {"seed", causal_seed},
                        {"key_split", "test"}, {"teacher_accuracy", causal_clean}}},
      {"model_hash", plan.model_hash},
      {"n_layer", c.n_layer},
      {"n_head", c.n_head},
      {"n_head_kv", c.n_head_kv},
      {"heads", heads},
      {"selector", plan.selector},
      {"ablate_top_k", top_k},
      {"ablate_random_k", random_k},
      {"sweep_seconds", sweep.seconds},
  };
  write_text_atomic((fs::path(out_dir) / "heads.json").string(), j.dump(2) + "\n");
  plan.save((fs::path(out_dir) / "plan.json").string(), c);

  std::vector<std::vector<double>> grid(c.n_layer, std::vector<double>(c.n_head, 0));
  for (const auto& s : sweep.ranked) grid[s.layer][s.head] = s.score;
  write_text_atomic((fs::path(out_dir) / "heads.svg").string(),
                    svg::heat_map(grid, kept, fmt::format("Retrieval score (answer log-prob drop, nats), {}", describe_probe(o)),
                                  "layer", "query head"));
  write_text_atomic(
      (fs::path(out_dir) / "causal.svg").string(),
      svg::line_chart({{"top-k heads ablated", "#c0392b", top_points, {}},
                       {"k random heads (mean, min-max)", "#2c3e50", rand_points, rand_band}},
                      "Probe accuracy with k heads ablated together", "k (heads ablated)", "probe accuracy", 0, 1));

  std::string md = fmt::format("# Retrieval heads\n\nSelection probe: {}, {} examples on the \"select\" "
                               "half of the held-out keys, seed {}, {} ablation. Model hash `{}`.\n\nTeacher probe accuracy: "
                               "**{:.3f}**. Sweep of {} heads took {:.1f} s.\n\nScore: the mean drop of the answer's "
                               "log-probability (nats) when the head is ablated (continuous; ties break by layer, then "
                               "head); the accuracy drop is shown beside it.\n\nSelected {} of {} heads ({:.1f}%) by {}.\n\n",
                               describe_probe(o), o.examples, o.seed, o.ablation, plan.model_hash, sweep.teacher_accuracy, n_heads,
                               sweep.seconds, kept.size(), n_heads, 100.0 * kept.size() / n_heads, plan.selector.dump());
  md += "| rank | layer | head | KV group | score (nats) | accuracy drop | accuracy without |\n|---|---|---|---|---|---|---|\n";
  for (size_t i = 0; i < sweep.ranked.size() && i < std::max<size_t>(10, kept.size()); ++i) {
    const auto& s = sweep.ranked[i];
    md += fmt::format("| {} | {} | {} | {} | {:.3f} | {:.3f} | {:.3f} |\n", s.rank, s.layer, s.head, s.kv_group, s.score,
                      s.accuracy_drop, s.accuracy_without);
  }
  md += fmt::format("\nCausal check on {} other examples over the \"test\" half of the held-out keys (seed {}; teacher "
                    "accuracy there {:.3f}): probe accuracy with heads ablated together.\n\n| k | top-k | random k (mean [min, max]) |\n|---|---|---|\n",
                    o.causal_examples, causal_seed, causal_clean);
  for (size_t i = 0; i < ks.size(); ++i)
    md += fmt::format("| {} | {:.3f} | {:.3f} [{:.3f}, {:.3f}] |\n", ks[i], top_points[i].second, rand_points[i].second,
                      rand_band[i].first, rand_band[i].second);
  md += "\nFiles: `heads.json` (every head), `plan.json` (the selection), `heads.svg` (heat map), `causal.svg`.\n";
  write_text_atomic((fs::path(out_dir) / "heads.md").string(), md);
  return {sweep, plan, j};
}

}  // namespace rad
