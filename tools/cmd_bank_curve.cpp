// `radistill bank-curve RUN_DIR... --out DIR`: the runs of `radistill run --bank` at snapshots of one
// head bank, side by side against the tokens each snapshot had aligned on (rad/report/bank_curve.h).
#include <filesystem>

#include "commands.h"
#include "rad/core/atomic_file.h"
#include "rad/core/error.h"
#include "rad/core/log.h"
#include "rad/report/bank_curve.h"

namespace rad::cli {
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

json read_json(const fs::path& file, const std::string& expected) {
  RAD_CHECK(fs::is_regular_file(file), "{}: no such file (expected {})", file.string(), expected);
  json j = json::parse(read_text_file(file.string()), nullptr, false);
  RAD_CHECK(!j.is_discarded() && j.is_object(), "{}: not a JSON object (expected {})", file.string(), expected);
  return j;
}

}  // namespace

void register_bank_curve(CLI::App& app) {
  auto* cmd = app.add_subcommand("bank-curve", "Runs of `radistill run --bank` at snapshots of one head bank, side by "
                                               "side: accuracy against the bank's tokens (curve.svg, curve.md, report.json)");
  static std::vector<std::string> run_dirs;
  static std::string out;
  cmd->add_option("RUN_DIR", run_dirs, "Finished `radistill run --bank SNAPSHOT` directories")->required();
  cmd->add_option("--out", out, "Output directory")->required();
  cmd->callback([] {
    std::vector<BankCurvePoint> points;
    for (const auto& dir : run_dirs) {
      BankCurvePoint p;
      p.run_dir = dir;
      p.report = read_json(fs::path(dir) / "report.json", "the report.json of a finished `radistill run`");
      const json run = read_json(fs::path(dir) / "run.json", "the run.json of `radistill run`");
      RAD_CHECK(run.contains("bank") && run["bank"].is_string(),
                "{}/run.json: no \"bank\" (this run aligned its own bank; expected a run of `radistill run --bank`)", dir);
      const fs::path bank_json = fs::path(run["bank"].get<std::string>()) / "bank.json";
      const json bank = read_json(bank_json, "the bank.json of `radistill bank` or of one of its snapshots");
      RAD_CHECK(bank.contains("tokens") && bank["tokens"].is_number_integer(),
                "{}: no integer \"tokens\" (expected the tokens the bank was aligned on)", bank_json.string());
      p.bank_tokens = bank["tokens"].get<int64_t>();
      points.push_back(std::move(p));
    }
    write_bank_curve(points, out);
    log_info("{} runs side by side: {}/curve.md, {}/curve.svg, {}/report.json", points.size(), out, out, out);
  });
}

}  // namespace rad::cli
