#include "rad/report/svg.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>

namespace rad::svg {

std::string escape(const std::string& text) {
  std::string out;
  for (char c : text) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      default: out += c;
    }
  }
  return out;
}

std::string heat_map(const std::vector<std::vector<double>>& values, const std::set<std::pair<int64_t, int64_t>>& marked,
                     const std::string& title, const std::string& row_label, const std::string& col_label) {
  const int64_t rows = values.size(), cols = rows ? values[0].size() : 0;
  const int cell = std::max(8, std::min(28, static_cast<int>(560 / std::max<int64_t>(cols, 1))));
  const int left = 70, top = 40, legend = 60;
  const int width = left + cell * cols + legend + 20, height = top + cell * rows + 50;
  double lo = 0, hi = 0;
  for (const auto& r : values)
    for (double v : r) {
      lo = std::min(lo, v);
      hi = std::max(hi, v);
    }
  if (hi <= lo) hi = lo + 1e-9;
  auto colour = [&](double v) {
    double t = std::clamp((v - std::max(0.0, lo)) / (hi - std::max(0.0, lo)), 0.0, 1.0);
    if (v < 0) t = 0;
    int g = static_cast<int>(255 * (1 - t)), r = 255, b = static_cast<int>(255 * (1 - t));
    return fmt::format("rgb({},{},{})", r, g, b);
  };
  std::string s = fmt::format(
      "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{}\" height=\"{}\" font-family=\"sans-serif\" font-size=\"11\">\n"
      "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n<text x=\"{}\" y=\"20\" font-size=\"14\">{}</text>\n",
      width, height, left, escape(title));
  for (int64_t r = 0; r < rows; ++r) {
    s += fmt::format("<text x=\"{}\" y=\"{}\" text-anchor=\"end\">{}</text>\n", left - 6, top + cell * r + cell * 0.7, r);
    for (int64_t c = 0; c < cols; ++c) {
      bool mark = marked.count({r, c}) > 0;
      s += fmt::format(
          "<rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" fill=\"{}\" stroke=\"{}\" stroke-width=\"{}\">"
          "<title>layer {} head {}: {:.4f}</title></rect>\n",
          left + cell * c, top + cell * r, cell, cell, colour(values[r][c]), mark ? "black" : "#ddd", mark ? 2 : 0.5, r,
          c, values[r][c]);
    }
  }
  for (int64_t c = 0; c < cols; c += std::max<int64_t>(1, cols / 16))
    s += fmt::format("<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">{}</text>\n", left + cell * c + cell / 2.0,
                     top + cell * rows + 14, c);
  s += fmt::format("<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">{}</text>\n", left + cell * cols / 2.0,
                   top + cell * rows + 32, escape(col_label));
  s += fmt::format("<text x=\"16\" y=\"{}\" transform=\"rotate(-90 16 {})\" text-anchor=\"middle\">{}</text>\n",
                   top + cell * rows / 2.0, top + cell * rows / 2.0, escape(row_label));
  int lx = left + cell * cols + 16;
  for (int i = 0; i < 10; ++i) {
    double v = hi - (hi - std::max(0.0, lo)) * i / 9.0;
    s += fmt::format("<rect x=\"{}\" y=\"{}\" width=\"14\" height=\"10\" fill=\"{}\"/>\n", lx, top + 10 * i, colour(v));
  }
  s += fmt::format("<text x=\"{}\" y=\"{}\">{:.3f}</text>\n<text x=\"{}\" y=\"{}\">{:.3f}</text>\n", lx + 18, top + 9, hi,
                   lx + 18, top + 99, std::max(0.0, lo));
  s += fmt::format("<text x=\"{}\" y=\"{}\">outlined: kept</text>\n", lx - 4, top + 118);
  return s + "</svg>\n";
}

std::string line_chart(const std::vector<Series>& series, const std::string& title, const std::string& x_label,
                       const std::string& y_label, double y_min, double y_max, bool log_x) {
  // The legend sits right of the plot; its width follows the longest name (about 6.5 px a
  // character at this font size), so no name is cut off at the canvas edge.
  size_t longest = 0;
  for (const auto& se : series) longest = std::max(longest, se.name.size());
  const int right = std::max(150, 36 + static_cast<int>(6.5 * static_cast<double>(longest)));
  const int pw = 410 - 60, H = 340, left = 60, top = 36, bottom = 46, W = left + pw + right;
  const int ph = H - top - bottom;
  double x_lo = 1e300, x_hi = -1e300;
  for (const auto& se : series)
    for (const auto& [x, y] : se.points) {
      x_lo = std::min(x_lo, x);
      x_hi = std::max(x_hi, x);
    }
  if (x_lo > x_hi) x_lo = 0, x_hi = 1;
  auto fx = [&](double x) { return log_x ? std::log(std::max(x, 1e-12)) : x; };
  double a = fx(x_lo), b = fx(x_hi);
  if (b <= a) b = a + 1;
  auto px = [&](double x) { return left + pw * (fx(x) - a) / (b - a); };
  auto py = [&](double y) { return top + ph * (1 - (std::clamp(y, y_min, y_max) - y_min) / (y_max - y_min)); };
  std::string s = fmt::format(
      "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{}\" height=\"{}\" font-family=\"sans-serif\" font-size=\"11\">\n"
      "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n<text x=\"{}\" y=\"20\" font-size=\"14\">{}</text>\n"
      "<rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" fill=\"none\" stroke=\"#888\"/>\n",
      W, H, left, escape(title), left, top, pw, ph);
  for (int i = 0; i <= 4; ++i) {
    double y = y_min + (y_max - y_min) * i / 4.0;
    s += fmt::format("<line x1=\"{}\" x2=\"{}\" y1=\"{}\" y2=\"{}\" stroke=\"#eee\"/><text x=\"{}\" y=\"{}\" text-anchor=\"end\">{:.3g}</text>\n",
                     left, left + pw, py(y), py(y), left - 4, py(y) + 4, y);
  }
  std::set<double> xs;
  for (const auto& se : series)
    for (const auto& [x, y] : se.points) xs.insert(x);
  for (double x : xs)
    s += fmt::format("<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">{}</text>\n", px(x), top + ph + 14,
                     x == std::floor(x) && std::abs(x) < 1e9 ? fmt::format("{:.0f}", x) : fmt::format("{:.4g}", x));
  s += fmt::format("<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">{}</text>\n", left + pw / 2.0, H - 8, escape(x_label));
  s += fmt::format("<text x=\"14\" y=\"{}\" transform=\"rotate(-90 14 {})\" text-anchor=\"middle\">{}</text>\n",
                   top + ph / 2.0, top + ph / 2.0, escape(y_label));
  int li = 0;
  for (const auto& se : series) {
    if (!se.band.empty() && se.band.size() == se.points.size()) {
      std::string poly;
      for (size_t i = 0; i < se.points.size(); ++i) poly += fmt::format("{},{} ", px(se.points[i].first), py(se.band[i].second));
      for (size_t i = se.points.size(); i-- > 0;) poly += fmt::format("{},{} ", px(se.points[i].first), py(se.band[i].first));
      s += fmt::format("<polygon points=\"{}\" fill=\"{}\" opacity=\"0.15\"/>\n", poly, se.colour);
    }
    std::string path;
    for (const auto& [x, y] : se.points) path += fmt::format("{}{},{} ", path.empty() ? "M" : "L", px(x), py(y));
    s += fmt::format("<path d=\"{}\" fill=\"none\" stroke=\"{}\" stroke-width=\"2\"/>\n", path, se.colour);
    for (const auto& [x, y] : se.points)
      s += fmt::format("<circle cx=\"{}\" cy=\"{}\" r=\"3\" fill=\"{}\"><title>{}: ({:.4g}, {:.4g})</title></circle>\n", px(x),
                       py(y), se.colour, escape(se.name), x, y);
    s += fmt::format("<rect x=\"{}\" y=\"{}\" width=\"12\" height=\"3\" fill=\"{}\"/><text x=\"{}\" y=\"{}\">{}</text>\n",
                     left + pw + 10, top + 10 + 18 * li, se.colour, left + pw + 26, top + 14 + 18 * li, escape(se.name));
    ++li;
  }
  return s + "</svg>\n";
}

}  // namespace rad::svg
