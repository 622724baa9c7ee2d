// The kept set chosen by sufficiency (docs/DESIGN.md section 3): ablation ranks heads by *necessity*, but a
// hybrid needs a kept set that is *sufficient*: with only those heads as attention (every other head
// a recurrent replacement from the head bank) the probe must still be solved. The set is built by
// greedy forward selection on the "select" keys:
//   1. start from no head; at each step try adding each candidate (the top `candidates` of the
//      necessity ranking) and keep the one whose assembled hybrid gives the answers the highest mean
//      log-probability (ties: the better-ranked head). The log-probability, not the accuracy, picks:
//      a gather head without its aggregate head (or the reverse) raises the answers' probability
//      long before it makes them the argmax, so accuracy alone leaves the first steps to noise;
//   2. stop when the probe's accuracy reaches `target_ratio` x the teacher's (sufficient), or at
//      `max_heads`. The point estimate, not the Wilson lower bound: a teacher at 84% on 128 answers
//      has a lower bound of 77%, so "lower bound >= 0.95 x teacher" could never hold at that size;
//      the intervals are reported beside every number instead, and the test keys judge the result;
//   3. prune: drop each kept head, latest first, whose removal keeps the set sufficient; repeat
//      the pass until one drops nothing (a short-KD proxy is not monotone in the set).
// If no set reaches the target within `max_heads`, the smallest set on the path whose accuracy is
// within `fallback_ratio` of the best on the path is taken, and the result says so.
//
// Hybrids assembled without distillation are a pessimistic proxy (measured on the default teacher:
// 7 heads to reach 81% assembled, where 3 of them reach 83% at 20 pairs after 100 KD steps), so a
// stronger proxy can confirm the choice: confirm_by_proxy scores the greedy path's prefixes (k = 1,
// 2, ...) with it, e.g. after a short KD, and takes the smallest that suffices under the same rule.
// A short KD is itself noisy at the margin; prune_at_budget prunes the chosen set once more with each
// trial distilled as long as the students will be (the budget the choice is made for).
#pragma once

#include <functional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "rad/heads/ablation.h"
#include "rad/tasks/scorer.h"

namespace rad {

struct SufficiencyOptions {
  double target_ratio = 0.95;   // sufficient: accuracy >= target_ratio x the teacher's
  int64_t candidates = 12;      // heads tried at each step: the top of the necessity ranking
  int64_t max_heads = 12;       // give up growing the set beyond this
  double fallback_ratio = 0.95;  // no sufficient set: smallest set with accuracy >= this x the path's best
  // "ranking" (walk_ranking_and_prune) or "greedy" (select_sufficient_set, then confirm_by_proxy
  // when a proxy is given). Measured on the default teacher, bench/RESULTS.md.
  std::string strategy = "ranking";
  // prune_at_budget: a trial goes to the costly proxy only if the cheap one already gives it at least
  // this x the target (a set at noise after the short KD is not rescued by a longer one: on the default
  // teacher the 2-head sets scored 1-2% where the 3-head set that the longer KD lifted scored 77%).
  double budget_floor = 0.5;
  // walk_ranking_and_prune's first scored prefix: 0 = the first top-k whose hybrid, assembled from the
  // bank without distillation, retrieves above the no-heads level (first_k_above_no_heads); K >= 1 =
  // top-K. The smaller prefixes are added without a score of their own: pruning still tries dropping
  // each of their heads. Why: a short KD did not create retrieval that the assembled set lacked (on
  // the default teacher top-1..5 assembled at 0-2%, the no-heads level, and stayed at 2% after 100
  // KD steps each, 5 of the walk's 7 distillations; top-6 assembled at 27% and distilled to 80%).
  int64_t walk_from = 0;
  nlohmann::json to_json() const;
};

struct SufficiencyStep {
  std::string action;  // "add" or "drop"
  std::pair<int64_t, int64_t> head;
  HeadSet set;         // the set after the step
  tasks::Accuracy accuracy;
  double mean_logprob = 0;
  // prune_at_budget: "short" or "budget", the proxy whose score decided; walk_ranking_and_prune:
  // "assembled" for a head added before the walk's first scored prefix (its accuracy is then the
  // assembled, undistilled hybrid's).
  std::string judged_by;
};

struct SufficiencyResult {
  HeadSet chosen;
  tasks::Accuracy chosen_accuracy;
  bool sufficient = false;  // the target was reached (else the fallback rule chose)
  double teacher_accuracy = 0;
  tasks::Accuracy empty_accuracy;  // no head kept (the pure SSM from the bank)
  std::vector<SufficiencyStep> path;  // every step taken, in order
  int64_t evaluations = 0;
  // confirm_by_proxy: each prefix of the greedy path it scored (empty without it).
  std::string proxy;  // what the proxy was, in words
  std::vector<SufficiencyStep> proxy_path;
  // prune_at_budget: the proxy in words, and every removal it tried ("drop" accepted, "keep" refused).
  std::string budget_proxy;
  std::vector<SufficiencyStep> budget_path;
  nlohmann::json to_json() const;
};

// Scores a kept set (assembles its hybrid and runs the probe).
using SetScorer = std::function<ProbeScore(const HeadSet&)>;

// Greedy forward selection with pruning over `ranked` (necessity order), as in the header.
// `on_step` (optional) sees each evaluation (for progress).
SufficiencyResult select_sufficient_set(const std::vector<std::pair<int64_t, int64_t>>& ranked,
                                        double teacher_accuracy, const SetScorer& score,
                                        const SufficiencyOptions& options,
                                        const std::function<void()>& on_evaluation = nullptr);

// The other strategy: walk the necessity ranking (top-1, top-2, ...) until a prefix suffices, then
// prune: try dropping each of its heads, the lowest-ranked first, and drop it when the rest still
// suffices. Each step scores one set, so it suits an expensive proxy (a short KD per set): at most
// max_heads + k evaluations. Falls back as select_sufficient_set when no prefix suffices.
// `assembled` (optional): the top-k hybrids assembled without distillation, k = 0 (no head) first;
// with options.walk_from = 0 it sets where the walk starts (first_k_above_no_heads), else top-1.
SufficiencyResult walk_ranking_and_prune(const std::vector<std::pair<int64_t, int64_t>>& ranked,
                                         double teacher_accuracy, const SetScorer& score,
                                         const SufficiencyOptions& options,
                                         const std::function<void()>& on_evaluation = nullptr,
                                         const std::vector<tasks::Accuracy>& assembled = {});

// The smallest k >= 1 whose `assembled[k]` (the top-k hybrid assembled from the bank, k = 0: no head)
// has a 95% interval wholly above assembled[0]'s; 1 when none has (or `assembled` has no k >= 1).
int64_t first_k_above_no_heads(const std::vector<tasks::Accuracy>& assembled);

// A name that identifies a kept set, for caching one proxy student per set: "none" or
// "L0H4-L2H2-L3H3" (sorted). Keyed by the set itself, not its size: pruning scores sets of a size
// the walk has already scored, and those must not reuse the walk's student.
std::string head_set_key(const HeadSet& set);

// Scores the prefixes of `greedy`'s additions with `proxy`, smallest first, and chooses the first that
// reaches the target (else the smallest within `fallback_ratio` of the best prefix). `proxy_name`
// describes the proxy in the result.
SufficiencyResult confirm_by_proxy(SufficiencyResult greedy, const SetScorer& proxy, const std::string& proxy_name,
                                   const SufficiencyOptions& options,
                                   const std::function<void()>& on_evaluation = nullptr);

// Prunes a sufficient choice once more, judged at the students' budget: each head of r.chosen is
// tried for removal, the latest added first (the order of r.path's additions), in passes repeated
// until one drops nothing. A trial is first scored by `cheap` (cached: usually the proxy that chose
// the set); if that reaches `budget_floor` x the target, `budget` (e.g. the trial distilled as long
// as the students) decides, else the cheap score refuses it. Why: a short KD ranks sets well but is
// noisy at the bar (on the default teacher {L0H4, L2H2, L3H3} had 99 of 128 after 100 KD steps
// with the bar at 103, and 104 after 300). A choice that was not sufficient is returned unchanged.
SufficiencyResult prune_at_budget(SufficiencyResult r, const SetScorer& cheap, const SetScorer& budget,
                                  const std::string& budget_name, const SufficiencyOptions& options,
                                  const std::function<void()>& on_evaluation = nullptr);

}  // namespace rad
