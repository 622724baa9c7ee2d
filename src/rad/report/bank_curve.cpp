#include "rad/report/bank_curve.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <limits>

#include "rad/core/atomic_file.h"
#include "rad/core/error.h"
#include "rad/eval/suite.h"
#include "rad/report/run_report.h"
#include "rad/report/svg.h"
#include "rad/tasks/scorer.h"

namespace rad {
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

// The eval tasks behind a report's probe accuracy: kv_{pairs}, or the needle's depths at its length.
bool is_probe_task(const json& report, const std::string& task) {
  if (report.value("probe_task", std::string("kv")) != "needle")
    return task == fmt::format("kv_{}", report.value("probe_pairs", int64_t{0}));
  const int64_t words = report["settings"].value("context_words", int64_t{0});
  return task.rfind(fmt::format("needle_{}w_d", words), 0) == 0;
}

// What guessing scores on the report's probe (rad/eval/suite.h: retrieval_chance).
double probe_chance(const json& report) {
  if (report.value("probe_task", std::string("kv")) != "needle")
    return retrieval_chance(fmt::format("kv_{}", report.value("probe_pairs", int64_t{0})));
  return retrieval_chance(fmt::format("needle_{}w", report["settings"].value("context_words", int64_t{0})));
}

// The probe accuracy of one model with its 95% Wilson interval over the pooled answers (the probe
// averages depths of equal size, so the pooled proportion is the same mean).
json probe_with_interval(const json& report, const json& model) {
  tasks::Accuracy pooled;
  const json tasks = model.value("tasks_ci95", json::object());  // (a named copy: items() of a temporary dangles)
  for (const auto& [task, t] : tasks.items()) {
    if (!is_probe_task(report, task) || !t["n"].is_number()) continue;
    const int64_t n = t["n"].get<int64_t>();
    pooled.total += n;
    pooled.correct += std::llround(t["accuracy"].get<double>() * static_cast<double>(n));
  }
  json out = {{"probe", model["probe_accuracy"]}, {"probe_ci95", nullptr}, {"answers", pooled.total}};
  if (pooled.total > 0) out["probe_ci95"] = {pooled.low(), pooled.high()};
  return out;
}

json model_row(const json& report, const json& m) {
  json row = probe_with_interval(report, m);
  row["name"] = m["name"];
  row["heads_kept"] = m["heads_kept"];
  row["perplexity"] = m.value("perplexity", json(nullptr));
  row["tasks"] = m.value("tasks", json::object());
  // Each task's 95% Wilson lower bound (from its accuracy and answers), to tell results from guessing.
  row["tasks_low"] = json::object();
  const json tasks_ci = m.value("tasks_ci95", json::object());  // (named: items() of a temporary dangles)
  for (const auto& [task, t] : tasks_ci.items())
    if (t["n"].is_number() && t["accuracy"].is_number()) {
      const int64_t n = t["n"].get<int64_t>();
      row["tasks_low"][task] = tasks::Accuracy{std::llround(t["accuracy"].get<double>() * static_cast<double>(n)), n}.low();
    }
  for (const char* L : {"4096", "32768"})
    row[fmt::format("cache_mb_{}", L)] = m["cache_bytes"].contains(L)
                                             ? json(m["cache_bytes"][L].get<double>() / 1e6)
                                             : json(nullptr);
  return row;
}

std::string pct(const json& v) { return v.is_number() ? fmt::format("{:.1f}%", 100 * v.get<double>()) : "n/a"; }
// "42.0% [30, 55]", and "noise" when the interval reaches what guessing scores.
std::string with_ci(const json& row, double chance) {
  if (!row.is_object()) return "not run";
  std::string s = pct(row["probe"]);
  if (row["probe_ci95"].is_array()) {
    s += fmt::format(" [{:.0f}, {:.0f}]", 100 * row["probe_ci95"][0].get<double>(),
                     100 * row["probe_ci95"][1].get<double>());
    if (row["probe_ci95"][0].get<double>() <= chance) s += " noise";
  } else if (row["probe"].is_number() && row["probe"].get<double>() <= 2 * chance) {
    s += " noise";
  }
  return s;
}
// Tokens in decimal millions (the table's unit; the figure's log axis labels powers of two).
std::string tokens_text(double tokens) { return fmt::format("{:.2f}M", tokens / 1e6); }
std::string number(const json& v, const char* f) { return v.is_number() ? fmt::format(fmt::runtime(f), v.get<double>()) : "n/a"; }

}  // namespace

json bank_curve_rows(std::vector<BankCurvePoint> points) {
  std::sort(points.begin(), points.end(),
            [](const BankCurvePoint& a, const BankCurvePoint& b) { return a.bank_tokens < b.bank_tokens; });
  json rows = json::array();
  for (const auto& p : points) {
    RAD_CHECK(p.report.contains("models") && p.report["models"].is_array(),
              "{}/report.json: no \"models\" (expected the report.json of `radistill run`)", p.run_dir);
    json row = {{"bank_tokens", p.bank_tokens},
                {"run_dir", p.run_dir},
                {"probe_label", p.report.value("probe_label", std::string())},
                {"n_heads_total", p.report.value("n_heads_total", json(nullptr))},
                {"k", nullptr},
                {"probe_chance", probe_chance(p.report)},
                {"models", json::object()}};
    std::vector<double> random_probe, random_ppl;
    for (const auto& m : p.report["models"]) {
      const std::string kind = m["kind"];
      if (kind == "random_heads") {
        if (m["probe_accuracy"].is_number()) random_probe.push_back(m["probe_accuracy"].get<double>());
        if (m.value("perplexity", json(nullptr)).is_number()) random_ppl.push_back(m["perplexity"].get<double>());
        continue;
      }
      if (kind == "teacher" || kind == "hybrid" || kind == "pure_ssm" || kind == "shrunk" || is_layerwise(kind))
        row["models"][kind] = model_row(p.report, m);
      if (kind == "hybrid") row["k"] = m["heads_kept"];
    }
    if (!random_probe.empty()) {
      double sum = 0, ppl = 0;
      for (double v : random_probe) sum += v;
      for (double v : random_ppl) ppl += v;
      row["models"]["random_heads"] = {
          {"draws", random_probe.size()},
          {"probe_mean", sum / random_probe.size()},
          {"probe_min", *std::min_element(random_probe.begin(), random_probe.end())},
          {"probe_max", *std::max_element(random_probe.begin(), random_probe.end())},
          {"perplexity_mean", random_ppl.empty() ? json(nullptr) : json(ppl / random_ppl.size())}};
    }
    rows.push_back(row);
  }
  return rows;
}

void write_bank_curve(const std::vector<BankCurvePoint>& points, const std::string& out_dir) {
  RAD_CHECK(!points.empty(), "bank curve: no run reports to put side by side");
  const json rows = bank_curve_rows(points);
  const json& last = rows.back();
  const BankCurvePoint& latest = *std::max_element(
      points.begin(), points.end(), [](const auto& a, const auto& b) { return a.bank_tokens < b.bank_tokens; });

  // report.json: the latest point's run report, in `run`'s format, with the curve added.
  json report = latest.report;
  report["bank_tokens"] = latest.bank_tokens;
  report["bank_curve"] = rows;
  fs::create_directories(out_dir);
  write_text_atomic((fs::path(out_dir) / "report.json").string(), report.dump(2) + "\n");

  // The figure: probe accuracy against bank tokens.
  auto style = [](const std::string& kind, const std::string& name) {
    svg::Series s;
    const int i = kind_palette_index(kind);
    s.name = name;
    s.colour = svg::palette(i).colour;
    s.marker = i;
    return s;
  };
  const std::string k_text = last["k"].is_number() ? fmt::format("{} heads", last["k"].get<int64_t>()) : "the kept heads";
  svg::Series hybrid = style("hybrid", "retrieval-aware hybrid (95% interval)");
  svg::Series random = style("random_heads", "random heads, same k (mean, min-max of draws)");
  svg::Series layer = style("layerwise_cache", "layer-wise, the hybrid's KV cache");
  svg::Series pure = style("pure_ssm", "pure SSM");
  double teacher_sum = 0;
  int teacher_n = 0;
  for (const auto& r : rows) {
    const double x = r["bank_tokens"].get<double>();
    const json& m = r["models"];
    if (m.contains("hybrid") && m["hybrid"]["probe"].is_number()) {
      hybrid.points.push_back({x, m["hybrid"]["probe"].get<double>()});
      const json& ci = m["hybrid"]["probe_ci95"];
      hybrid.band.push_back(ci.is_array() ? std::make_pair(ci[0].get<double>(), ci[1].get<double>())
                                          : std::make_pair(m["hybrid"]["probe"].get<double>(),
                                                           m["hybrid"]["probe"].get<double>()));
    }
    if (m.contains("random_heads")) {
      random.points.push_back({x, m["random_heads"]["probe_mean"].get<double>()});
      random.band.push_back({m["random_heads"]["probe_min"].get<double>(), m["random_heads"]["probe_max"].get<double>()});
    }
    if (m.contains("layerwise_cache") && m["layerwise_cache"]["probe"].is_number())
      layer.points.push_back({x, m["layerwise_cache"]["probe"].get<double>()});
    if (m.contains("pure_ssm") && m["pure_ssm"]["probe"].is_number())
      pure.points.push_back({x, m["pure_ssm"]["probe"].get<double>()});
    if (m.contains("teacher") && m["teacher"]["probe"].is_number()) {
      teacher_sum += m["teacher"]["probe"].get<double>();
      ++teacher_n;
    }
  }
  std::vector<svg::Series> series;
  if (teacher_n > 0)
    series.push_back(svg::reference_line("teacher", svg::palette(kind_palette_index("teacher")).colour,
                                         teacher_sum / teacher_n));
  for (svg::Series* s : {&hybrid, &random, &layer, &pure})
    if (!s->points.empty()) series.push_back(*s);
  for (auto& s : series) {  // the four students at one x stay apart
    if (s.name == random.name) s.x_offset_px = -9;
    if (s.name == layer.name) s.x_offset_px = 9;
    if (s.name == pure.name) s.x_offset_px = 18;
  }
  const std::string title = fmt::format("{} against the bank's alignment tokens ({}, last point)",
                                        last.value("probe_label", std::string("probe")), k_text);
  write_text_atomic((fs::path(out_dir) / "curve.svg").string(),
                    svg::line_chart(series, title, "tokens the head bank was aligned on", "accuracy (test keys)", 0, 1,
                                    /*log_x=*/rows.size() > 1,
                                    "Each point: one radistill run --bank at a snapshot of the bank, every student "
                                    "with the same short KD budget. Dashed: the teacher."));

  // curve.md: the table a reader checks.
  std::string md = "# The method against the head bank's training\n\n";
  md += fmt::format("Probe: {} on test keys (heads chosen on select keys). One row per bank snapshot; every student of "
                    "a row got the same KD budget (its run's report.md). Intervals: 95% Wilson over the pooled "
                    "answers; random heads: mean and [min, max] of the draws. **noise**: an interval that reaches "
                    "what guessing scores ({:.1f}% on this probe), or draws that all stay within twice it; in the "
                    "task tables likewise, against each task's own chance.\n\n",
                    last.value("probe_label", std::string("the probe")), 100 * last["probe_chance"].get<double>());
  md += "| bank tokens | k kept | teacher | hybrid | random heads, same k | layer-wise, same cache | pure SSM | "
        "hybrid perplexity (teacher) | cache MB at 4k / 32k: hybrid (teacher) |\n";
  md += "|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n";
  for (const auto& r : rows) {
    const json& m = r["models"];
    const double chance = r["probe_chance"].get<double>();
    auto get = [&](const char* kind) { return m.contains(kind) ? m[kind] : json(nullptr); };
    const json t = get("teacher"), h = get("hybrid"), rh = get("random_heads"), lw = get("layerwise_cache"),
               ps = get("pure_ssm");
    const std::string k = r["k"].is_number() && r["n_heads_total"].is_number()
                              ? fmt::format("{} ({:.1f}%)", r["k"].get<int64_t>(),
                                            100.0 * r["k"].get<double>() / r["n_heads_total"].get<double>())
                              : "n/a";
    const std::string random_text =
        rh.is_object() ? fmt::format("{} [{:.0f}, {:.0f}] ({} draws){}", pct(rh["probe_mean"]),
                                     100 * rh["probe_min"].get<double>(), 100 * rh["probe_max"].get<double>(),
                                     rh["draws"].get<int64_t>(),
                                     rh["probe_max"].get<double>() <= 2 * chance ? " noise" : "")
                       : "not run";
    const std::string ppl = h.is_object() ? fmt::format("{} ({})", number(h["perplexity"], "{:.1f}"),
                                                        t.is_object() ? number(t["perplexity"], "{:.1f}") : "n/a")
                                          : "n/a";
    const std::string cache =
        h.is_object() ? fmt::format("{} / {} ({} / {})", number(h["cache_mb_4096"], "{:.2f}"),
                                    number(h["cache_mb_32768"], "{:.2f}"),
                                    t.is_object() ? number(t["cache_mb_4096"], "{:.1f}") : "n/a",
                                    t.is_object() ? number(t["cache_mb_32768"], "{:.1f}") : "n/a")
                      : "n/a";
    md += fmt::format("| {} | {} | {} | {} | {} | {} | {} | {} | {} |\n", tokens_text(r["bank_tokens"].get<double>()),
                      k, with_ci(t, chance), with_ci(h, chance), random_text, with_ci(lw, chance), with_ci(ps, chance),
                      ppl, cache);
  }
  // The other retrieval tasks (multi-needle, longer needles, KV sizes) of each row's hybrid and teacher.
  md += "\n## Every retrieval task, teacher / hybrid / pure SSM\n\n";
  for (const auto& r : rows) {
    const json& m = r["models"];
    if (!m.contains("teacher")) continue;
    md += fmt::format("Bank at {} tokens (`{}`):\n\n| task | teacher | hybrid | pure SSM |\n|---|---:|---:|---:|\n",
                      tokens_text(r["bank_tokens"].get<double>()), r["run_dir"].get<std::string>());
    for (const auto& item : m["teacher"]["tasks"].items()) {
      const std::string task = item.key();
      const double task_chance = retrieval_chance(task);
      auto of = [&](const char* kind) {
        if (!m.contains(kind) || !m[kind]["tasks"].contains(task)) return std::string("n/a");
        const json& low = m[kind]["tasks_low"];
        const bool noise = low.contains(task) && low[task].get<double>() <= task_chance;
        return pct(m[kind]["tasks"][task]) + (noise ? " noise" : "");
      };
      md += fmt::format("| {} | {} | {} | {} |\n", task, of("teacher"), of("hybrid"), of("pure_ssm"));
    }
    md += "\n";
  }
  md += "![accuracy against bank tokens](curve.svg)\n";
  write_text_atomic((fs::path(out_dir) / "curve.md").string(), md);
}

}  // namespace rad
