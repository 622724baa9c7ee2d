#include "rad/heads/sufficiency.h"

#include <algorithm>
#include <optional>
#include <set>

#include <fmt/format.h>

#include "rad/core/error.h"

namespace rad {
using nlohmann::json;

json SufficiencyOptions::to_json() const {
  return {{"target_ratio", target_ratio},
          {"candidates", candidates},
          {"max_heads", max_heads},
          {"fallback_ratio", fallback_ratio},
          {"strategy", strategy},
          {"budget_floor", budget_floor},
          {"walk_from", walk_from}};
}

namespace {

json heads_json(const HeadSet& set) {
  json a = json::array();
  for (const auto& [l, h] : set) a.push_back({l, h});
  return a;
}

// No set reached the target: the first (smallest) set on `path` within `ratio` of the path's best
// accuracy becomes the choice (nothing changes for an empty path).
void choose_fallback(SufficiencyResult& r, const std::vector<SufficiencyStep>& path, double ratio) {
  int64_t best = 0;
  for (const auto& s : path) best = std::max(best, s.accuracy.correct);
  for (const auto& s : path)
    if (s.accuracy.correct >= ratio * best) {
      r.chosen = s.set;
      r.chosen_accuracy = s.accuracy;
      return;
    }
}

using Head = std::pair<int64_t, int64_t>;

// Removal trials in passes: each head of `added` still in `set`, the latest first, is offered to
// `try_drop(trial, head)` (trial = set without it), which says whether the rest stays sufficient;
// an accepted trial becomes the set. Passes repeat until one drops nothing: a head that was needed
// beside a since-dropped head may not be needed without it (on the default teacher the walk's 7th
// head failed its first try, while the set it sat in still held 3 heads the lookup does not need).
// A refused trial set is not offered again. Returns the final set.
HeadSet prune_in_passes(HeadSet set, const std::vector<Head>& added,
                        const std::function<bool(const HeadSet&, const Head&)>& try_drop) {
  std::set<HeadSet> refused;
  for (bool dropped = true; dropped && set.size() > 1;) {
    dropped = false;
    for (auto it = added.rbegin(); it != added.rend() && set.size() > 1; ++it) {
      if (!set.count(*it)) continue;
      HeadSet trial = set;
      trial.erase(*it);
      if (refused.count(trial)) continue;
      if (try_drop(trial, *it)) {
        set = trial;
        dropped = true;
      } else {
        refused.insert(trial);
      }
    }
  }
  return set;
}

// A sufficient `set` (accuracy `current`): prune it in passes (above), a trial kept when its score
// reaches `target`; records each drop in r.path and makes the result the choice.
void prune_latest_first(SufficiencyResult& r, const std::vector<Head>& added, const HeadSet& set,
                        tasks::Accuracy current, const std::function<ProbeScore(const HeadSet&)>& eval,
                        double target) {
  r.chosen = prune_in_passes(set, added, [&](const HeadSet& trial, const Head& head) {
    ProbeScore a = eval(trial);
    if (a.accuracy.value() < target) return false;
    current = a.accuracy;
    r.path.push_back({"drop", head, trial, current, a.mean_logprob, ""});
    return true;
  });
  r.chosen_accuracy = current;
  r.sufficient = true;
}

json accuracy_json(const tasks::Accuracy& a) {
  return {{"accuracy", a.value()}, {"correct", a.correct}, {"n", a.total}, {"low", a.low()}, {"high", a.high()}};
}

}  // namespace

json SufficiencyResult::to_json() const {
  json steps = json::array();
  for (const auto& s : path) {
    steps.push_back({{"action", s.action},
                     {"head", {s.head.first, s.head.second}},
                     {"k", static_cast<int64_t>(s.set.size())},
                     {"kept_heads", heads_json(s.set)},
                     {"probe", accuracy_json(s.accuracy)},
                     {"mean_answer_logprob", s.mean_logprob}});
    if (!s.judged_by.empty()) steps.back()["judged_by"] = s.judged_by;  // "assembled": added unscored
  }
  json proxy_steps = json::array();
  for (const auto& s : proxy_path)
    proxy_steps.push_back({{"k", static_cast<int64_t>(s.set.size())},
                           {"kept_heads", heads_json(s.set)},
                           {"probe", accuracy_json(s.accuracy)},
                           {"mean_answer_logprob", s.mean_logprob}});
  json budget_steps = json::array();
  for (const auto& s : budget_path)
    budget_steps.push_back({{"action", s.action},
                            {"head", {s.head.first, s.head.second}},
                            {"k", static_cast<int64_t>(s.set.size())},
                            {"kept_heads", heads_json(s.set)},
                            {"probe", accuracy_json(s.accuracy)},
                            {"mean_answer_logprob", s.mean_logprob},
                            {"judged_by", s.judged_by}});
  return {{"kept_heads", heads_json(chosen)},
          {"budget_proxy", budget_proxy.empty() ? json(nullptr) : json(budget_proxy)},
          {"budget_path", budget_steps},
          {"proxy", proxy.empty() ? json(nullptr) : json(proxy)},
          {"proxy_path", proxy_steps},
          {"k", static_cast<int64_t>(chosen.size())},
          {"probe", accuracy_json(chosen_accuracy)},
          {"sufficient", sufficient},
          {"teacher_accuracy", teacher_accuracy},
          {"no_heads", accuracy_json(empty_accuracy)},
          {"evaluations", evaluations},
          {"path", steps}};
}

std::string head_set_key(const HeadSet& set) {
  if (set.empty()) return "none";
  std::string key;
  for (const auto& [l, h] : set) key += fmt::format("{}L{}H{}", key.empty() ? "" : "-", l, h);
  return key;
}

SufficiencyResult select_sufficient_set(const std::vector<std::pair<int64_t, int64_t>>& ranked,
                                        double teacher_accuracy, const SetScorer& score, const SufficiencyOptions& o,
                                        const std::function<void()>& on_evaluation) {
  RAD_CHECK(o.target_ratio > 0 && o.target_ratio <= 1, "sufficiency: target ratio must be in (0, 1], got {}",
            o.target_ratio);
  RAD_CHECK(o.candidates >= 1 && o.max_heads >= 1, "sufficiency: candidates and max heads must be >= 1");
  SufficiencyResult r;
  r.teacher_accuracy = teacher_accuracy;
  const double target = o.target_ratio * teacher_accuracy;
  auto eval = [&](const HeadSet& s) {
    ProbeScore a = score(s);
    ++r.evaluations;
    if (on_evaluation) on_evaluation();
    return a;
  };
  auto sufficient = [&](const tasks::Accuracy& a) { return a.value() >= target; };
  std::vector<std::pair<int64_t, int64_t>> pool(ranked.begin(),
                                                ranked.begin() + std::min<size_t>(ranked.size(), o.candidates));
  HeadSet set;
  r.empty_accuracy = eval(set).accuracy;
  tasks::Accuracy current = r.empty_accuracy;
  bool reached = sufficient(current);
  // 1-2. Grow.
  while (!reached && static_cast<int64_t>(set.size()) < o.max_heads) {
    std::optional<std::pair<int64_t, int64_t>> best;
    ProbeScore best_score;
    for (const auto& head : pool) {  // in ranking order: a tie keeps the better-ranked head
      if (set.count(head)) continue;
      HeadSet trial = set;
      trial.insert(head);
      ProbeScore a = eval(trial);
      if (!best || a.mean_logprob > best_score.mean_logprob) {
        best = head;
        best_score = a;
      }
    }
    if (!best) break;  // every candidate is in the set
    set.insert(*best);
    current = best_score.accuracy;
    r.path.push_back({"add", *best, set, current, best_score.mean_logprob, ""});
    reached = sufficient(current);
  }
  // 3. Prune (latest added first): a head whose removal keeps the set sufficient is not needed.
  if (reached) {
    std::vector<std::pair<int64_t, int64_t>> added;
    for (const auto& s : r.path) added.push_back(s.head);
    prune_latest_first(r, added, set, current, eval, target);
    return r;
  }
  // Fallback: the smallest set on the growth path within fallback_ratio of the path's best.
  int64_t best_correct = r.empty_accuracy.correct;
  for (const auto& s : r.path) best_correct = std::max(best_correct, s.accuracy.correct);
  r.chosen = {};
  r.chosen_accuracy = r.empty_accuracy;
  if (r.empty_accuracy.correct < o.fallback_ratio * best_correct) choose_fallback(r, r.path, o.fallback_ratio);
  r.sufficient = false;
  return r;
}

int64_t first_k_above_no_heads(const std::vector<tasks::Accuracy>& assembled) {
  for (size_t k = 1; k < assembled.size(); ++k)
    if (assembled[k].low() > assembled[0].high()) return static_cast<int64_t>(k);
  return 1;
}

SufficiencyResult walk_ranking_and_prune(const std::vector<std::pair<int64_t, int64_t>>& ranked,
                                         double teacher_accuracy, const SetScorer& score, const SufficiencyOptions& o,
                                         const std::function<void()>& on_evaluation,
                                         const std::vector<tasks::Accuracy>& assembled) {
  RAD_CHECK(o.max_heads >= 1, "sufficiency: max heads must be >= 1");
  RAD_CHECK(o.walk_from >= 0, "sufficiency: the walk's first prefix must be >= 0 (0 = from the assembled curve), got {}",
            o.walk_from);
  SufficiencyResult r;
  r.teacher_accuracy = teacher_accuracy;
  const double target = o.target_ratio * teacher_accuracy;
  auto eval = [&](const HeadSet& s) {
    ProbeScore a = score(s);
    ++r.evaluations;
    if (on_evaluation) on_evaluation();
    return a;
  };
  HeadSet set;
  tasks::Accuracy current;
  bool reached = false;
  const int64_t limit = std::min<int64_t>(o.max_heads, static_cast<int64_t>(ranked.size()));
  const int64_t first = std::min(limit, o.walk_from > 0 ? o.walk_from : first_k_above_no_heads(assembled));
  for (int64_t k = 0; k < limit && !reached; ++k) {
    set.insert(ranked[k]);
    if (k + 1 < first) {  // below the walk's start: added unscored (its assembled score is recorded)
      const size_t i = static_cast<size_t>(k + 1);
      r.path.push_back({"add", ranked[k], set, i < assembled.size() ? assembled[i] : tasks::Accuracy{}, 0, "assembled"});
      continue;
    }
    ProbeScore a = eval(set);
    current = a.accuracy;
    r.path.push_back({"add", ranked[k], set, current, a.mean_logprob, ""});
    reached = current.value() >= target;
  }
  if (!reached) {
    r.sufficient = false;
    std::vector<SufficiencyStep> scored;
    for (const auto& s : r.path)
      if (s.judged_by != "assembled") scored.push_back(s);
    choose_fallback(r, scored, o.fallback_ratio);
    return r;
  }
  // Prune, lowest-ranked first (the walk added them last).
  std::vector<std::pair<int64_t, int64_t>> added;
  for (const auto& s : r.path) added.push_back(s.head);
  prune_latest_first(r, added, set, current, eval, target);
  return r;
}

SufficiencyResult confirm_by_proxy(SufficiencyResult r, const SetScorer& proxy, const std::string& proxy_name,
                                   const SufficiencyOptions& o, const std::function<void()>& on_evaluation) {
  const double target = o.target_ratio * r.teacher_accuracy;
  r.proxy = proxy_name;
  r.proxy_path.clear();
  HeadSet set;
  for (const auto& step : r.path) {
    if (step.action != "add") continue;
    set.insert(step.head);
    ProbeScore a = proxy(set);
    ++r.evaluations;
    if (on_evaluation) on_evaluation();
    r.proxy_path.push_back({"add", step.head, set, a.accuracy, a.mean_logprob, ""});
    if (a.accuracy.value() >= target) {
      r.chosen = set;
      r.chosen_accuracy = a.accuracy;
      r.sufficient = true;
      return r;
    }
  }
  r.sufficient = false;
  choose_fallback(r, r.proxy_path, o.fallback_ratio);
  return r;
}

SufficiencyResult prune_at_budget(SufficiencyResult r, const SetScorer& cheap, const SetScorer& budget,
                                  const std::string& budget_name, const SufficiencyOptions& o,
                                  const std::function<void()>& on_evaluation) {
  RAD_CHECK(o.budget_floor >= 0 && o.budget_floor <= 1, "sufficiency: budget floor must be in [0, 1], got {}",
            o.budget_floor);
  r.budget_proxy = budget_name;
  r.budget_path.clear();
  if (!r.sufficient) return r;
  const double target = o.target_ratio * r.teacher_accuracy;
  std::vector<std::pair<int64_t, int64_t>> added;
  for (const auto& s : r.path)
    if (s.action == "add") added.push_back(s.head);
  for (const auto& h : r.chosen)  // heads the path did not add (none today) go last in the removal order
    if (std::find(added.begin(), added.end(), h) == added.end()) added.insert(added.begin(), h);
  r.chosen = prune_in_passes(r.chosen, added, [&](const HeadSet& trial, const Head& head) {
    ProbeScore a = cheap(trial);
    ++r.evaluations;
    if (on_evaluation) on_evaluation();
    std::string judge = "short";
    if (a.accuracy.value() >= o.budget_floor * target) {
      a = budget(trial);
      ++r.evaluations;
      if (on_evaluation) on_evaluation();
      judge = "budget";
    }
    const bool keeps = a.accuracy.value() >= target;
    r.budget_path.push_back({keeps ? "drop" : "keep", head, trial, a.accuracy, a.mean_logprob, judge});
    if (keeps) r.chosen_accuracy = a.accuracy;
    return keeps;
  });
  return r;
}

}  // namespace rad
