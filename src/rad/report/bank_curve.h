// The method against the head bank's training (issue 29): `radistill run --bank SNAPSHOT` at several
// snapshots of one long `radistill bank` job gives one run report per snapshot; this puts them side
// by side as a curve of probe accuracy against the tokens the bank was aligned on (the hybrid, the
// random-heads draws, the layer-wise hybrid at the hybrid's cache, the pure SSM; the teacher as a
// reference), a table with intervals, and report.json: the latest point's run report (`run`'s format)
// with the curve's rows added under "bank_curve".
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <string>
#include <vector>

namespace rad {

struct BankCurvePoint {
  int64_t bank_tokens = 0;  // tokens the bank had aligned on (its bank.json "tokens")
  std::string run_dir;      // the run's --out
  nlohmann::json report;    // its report.json
};

// One row per point, sorted by bank tokens: the kept set's size, and per model kind its probe
// accuracy with a 95% interval (pooled answers), the other retrieval tasks, perplexity and cache.
nlohmann::json bank_curve_rows(std::vector<BankCurvePoint> points);

// Writes curve.svg, curve.md and report.json into `out_dir` (atomically).
void write_bank_curve(const std::vector<BankCurvePoint>& points, const std::string& out_dir);

}  // namespace rad
