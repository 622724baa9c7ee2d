// Minimal SVG charts for reports (no plotting package in Debian fits a C++ CLI; these are a few
// dozen lines of markup each).
#pragma once

#include <set>
#include <string>
#include <utility>
#include <vector>

namespace rad::svg {

// Heat map of values[row][col] (rows = layers, cols = heads), colour from white (min) to red (max);
// cells in `marked` get a black outline.
std::string heat_map(const std::vector<std::vector<double>>& values, const std::set<std::pair<int64_t, int64_t>>& marked,
                     const std::string& title, const std::string& row_label, const std::string& col_label);

struct Series {
  std::string name;
  std::string colour;
  std::vector<std::pair<double, double>> points;  // (x, y)
  std::vector<std::pair<double, double>> band;    // optional (y_low, y_high) per point
};

// Line chart with markers; y in [y_min, y_max]; x on a linear (or log, when log_x) axis.
std::string line_chart(const std::vector<Series>& series, const std::string& title, const std::string& x_label,
                       const std::string& y_label, double y_min, double y_max, bool log_x = false);

// Escapes &, <, > and quotes for text nodes and attributes.
std::string escape(const std::string& text);

}  // namespace rad::svg
