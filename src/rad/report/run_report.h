// The report of `radistill run`: report.json (every number), report.md (tables a reader can check
// the paper's claims against) and SVG figures, built from the eval suite's eval.json and the head
// discovery's heads.json.
#pragma once

#include <nlohmann/json.hpp>

#include <map>
#include <optional>
#include <string>

namespace rad {

struct RunReportInput {
  nlohmann::json eval;      // eval.json of evaluate_models (teacher first)
  nlohmann::json heads;     // heads.json of discover_heads
  nlohmann::json settings;  // the run's settings, copied into report.json
  // eval.json model name -> kind (teacher, hybrid, shrunk, pure_ssm, random_heads, layerwise_25,
  // layerwise_50)
  std::map<std::string, std::string> kinds;
  int64_t probe_pairs = 50;  // the default probe size (report.json's probe_accuracy)
  // The probe behind probe_accuracy: "kv" (eval task kv_{probe_pairs}) or "needle" (the mean over
  // the eval's depths of needle_{probe_context_words}w_d*).
  std::string probe_task = "kv";
  int64_t probe_context_words = 0;
  nlohmann::json sufficiency;  // select/sufficiency.json of `radistill select` (null: the budget was given)
  nlohmann::json bank;         // bank.json of `radistill bank` (null: no bank)
  std::string sufficiency_svg_rel;  // relative path of sufficiency.svg from the report (empty: none)
};

// "KV probe (50 pairs)" or "needle probe (40 filler words)": the probe in the report's words.
std::string probe_label(const RunReportInput& input);

// A model's probe accuracy from its eval.json entry (null when the eval did not run that task).
std::optional<double> probe_accuracy(const RunReportInput& input, const nlohmann::json& eval_model);

// The baselines that keep whole attention layers: layerwise_25, layerwise_50, layerwise_cache.
bool is_layerwise(const std::string& kind);
// A model kind in the reader's words ("pure SSM", "layer-wise 25%", ...; other kinds as given).
std::string kind_label(const std::string& kind);
// The palette index every figure gives a model kind (teacher, hybrid, shrunk, pure_ssm, random_heads,
// the layer-wise kinds); -1 for kinds without a fixed style.
int kind_palette_index(const std::string& kind);

// Builds report.json's document.
nlohmann::json build_run_report(const RunReportInput& input);

// Writes memory.svg and accuracy_vs_heads.svg into `out_dir` from report.json's document (so a
// finished run's figures can be drawn again from its report.json alone).
void write_run_figures(const nlohmann::json& report, const std::string& out_dir);

// Writes report.json, report.md, memory.svg and accuracy_vs_heads.svg into `out_dir` (atomically);
// the head heat map is the discovery's heads.svg, referenced from report.md.
void write_run_report(const RunReportInput& input, const std::string& out_dir, const std::string& heads_svg_rel);

}  // namespace rad
