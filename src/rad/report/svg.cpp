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

double text_width(const std::string& text, double font_size) {
  // DejaVu Sans advance widths in font units (2048 an em) for printable ASCII, from space (32) to
  // '~' (126). Anything else (UTF-8 sequences: one glyph each) counts as a digit's width.
  static const int kAscii[95] = {
      651,  821,  942,  1716, 1303, 1946, 1597, 563,  799,  799,  1024, 1716, 651,  739,  651,  690,   // ' '../
      1303, 1303, 1303, 1303, 1303, 1303, 1303, 1303, 1303, 1303, 690,  690,  1716, 1716, 1716, 1087,  // 0..?
      2048, 1401, 1405, 1430, 1577, 1294, 1178, 1587, 1540, 604,  604,  1343, 1141, 1767, 1532, 1612,  // @..O
      1235, 1612, 1423, 1300, 1251, 1499, 1401, 2025, 1403, 1251, 1403, 799,  690,  799,  1716, 1024,  // P.._
      1024, 1255, 1300, 1126, 1300, 1260, 721,  1300, 1298, 569,  569,  1186, 569,  1995, 1298, 1253,  // `..o
      1300, 1300, 842,  1067, 803,  1298, 1212, 1675, 1212, 1212, 1075, 1303, 690,  1303, 1716};       // p..~
  double units = 0;
  for (unsigned char c : text) {
    if (c >= 32 && c < 127) units += kAscii[c - 32];
    else if ((c & 0xc0) != 0x80) units += 1303;  // first byte of a UTF-8 sequence (or a control byte)
  }
  return units * font_size / 2048.0;
}

std::vector<double> nice_ticks(double lo, double hi, int target) {
  if (!(hi > lo)) hi = lo + 1;
  double raw = (hi - lo) / std::max(1, target);
  double mag = std::pow(10.0, std::floor(std::log10(raw)));
  double step = mag;
  for (double m : {1.0, 2.0, 2.5, 5.0, 10.0})
    if (m * mag >= raw - 1e-12 * raw) {
      step = m * mag;
      break;
    }
  std::vector<double> out;
  double first = std::floor(lo / step + 1e-9) * step, last = std::ceil(hi / step - 1e-9) * step;
  for (int i = 0; first + i * step <= last + step * 1e-9 && i < 1000; ++i) {
    double v = first + i * step;
    out.push_back(std::abs(v) < step * 1e-9 ? 0.0 : v);
  }
  return out;
}

std::string short_number(double x) {
  if (x == std::floor(x) && std::abs(x) < 1e15) {
    int64_t v = static_cast<int64_t>(x);
    if (v != 0 && v % (1024 * 1024) == 0) return fmt::format("{}M", v / (1024 * 1024));
    if (v != 0 && v % 1024 == 0) return fmt::format("{}k", v / 1024);
    return fmt::format("{}", v);
  }
  return fmt::format("{:.3g}", x);
}

Style palette(size_t i) {
  // Tableau-like colours ordered so that neighbours differ in hue and lightness; black first (the
  // reports give index 0 to the teacher). Past the table, hues step by the golden angle.
  static const char* kColours[] = {"#000000", "#d62728", "#1f77b4", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b",
                                   "#e377c2", "#17becf", "#bcbd22", "#7f7f7f", "#393b79", "#637939", "#843c39"};
  constexpr size_t kN = sizeof(kColours) / sizeof(kColours[0]);
  Style s;
  if (i < kN) {
    s.colour = kColours[i];
  } else {
    double hue = std::fmod(37.0 + 137.508 * static_cast<double>(i - kN), 360.0);
    // Lightness alternates so consecutive generated colours also differ in value.
    s.colour = fmt::format("hsl({:.1f},70%,{}%)", hue, (i - kN) % 2 == 0 ? 38 : 52);
  }
  s.marker = static_cast<Marker>(i % kMarkers);
  s.hollow = (i / kMarkers) % 2 == 1;
  return s;
}

Series reference_line(const std::string& name, const std::string& colour, double y) {
  Series s;
  s.name = name;
  s.colour = colour;
  s.points = {{std::nan(""), y}};
  s.reference = true;
  s.mark = false;
  return s;
}

namespace {

std::string marker_svg(Marker m, bool hollow, double x, double y, const std::string& colour, const std::string& tip) {
  const double r = 4.2;
  std::string fill = hollow ? "white" : colour;
  std::string paint = fmt::format("fill=\"{}\" stroke=\"{}\" stroke-width=\"{}\"", fill, colour, hollow ? 1.6 : 1);
  std::string body;
  auto polygon = [&](const std::vector<std::pair<double, double>>& pts) {
    std::string p;
    for (const auto& [dx, dy] : pts) p += fmt::format("{:.1f},{:.1f} ", x + dx, y + dy);
    return fmt::format("<polygon points=\"{}\" {}>", p, paint);
  };
  std::string close;
  switch (m) {
    case Marker::kCircle: body = fmt::format("<circle cx=\"{:.1f}\" cy=\"{:.1f}\" r=\"{}\" {}>", x, y, r * 0.9, paint); close = "</circle>"; break;
    case Marker::kSquare:
      body = fmt::format("<rect x=\"{:.1f}\" y=\"{:.1f}\" width=\"{:.1f}\" height=\"{:.1f}\" {}>", x - r * 0.8, y - r * 0.8,
                         r * 1.6, r * 1.6, paint);
      close = "</rect>";
      break;
    case Marker::kTriangleUp: body = polygon({{0, -r * 1.1}, {r, r * 0.75}, {-r, r * 0.75}}); close = "</polygon>"; break;
    case Marker::kDiamond: body = polygon({{0, -r * 1.15}, {r, 0}, {0, r * 1.15}, {-r, 0}}); close = "</polygon>"; break;
    case Marker::kTriangleDown: body = polygon({{0, r * 1.1}, {r, -r * 0.75}, {-r, -r * 0.75}}); close = "</polygon>"; break;
    case Marker::kHexagon: {
      std::vector<std::pair<double, double>> pts;
      for (int k = 0; k < 6; ++k) pts.push_back({r * std::cos(M_PI / 3 * k), r * std::sin(M_PI / 3 * k)});
      body = polygon(pts);
      close = "</polygon>";
      break;
    }
    case Marker::kCross:
    case Marker::kPlus: {
      // Stroked shapes have no inside; their hollow variant is drawn inside a ring instead.
      double a = r * 0.95;
      std::string d = m == Marker::kCross ? fmt::format("M{:.1f},{:.1f}L{:.1f},{:.1f}M{:.1f},{:.1f}L{:.1f},{:.1f}", x - a, y - a,
                                                        x + a, y + a, x - a, y + a, x + a, y - a)
                                          : fmt::format("M{:.1f},{:.1f}L{:.1f},{:.1f}M{:.1f},{:.1f}L{:.1f},{:.1f}", x - a * 1.2, y,
                                                        x + a * 1.2, y, x, y - a * 1.2, x, y + a * 1.2);
      std::string ring = hollow ? fmt::format("<circle cx=\"{:.1f}\" cy=\"{:.1f}\" r=\"{:.1f}\" fill=\"white\" stroke=\"{}\" "
                                              "stroke-width=\"1.2\"/>", x, y, r * 1.6, colour)
                                : "";
      body = fmt::format("<g>{}<path d=\"{}\" stroke=\"{}\" stroke-width=\"2.2\" fill=\"none\"/>", ring, d, colour);
      close = "</g>";
      break;
    }
  }
  return body + (tip.empty() ? "" : "<title>" + escape(tip) + "</title>") + close + "\n";
}

std::string fixed(double v, int decimals) { return fmt::format("{:.{}f}", v, std::max(0, decimals)); }

int decimals_for_step(double step) {
  return step >= 1 ? 0 : static_cast<int>(std::ceil(-std::log10(step) - 1e-9));
}

// Greedy word wrap to `width` pixels.
std::vector<std::string> wrap(const std::string& text, double width, double font_size) {
  std::vector<std::string> lines;
  std::string line, word;
  auto flush_word = [&]() {
    if (word.empty()) return;
    std::string candidate = line.empty() ? word : line + " " + word;
    if (!line.empty() && text_width(candidate, font_size) > width) {
      lines.push_back(line);
      line = word;
    } else {
      line = candidate;
    }
    word.clear();
  };
  for (char c : text) {
    if (c == ' ') flush_word();
    else word += c;
  }
  flush_word();
  if (!line.empty()) lines.push_back(line);
  return lines;
}

}  // namespace

std::string heat_map(const std::vector<std::vector<double>>& values, const std::set<std::pair<int64_t, int64_t>>& marked,
                     const std::string& title, const std::string& row_label, const std::string& col_label) {
  const double fs = 11, title_fs = 14;
  const int64_t rows = values.size(), cols = rows ? values[0].size() : 0;
  const int cell = std::max(8, std::min(28, static_cast<int>(560 / std::max<int64_t>(cols, 1))));
  double lo = 0, hi = 0;
  for (const auto& r : values)
    for (double v : r) {
      lo = std::min(lo, v);
      hi = std::max(hi, v);
    }
  // The scale starts at 0 (a head whose ablation helps has a negative score and is drawn white).
  const double base = std::max(0.0, lo);
  if (hi <= base) hi = base + 1e-9;
  auto colour = [&](double v) {
    double t = std::clamp((v - base) / (hi - base), 0.0, 1.0);
    int gb = static_cast<int>(std::lround(255 * (1 - t)));
    return fmt::format("rgb(255,{},{})", gb, gb);
  };
  // Layout: row labels | grid | colour bar with its labels; the canvas is as wide as the widest of
  // the grid block and the title, so nothing is cut.
  const int row_stride = std::max(1, static_cast<int>(std::ceil(13.0 / cell)));
  const int col_stride = std::max(1, static_cast<int>(std::ceil(22.0 / cell)));
  double row_text = text_width(std::to_string(std::max<int64_t>(rows - 1, 0)), fs);
  const double left = 24 + row_text + 10, top = 42;
  const double grid_w = cell * cols, grid_h = cell * rows;
  const double bar_x = left + grid_w + 20, bar_w = 14, bar_h = std::max(100.0, std::min(grid_h, 220.0));
  std::string hi_text = fmt::format("{:.3g}", hi), mid_text = fmt::format("{:.3g}", (hi + base) / 2),
              lo_text = fmt::format("{:.3g}", base);
  const std::string kept_text = "kept (outlined)";
  double labels_w = std::max({text_width(hi_text, fs), text_width(mid_text, fs), text_width(lo_text, fs)});
  double right = std::max(bar_x + bar_w + 6 + labels_w, bar_x + 18 + text_width(kept_text, fs)) + 12;
  double width = std::ceil(std::max(right, 10 + text_width(title, title_fs) + 10));
  double height = std::ceil(std::max(top + grid_h + 40, top + bar_h + 36) + 8);
  std::string s = fmt::format(
      "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{}\" height=\"{}\" font-family=\"sans-serif\" font-size=\"{}\">\n"
      "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n<text x=\"10\" y=\"22\" font-size=\"{}\">{}</text>\n",
      width, height, fs, title_fs, escape(title));
  for (int64_t r = 0; r < rows; ++r) {
    if (r % row_stride == 0)
      s += fmt::format("<text x=\"{}\" y=\"{}\" text-anchor=\"end\">{}</text>\n", left - 5, top + cell * r + cell / 2.0 + 4, r);
    for (int64_t c = 0; c < cols; ++c) {
      bool mark = marked.count({r, c}) > 0;
      s += fmt::format(
          "<rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" fill=\"{}\" stroke=\"{}\" stroke-width=\"{}\">"
          "<title>layer {} head {}: {:.4f}</title></rect>\n",
          left + cell * c, top + cell * r, cell, cell, colour(values[r][c]), mark ? "black" : "#ddd", mark ? 2 : 0.5, r,
          c, values[r][c]);
    }
  }
  for (int64_t c = 0; c < cols; c += col_stride)
    s += fmt::format("<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">{}</text>\n", left + cell * c + cell / 2.0,
                     top + grid_h + 14, c);
  s += fmt::format("<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">{}</text>\n", left + grid_w / 2.0, top + grid_h + 32,
                   escape(col_label));
  s += fmt::format("<text x=\"14\" y=\"{}\" transform=\"rotate(-90 14 {})\" text-anchor=\"middle\">{}</text>\n",
                   top + grid_h / 2.0, top + grid_h / 2.0, escape(row_label));
  // Continuous colour bar: the cell colours interpolate linearly from white to red, as does the gradient.
  s += "<defs><linearGradient id=\"heat\" x1=\"0\" y1=\"1\" x2=\"0\" y2=\"0\"><stop offset=\"0\" stop-color=\"rgb(255,255,255)\"/>"
       "<stop offset=\"1\" stop-color=\"rgb(255,0,0)\"/></linearGradient></defs>\n";
  s += fmt::format("<rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" fill=\"url(#heat)\" stroke=\"#888\" stroke-width=\"0.5\"/>\n",
                   bar_x, top, bar_w, bar_h);
  for (const auto& [frac, text] : std::vector<std::pair<double, std::string>>{{0, hi_text}, {0.5, mid_text}, {1, lo_text}}) {
    double y = top + bar_h * frac;
    s += fmt::format("<line x1=\"{}\" x2=\"{}\" y1=\"{}\" y2=\"{}\" stroke=\"#888\"/><text x=\"{}\" y=\"{}\">{}</text>\n",
                     bar_x + bar_w, bar_x + bar_w + 3, y, y, bar_x + bar_w + 6, y + 4, text);
  }
  double ky = top + bar_h + 18;
  s += fmt::format("<rect x=\"{}\" y=\"{}\" width=\"12\" height=\"12\" fill=\"white\" stroke=\"black\" stroke-width=\"2\"/>"
                   "<text x=\"{}\" y=\"{}\">{}</text>\n",
                   bar_x, ky - 10, bar_x + 18, ky, kept_text);
  return s + "</svg>\n";
}

std::string line_chart(const std::vector<Series>& series, const std::string& title, const std::string& x_label,
                       const std::string& y_label, double y_min, double y_max, bool log_x, const std::string& caption) {
  const double fs = 11, title_fs = 14;
  // Axes: round tick values; the y range widens to the outer ticks.
  std::vector<double> yt = nice_ticks(y_min, y_max, 5);
  const double y_lo = yt.front(), y_hi = yt.back();
  const int y_dec = decimals_for_step(yt.size() > 1 ? yt[1] - yt[0] : 1);
  double x_lo = 1e300, x_hi = -1e300;
  bool x_integer = true;
  for (const auto& se : series) {
    for (const auto& [x, y] : se.points) {
      if (!std::isfinite(x) || (log_x && !(x > 0))) continue;
      x_lo = std::min(x_lo, x);
      x_hi = std::max(x_hi, x);
      x_integer = x_integer && x == std::floor(x);
    }
  }
  if (x_lo > x_hi) x_lo = log_x ? 1 : 0, x_hi = log_x ? 2 : 1;
  std::vector<double> xt;
  if (log_x) {
    // Powers of two: context lengths are, and 1k/2k/4k read at a glance; every n-th when many.
    int e0 = static_cast<int>(std::floor(std::log2(x_lo) + 1e-9)), e1 = static_cast<int>(std::ceil(std::log2(x_hi) - 1e-9));
    if (e1 <= e0) e1 = e0 + 1;
    int stride = std::max(1, (e1 - e0 + 9) / 10);
    for (int e = e0; e <= e1; e += stride) xt.push_back(std::ldexp(1.0, e));
    if (std::log2(xt.back()) < e1) xt.push_back(std::ldexp(xt.back(), stride));
  } else {
    xt = nice_ticks(x_lo, x_hi, 6);
    if (x_integer && xt.size() > 1 && xt[1] - xt[0] < 1) xt = nice_ticks(x_lo, std::max(x_hi, x_lo + 1), static_cast<int>(x_hi - x_lo));
  }
  const double x_a = log_x ? std::log(xt.front()) : xt.front(), x_b = log_x ? std::log(xt.back()) : xt.back();
  const int x_dec = x_integer || log_x ? 0 : decimals_for_step(xt.size() > 1 ? xt[1] - xt[0] : 1);

  std::vector<std::string> y_labels;
  double y_label_w = 0;
  for (double y : yt) {
    y_labels.push_back(fixed(y, y_dec));
    y_label_w = std::max(y_label_w, text_width(y_labels.back(), fs));
  }
  const double left = 34 + y_label_w, top = 40, pw = 380, ph = 250;
  // Legend, boxed, right of the plot, inside the canvas: its width is the measured longest name.
  const double sample_w = 26, row_h = 18;
  double name_w = 0;
  for (const auto& se : series) name_w = std::max(name_w, text_width(se.name, fs));
  const double legend_x = left + pw + 14, legend_w = 8 + sample_w + 6 + name_w + 8;
  const double legend_h = 8 + row_h * series.size();
  double width = legend_x + legend_w + 10;
  width = std::max(width, 10 + text_width(title, title_fs) + 10);
  const double plot_bottom = top + std::max(ph, legend_h);
  std::vector<std::string> caption_lines = caption.empty() ? std::vector<std::string>{} : wrap(caption, width - 20, fs);
  width = std::ceil(width);
  const double height = std::ceil(top + ph + 46 + 16.0 * caption_lines.size() + 6 > plot_bottom + 8
                                      ? top + ph + 46 + 16.0 * caption_lines.size() + 6
                                      : plot_bottom + 8);

  auto px = [&](double x) { return left + pw * ((log_x ? std::log(std::max(x, 1e-300)) : x) - x_a) / (x_b - x_a); };
  auto py = [&](double y) { return top + ph * (1 - (std::clamp(y, y_lo, y_hi) - y_lo) / (y_hi - y_lo)); };
  std::string s = fmt::format(
      "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{}\" height=\"{}\" font-family=\"sans-serif\" font-size=\"{}\">\n"
      "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n<text x=\"10\" y=\"22\" font-size=\"{}\">{}</text>\n",
      width, height, fs, title_fs, escape(title));
  for (size_t i = 0; i < yt.size(); ++i)
    s += fmt::format("<line x1=\"{}\" x2=\"{}\" y1=\"{:.1f}\" y2=\"{:.1f}\" stroke=\"#e6e6e6\"/><text x=\"{}\" y=\"{:.1f}\" "
                     "text-anchor=\"end\">{}</text>\n",
                     left, left + pw, py(yt[i]), py(yt[i]), left - 5, py(yt[i]) + 4, y_labels[i]);
  for (double x : xt)
    s += fmt::format("<line x1=\"{:.1f}\" x2=\"{:.1f}\" y1=\"{}\" y2=\"{}\" stroke=\"#e6e6e6\"/><text x=\"{:.1f}\" y=\"{}\" "
                     "text-anchor=\"middle\">{}</text>\n",
                     px(x), px(x), top, top + ph, px(x), top + ph + 15, log_x ? short_number(x) : fixed(x, x_dec));
  s += fmt::format("<rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" fill=\"none\" stroke=\"#888\"/>\n", left, top, pw, ph);
  s += fmt::format("<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">{}</text>\n", left + pw / 2.0, top + ph + 33,
                   escape(x_label) + (log_x ? " (log scale)" : ""));
  s += fmt::format("<text x=\"14\" y=\"{}\" transform=\"rotate(-90 14 {})\" text-anchor=\"middle\">{}</text>\n",
                   top + ph / 2.0, top + ph / 2.0, escape(y_label));
  for (size_t i = 0; i < caption_lines.size(); ++i)
    s += fmt::format("<text x=\"10\" y=\"{}\" fill=\"#444\">{}</text>\n", top + ph + 52 + 16.0 * i, escape(caption_lines[i]));

  s += fmt::format("<rect x=\"{}\" y=\"{}\" width=\"{:.1f}\" height=\"{}\" fill=\"white\" stroke=\"#ccc\"/>\n", legend_x, top,
                   legend_w, legend_h);
  for (size_t i = 0; i < series.size(); ++i) {
    const Series& se = series[i];
    Style st = palette(i);
    if (se.marker >= 0) {
      Style m = palette(se.marker);
      st.marker = m.marker;
      st.hollow = m.hollow;
    }
    const std::string colour = se.colour.empty() ? st.colour : se.colour;
    const double ly = top + 4 + row_h * i + row_h / 2;
    const double lx = legend_x + 8;
    if (se.reference) {
      if (se.points.empty()) continue;
      double y = se.points.front().second;
      s += fmt::format("<line x1=\"{}\" x2=\"{}\" y1=\"{:.1f}\" y2=\"{:.1f}\" stroke=\"{}\" stroke-width=\"1.6\" "
                       "stroke-dasharray=\"7 4\"><title>{}: {:.4g}</title></line>\n",
                       left, left + pw, py(y), py(y), colour, escape(se.name), y);
      s += fmt::format("<line x1=\"{}\" x2=\"{}\" y1=\"{}\" y2=\"{}\" stroke=\"{}\" stroke-width=\"1.6\" stroke-dasharray=\"7 4\"/>\n",
                       lx, lx + sample_w, ly, ly, colour);
      // The reference's own point (e.g. the teacher at all its heads) is marked too.
      if (se.mark) {
        for (const auto& [x, y] : se.points)
          if (std::isfinite(x) && (!log_x || x > 0))
            s += marker_svg(st.marker, st.hollow, px(x), py(y), colour, fmt::format("{}: ({}, {:.4g})", se.name, short_number(x), y));
        s += marker_svg(st.marker, st.hollow, lx + sample_w / 2, ly, colour, "");
      }
    } else {
      const double off = se.x_offset_px;
      std::vector<std::pair<double, double>> pts;
      for (const auto& [x, y] : se.points)
        if (std::isfinite(x) && (!log_x || x > 0)) pts.push_back({x, y});
      if (se.band.size() == se.points.size())
        for (size_t k = 0; k < se.points.size(); ++k) {
          double x = px(se.points[k].first) + off, y0 = py(se.band[k].first), y1 = py(se.band[k].second);
          s += fmt::format("<path d=\"M{0:.1f},{1:.1f}L{0:.1f},{2:.1f}M{3:.1f},{1:.1f}L{4:.1f},{1:.1f}M{3:.1f},{2:.1f}L{4:.1f},{2:.1f}\" "
                           "stroke=\"{5}\" stroke-width=\"1.4\" fill=\"none\"><title>{6}: {7:.4g} to {8:.4g}</title></path>\n",
                           x, y0, y1, x - 4, x + 4, colour, escape(se.name), se.band[k].first, se.band[k].second);
        }
      if (se.line && pts.size() > 1) {
        std::string path;
        for (const auto& [x, y] : pts) path += fmt::format("{}{:.1f},{:.1f} ", path.empty() ? "M" : "L", px(x) + off, py(y));
        s += fmt::format("<path d=\"{}\" fill=\"none\" stroke=\"{}\" stroke-width=\"2\"/>\n", path, colour);
      }
      if (se.mark)
        for (const auto& [x, y] : pts)
          s += marker_svg(st.marker, st.hollow, px(x) + off, py(y), colour, fmt::format("{}: ({}, {:.4g})", se.name, short_number(x), y));
      if (se.line && pts.size() > 1)
        s += fmt::format("<line x1=\"{}\" x2=\"{}\" y1=\"{}\" y2=\"{}\" stroke=\"{}\" stroke-width=\"2\"/>\n", lx, lx + sample_w, ly,
                         ly, colour);
      if (!se.band.empty())
        s += fmt::format("<path d=\"M{0},{1}L{0},{2}M{3},{1}L{4},{1}M{3},{2}L{4},{2}\" stroke=\"{5}\" stroke-width=\"1.4\"/>\n",
                         lx + sample_w / 2, ly - 6, ly + 6, lx + sample_w / 2 - 4, lx + sample_w / 2 + 4, colour);
      if (se.mark) s += marker_svg(st.marker, st.hollow, lx + sample_w / 2, ly, colour, "");
    }
    s += fmt::format("<text x=\"{}\" y=\"{}\">{}</text>\n", lx + sample_w + 6, ly + 4, escape(se.name));
  }
  return s + "</svg>\n";
}

}  // namespace rad::svg
