// The report's figures (rad/report/svg, write_run_figures): what issue 32 asks a reader to be able
// to trust, checked on the markup: distinct colours and markers, every label inside the canvas, error
// bars and reference lines, readable log-axis ticks.
#include <fstream>
#include <regex>
#include <set>
#include <sstream>

#include "rad/report/bank_curve.h"
#include "rad/report/run_report.h"
#include "rad/report/svg.h"
#include "rad/tasks/scorer.h"
#include "test_util.h"

namespace rad::test {
namespace {

std::string read(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

double attribute(const std::string& tag, const std::string& name) {
  std::smatch m;
  std::regex re("\\b" + name + "=\"([-0-9.]+)\"");
  if (!std::regex_search(tag, m, re)) return -1;
  return std::stod(m[1]);
}

std::string unescape(std::string s) {
  for (const auto& [from, to] : std::vector<std::pair<std::string, std::string>>{
           {"&lt;", "<"}, {"&gt;", ">"}, {"&quot;", "\""}, {"&amp;", "&"}}) {
    for (size_t p = s.find(from); p != std::string::npos; p = s.find(from, p + to.size())) s.replace(p, from.size(), to);
  }
  return s;
}

// Every <text> (not rotated) must lie inside the canvas, by the same width estimate the writer uses.
// Returns how many texts were checked.
int expect_texts_inside(const std::string& svg_text) {
  std::smatch head;
  EXPECT_TRUE(std::regex_search(svg_text, head, std::regex("<svg [^>]*>"))) << svg_text;
  const double width = attribute(head[0], "width"), height = attribute(head[0], "height");
  EXPECT_GT(width, 0);
  EXPECT_GT(height, 0);
  std::regex text_re("<text([^>]*)>([^<]*)</text>");
  int checked = 0;
  for (auto it = std::sregex_iterator(svg_text.begin(), svg_text.end(), text_re); it != std::sregex_iterator(); ++it) {
    std::string attrs = (*it)[1], body = unescape((*it)[2]);
    if (attrs.find("rotate") != std::string::npos) continue;
    double size = attrs.find("font-size=\"14\"") != std::string::npos ? 14 : 11;
    double w = svg::text_width(body, size), x = attribute(attrs, "x"), y = attribute(attrs, "y");
    double lo = x, hi = x + w;
    if (attrs.find("text-anchor=\"middle\"") != std::string::npos) lo = x - w / 2, hi = x + w / 2;
    if (attrs.find("text-anchor=\"end\"") != std::string::npos) lo = x - w, hi = x;
    EXPECT_GE(lo, 0) << "text \"" << body << "\" starts left of the canvas";
    EXPECT_LE(hi, width) << "text \"" << body << "\" runs past the right edge (" << width << " px)";
    EXPECT_GE(y - size, 0) << "text \"" << body << "\" above the canvas";
    EXPECT_LE(y + 3, height) << "text \"" << body << "\" below the canvas";
    ++checked;
  }
  return checked;
}

TEST(Report, PaletteGivesEachSeriesItsOwnColourAndMarker) {
  std::set<std::string> colours;
  std::set<std::pair<int, bool>> markers;
  for (size_t i = 0; i < 40; ++i) {
    svg::Style s = svg::palette(i);
    EXPECT_TRUE(colours.insert(s.colour).second) << "colour " << s.colour << " reused at index " << i;
    if (i < 2 * svg::kMarkers)
      EXPECT_TRUE(markers.insert({static_cast<int>(s.marker), s.hollow}).second) << "marker reused at index " << i;
  }
  // The report's 7 standard kinds get 7 different shapes, not only colours.
  std::set<int> shapes;
  for (size_t i = 0; i < 7; ++i) shapes.insert(static_cast<int>(svg::palette(i).marker));
  EXPECT_EQ(shapes.size(), 7u);
}

TEST(Report, TicksAreRoundAndLogLabelsReadable) {
  EXPECT_EQ(svg::nice_ticks(0, 39.6), (std::vector<double>{0, 10, 20, 30, 40}));
  EXPECT_EQ(svg::nice_ticks(0, 1).size(), 6u);  // 0, 0.2, ..., 1
  EXPECT_DOUBLE_EQ(svg::nice_ticks(0, 1)[1], 0.2);
  EXPECT_EQ(svg::short_number(128), "128");
  EXPECT_EQ(svg::short_number(1024), "1k");
  EXPECT_EQ(svg::short_number(32768), "32k");
  EXPECT_EQ(svg::short_number(1 << 20), "1M");
  EXPECT_EQ(svg::short_number(0.25), "0.25");
  svg::Series s;
  s.name = "cache";
  s.points = {{128, 0.1}, {2048, 1.0}, {4096, 2.0}, {32768, 16.0}};
  std::string chart = svg::line_chart({s}, "t", "context length", "MB", 0, 16, /*log_x=*/true);
  for (const char* tick : {">128<", ">256<", ">1k<", ">2k<", ">4k<", ">32k<"})
    EXPECT_NE(chart.find(tick), std::string::npos) << tick;
  EXPECT_EQ(chart.find("e+0"), std::string::npos) << "no scientific notation on the axis";
  EXPECT_EQ(chart.find(">32768<"), std::string::npos);
  EXPECT_NE(chart.find("(log scale)"), std::string::npos);
  // On a log axis 2k lies halfway between 1k and 4k.
  auto tick_x = [&](const std::string& label) {
    std::smatch m;
    EXPECT_TRUE(std::regex_search(chart, m, std::regex("<text x=\"([0-9.]+)\"[^>]*>" + label + "</text>"))) << label;
    return std::stod(m[1]);
  };
  EXPECT_NEAR(tick_x("2k") - tick_x("1k"), tick_x("4k") - tick_x("2k"), 0.2);
}

TEST(Report, LegendAndLabelsStayInsideTheCanvas) {
  std::vector<svg::Series> series;
  for (const char* name : {"default-teacher, teacher, 48 heads", "random heads, 7 heads, mean of 5 draws",
                           "WWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWW (wide letters)", "m"}) {
    svg::Series s;
    s.name = name;
    s.points = {{0, 0.1}, {7, 0.8}};
    series.push_back(s);
  }
  std::string chart = svg::line_chart(series, "A title that is longer than the plot area is wide, on purpose, to test it",
                                      "x", "y", 0, 1, false,
                                      "A caption long enough to need wrapping: error bars span the draws from the lowest "
                                      "to the highest, and the dashed line is the teacher's accuracy.");
  EXPECT_GE(expect_texts_inside(chart), 4 + 6 + 2);  // legend names, y ticks, title and caption lines
  std::vector<std::vector<double>> grid(6, std::vector<double>(8, 0.5));
  grid[0][4] = 10.4;
  std::string heat = svg::heat_map(grid, {{0, 4}, {2, 2}},
                                   "Retrieval score (answer log-prob drop, nats), KV retrieval, 50 pairs", "layer",
                                   "query head");
  EXPECT_GE(expect_texts_inside(heat), 6 + 8 + 3 + 2);  // rows, columns, colour bar, title, key
  EXPECT_NE(heat.find("linearGradient"), std::string::npos) << "a continuous colour bar";
  EXPECT_NE(heat.find("kept (outlined)"), std::string::npos);
}

TEST(Report, ErrorBarsAndReferenceLines) {
  svg::Series teacher;
  teacher.name = "teacher";
  teacher.points = {{48, 0.88}};
  teacher.reference = true;
  svg::Series random;
  random.name = "random";
  random.points = {{7, 0.33}};
  random.band = {{0.01, 0.86}};
  random.line = false;
  std::string chart = svg::line_chart({teacher, random}, "t", "heads", "accuracy", 0, 1);
  EXPECT_NE(chart.find("stroke-dasharray"), std::string::npos) << "the reference is dashed";
  // The reference spans the plot: a line from the left edge to the right edge at y(0.88).
  std::smatch m;
  ASSERT_TRUE(std::regex_search(chart, m, std::regex("<line x1=\"([0-9.]+)\" x2=\"([0-9.]+)\" y1=\"([0-9.]+)\" y2=\"\\3\" "
                                                     "stroke=\"[^\"]+\" stroke-width=\"1.6\" stroke-dasharray")));
  EXPECT_GT(std::stod(m[2]) - std::stod(m[1]), 300);
  // The error bar's title carries its range; its end points sit at y(0.01) and y(0.86).
  EXPECT_NE(chart.find("random: 0.01 to 0.86"), std::string::npos);
}

TEST(Report, RunFiguresFromReportJson) {
  // A report.json shaped like a finished run's: every kind once, three random draws.
  nlohmann::json models = nlohmann::json::array();
  auto model = [&](const std::string& name, const std::string& kind, int heads, double acc, double mb32k) {
    models.push_back({{"name", name}, {"kind", kind}, {"heads_kept", heads}, {"probe_accuracy", acc},
                      {"cache_bytes", {{"128", mb32k * 1e6 / 256}, {"4096", mb32k * 1e6 / 8}, {"32768", mb32k * 1e6}}}});
  };
  model("teacher-dir", "teacher", 48, 0.88, 37.7);
  model("hybrid", "hybrid", 7, 0.88, 9.5);
  model("shrunk", "shrunk", 7, 0.85, 9.4);
  model("pure_ssm", "pure_ssm", 0, 0.01, 0.02);
  model("random_heads_1", "random_heads", 7, 0.86, 11.0);
  model("random_heads_2", "random_heads", 7, 0.01, 9.5);
  model("random_heads_3", "random_heads", 7, 0.40, 9.5);
  model("layerwise_25", "layerwise_25", 16, 0.02, 12.6);
  model("layerwise_50", "layerwise_50", 24, 0.86, 18.9);
  model("top_12", "heads_sweep", 12, 0.87, 15.0);
  nlohmann::json report = {{"models", models}, {"probe_label", "KV probe (50 pairs)"}};
  TempDir dir;
  write_run_figures(report, dir.path());
  std::string acc = read(dir.file("accuracy_vs_heads.svg")), mem = read(dir.file("memory.svg"));
  expect_texts_inside(acc);
  expect_texts_inside(mem);
  // One legend entry for the three draws, with their spread as an error bar from 0.01 to 0.86.
  EXPECT_NE(acc.find("random heads, mean of 3 draws"), std::string::npos);
  EXPECT_NE(acc.find("0.01 to 0.86"), std::string::npos);
  EXPECT_NE(acc.find("error bar from the lowest to the highest draw"), std::string::npos) << "the caption says what the bars are";
  EXPECT_NE(acc.find("stroke-dasharray"), std::string::npos) << "the teacher as a reference line";
  // The method's line runs through pure SSM (0), the hybrid (7) and the sweep's top_12.
  EXPECT_NE(acc.find("selected heads (0: pure SSM): (0, 0.01)"), std::string::npos);
  EXPECT_NE(acc.find("selected heads (0: pure SSM): (12, 0.87)"), std::string::npos);
  EXPECT_NE(mem.find(">32k<"), std::string::npos);
  // No colour serves two legend entries.
  std::regex legend_text("<text x=\"[0-9.]+\" y=\"[0-9.]+\">([^<]+)</text>");
  for (const std::string& svg_text : {acc, mem}) {
    std::set<std::string> strokes;
    int entries = 0;
    std::regex sample("<line x1=\"[0-9.]+\" x2=\"[0-9.]+\" y1=\"([0-9.]+)\" y2=\"\\1\" stroke=\"([^\"]+)\" stroke-width=\"(2|1.6)\"( stroke-dasharray=\"7 4\")?/>");
    for (auto it = std::sregex_iterator(svg_text.begin(), svg_text.end(), sample); it != std::sregex_iterator(); ++it) {
      ++entries;
      EXPECT_TRUE(strokes.insert((*it)[2]).second) << "colour " << (*it)[2] << " used by two series";
    }
    EXPECT_GE(entries, 3);
  }
}

// Run reports at two bank snapshots, given out of order: the rows come sorted by bank tokens, the
// probe interval pools the probe's depths, the random draws become mean and range, and the files
// (report.json in run's format plus the curve, curve.md, curve.svg) are written.
TEST(Report, BankCurveRowsAndFiles) {
  auto run_report = [](double hybrid_acc, std::vector<double> random_acc) {
    nlohmann::json models = nlohmann::json::array();
    auto model = [&](const std::string& name, const std::string& kind, int heads, double acc) {
      // The probe (needle at 40 words) at two depths of 50 answers each, plus a multi-needle task.
      nlohmann::json ci = {{"needle_40w_d0.00", {{"accuracy", acc}, {"low", 0}, {"high", 1}, {"n", 50}}},
                           {"needle_40w_d1.00", {{"accuracy", acc}, {"low", 0}, {"high", 1}, {"n", 50}}},
                           {"multineedle_4x200w", {{"accuracy", acc / 2}, {"low", 0}, {"high", 1}, {"n", 50}}}};
      models.push_back({{"name", name}, {"kind", kind}, {"heads_kept", heads}, {"probe_accuracy", acc},
                        {"perplexity", 20.0 + (1 - acc) * 10}, {"tasks_ci95", ci},
                        {"tasks", {{"needle_40w_d0.00", acc}, {"needle_40w_d1.00", acc}, {"multineedle_4x200w", acc / 2}}},
                        {"cache_bytes", {{"4096", heads * 1e5}, {"32768", heads * 8e5}}}});
    };
    model("smollm2", "teacher", 270, 1.0);
    model("hybrid", "hybrid", 6, hybrid_acc);
    model("pure_ssm", "pure_ssm", 0, 0.0);
    model("layerwise_cache", "layerwise_cache", 9, 0.1);
    for (size_t i = 0; i < random_acc.size(); ++i) model(fmt::format("random_heads_{}", i + 1), "random_heads", 6, random_acc[i]);
    return nlohmann::json{{"models", models},
                          {"n_heads_total", 270},
                          {"probe_task", "needle"},
                          {"probe_label", "needle probe (40 filler words)"},
                          {"settings", {{"context_words", 40}}}};
  };
  std::vector<BankCurvePoint> points = {{3000000, "runs/b", run_report(0.5, {0.0, 0.1})},
                                        {1000000, "runs/a", run_report(0.2, {0.0, 0.01, 0.02})}};
  nlohmann::json rows = bank_curve_rows(points);
  ASSERT_EQ(rows.size(), 2u);
  EXPECT_EQ(rows[0]["bank_tokens"], 1000000);
  EXPECT_EQ(rows[0]["k"], 6);
  const auto& h = rows[1]["models"]["hybrid"];
  EXPECT_DOUBLE_EQ(h["probe"].get<double>(), 0.5);
  EXPECT_EQ(h["answers"], 100) << "the two depths pooled, not the multi-needle task";
  tasks::Accuracy pooled{50, 100};
  EXPECT_DOUBLE_EQ(h["probe_ci95"][0].get<double>(), pooled.low());
  EXPECT_DOUBLE_EQ(h["probe_ci95"][1].get<double>(), pooled.high());
  EXPECT_NEAR(rows[0]["models"]["random_heads"]["probe_mean"].get<double>(), 0.01, 1e-12);
  EXPECT_EQ(rows[0]["models"]["random_heads"]["draws"], 3);
  EXPECT_DOUBLE_EQ(rows[1]["models"]["random_heads"]["probe_max"].get<double>(), 0.1);
  EXPECT_DOUBLE_EQ(rows[1]["models"]["hybrid"]["cache_mb_32768"].get<double>(), 4.8);

  TempDir dir;
  write_bank_curve(points, dir.path());
  auto report = nlohmann::json::parse(read(dir.file("report.json")));
  EXPECT_EQ(report["bank_tokens"], 3000000) << "the latest point's run report";
  EXPECT_EQ(report["models"], points[0].report["models"]);
  EXPECT_EQ(report["bank_curve"], rows);
  const std::string md = read(dir.file("curve.md")), svg_text = read(dir.file("curve.svg"));
  EXPECT_NE(md.find("| 1.00M | 6 (2.2%) | 100.0%"), std::string::npos) << md;
  // Guessing: 1% on the needle, 1 in 4 on four facts; what stays near it is called noise.
  EXPECT_DOUBLE_EQ(rows[0]["probe_chance"].get<double>(), 0.01);
  // Four facts: 1 in 4 by guessing; 25% of 50 answers reaches it, 50% does not.
  EXPECT_NE(md.find("| multineedle_4x200w | 50.0% | 25.0% noise | 0.0% noise |"), std::string::npos) << md;
  EXPECT_NE(md.find("| 0.0% [0, 4] noise |"), std::string::npos) << "the pure SSM's probe" << md;
  EXPECT_NE(md.find("1.0% [0, 2] (3 draws) noise"), std::string::npos) << "draws within twice chance" << md;
  EXPECT_NE(md.find("5.0% [0, 10] (2 draws) |"), std::string::npos) << "a draw at 10%: not all noise" << md;
  EXPECT_EQ(md.find("50.0% [40, 60] noise"), std::string::npos) << "the hybrid's 50% is not noise" << md;
  expect_texts_inside(svg_text);
  EXPECT_NE(svg_text.find("(log scale)"), std::string::npos);
  EXPECT_NE(svg_text.find("stroke-dasharray"), std::string::npos) << "the teacher as a reference line";
  EXPECT_RAD_ERROR(write_bank_curve({}, dir.path()), "no run reports");
}

}  // namespace
}  // namespace rad::test
