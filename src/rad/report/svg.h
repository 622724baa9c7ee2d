// Minimal SVG charts for reports (no plotting package in Debian fits a C++ CLI; these are a few
// dozen lines of markup each).
//
// What a reader must be able to trust (issue 32): every series has its own colour and marker (no
// colour reused within a chart), the legend and every label lie inside the canvas (the canvas grows
// to the measured text, see text_width), spreads are drawn as error bars, reference values as
// dashed horizontal lines, and a log axis has readable tick labels (128, 1k, 32k).
#pragma once

#include <cstdint>
#include <set>
#include <string>
#include <utility>
#include <vector>

namespace rad::svg {

enum class Marker { kCircle, kSquare, kTriangleUp, kDiamond, kTriangleDown, kCross, kPlus, kHexagon };
constexpr int kMarkers = 8;

struct Style {
  std::string colour;
  Marker marker = Marker::kCircle;
  bool hollow = false;  // from the second round of markers on, so marker + fill stays unique
};

// The i-th style: colours from a table of 14 well-separated ones, then generated hues, so no two
// indices share a colour; markers cycle through the 8 shapes, filled then hollow.
Style palette(size_t i);

struct Series {
  std::string name;
  std::string colour;  // empty: the palette's colour for the series' index
  std::vector<std::pair<double, double>> points;  // (x, y)
  // Optional (y_low, y_high) per point: drawn as error bars (vertical line with caps).
  std::vector<std::pair<double, double>> band;
  int marker = -1;         // index into the palette's markers; -1: the series' index
  bool line = true;        // connect the points
  // A horizontal reference line (dashed, across the whole plot) at points[0]'s y; its points (with
  // a finite x) count towards the x range and are marked unless `mark` is false.
  bool reference = false;
  double x_offset_px = 0;  // horizontal shift of the markers, so series at the same x stay apart
  bool mark = true;        // draw markers at the points
};

// A dashed horizontal reference at `y` (e.g. the teacher's accuracy), with no point of its own.
Series reference_line(const std::string& name, const std::string& colour, double y);

// Heat map of values[row][col] (rows = layers, cols = heads), colour from white (0 or the minimum)
// to red (the maximum), with a continuous colour bar; cells in `marked` get a black outline.
std::string heat_map(const std::vector<std::vector<double>>& values, const std::set<std::pair<int64_t, int64_t>>& marked,
                     const std::string& title, const std::string& row_label, const std::string& col_label);

// Line chart with markers; y in [y_min, y_max] (widened to round tick values); x on a linear axis
// (round tick values) or, when log_x, a log axis with ticks at powers of two labelled 128, 1k, 32k.
// `caption` (optional) is printed under the x label, e.g. what the error bars are.
std::string line_chart(const std::vector<Series>& series, const std::string& title, const std::string& x_label,
                       const std::string& y_label, double y_min, double y_max, bool log_x = false,
                       const std::string& caption = "");

// Escapes &, <, > and quotes for text nodes and attributes.
std::string escape(const std::string& text);

// Width in pixels of `text` at `font_size` in DejaVu Sans (the sans-serif of Debian's rsvg-convert
// and of most Linux browsers; wider than Arial/Helvetica, so a box sized by it fits those too).
double text_width(const std::string& text, double font_size);

// Tick values: round steps (1, 2, 5 x 10^n) covering [lo, hi], about `target` of them.
std::vector<double> nice_ticks(double lo, double hi, int target = 5);
// A context-length style label: 1024 -> "1k", 32768 -> "32k", 1048576 -> "1M", 128 -> "128".
std::string short_number(double x);

}  // namespace rad::svg
