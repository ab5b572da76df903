#include "train/loss_curve.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <sstream>

namespace coenc {

std::string loss_curve_svg(const std::vector<LossSeries>& series, const std::string& title) {
  const double w = 720, h = 420, left = 70, right = 20, top = 40, bottom = 50;
  double x0 = std::numeric_limits<double>::infinity(), x1 = -x0, y0 = x0, y1 = -x0;
  for (const auto& s : series)
    for (const auto& [x, y] : s.xy)
      if (std::isfinite(x) && std::isfinite(y)) {
        x0 = std::min(x0, x), x1 = std::max(x1, x), y0 = std::min(y0, y), y1 = std::max(y1, y);
      }
  if (!std::isfinite(x0)) x0 = 0, x1 = 1, y0 = 0, y1 = 1;
  if (x1 <= x0) x1 = x0 + 1;
  if (y1 <= y0) y1 = y0 + 1;
  auto px = [&](double x) { return left + (x - x0) / (x1 - x0) * (w - left - right); };
  auto py = [&](double y) { return h - bottom - (y - y0) / (y1 - y0) * (h - top - bottom); };
  std::ostringstream o;
  o.precision(6);
  o << "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" << w << "\" height=\"" << h << "\" viewBox=\"0 0 " << w
    << " " << h << "\" font-family=\"sans-serif\" font-size=\"12\">\n"
    << "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
    << "<text x=\"" << w / 2 << "\" y=\"22\" text-anchor=\"middle\" font-size=\"14\">" << title << "</text>\n"
    << "<g stroke=\"#444\"><line x1=\"" << left << "\" y1=\"" << h - bottom << "\" x2=\"" << w - right << "\" y2=\""
    << h - bottom << "\"/><line x1=\"" << left << "\" y1=\"" << top << "\" x2=\"" << left << "\" y2=\"" << h - bottom
    << "\"/></g>\n"
    << "<text x=\"" << left << "\" y=\"" << h - bottom + 18 << "\" text-anchor=\"middle\">" << x0 << "</text>\n"
    << "<text x=\"" << w - right << "\" y=\"" << h - bottom + 18 << "\" text-anchor=\"end\">" << x1 << "</text>\n"
    << "<text x=\"" << (left + w - right) / 2 << "\" y=\"" << h - 12 << "\" text-anchor=\"middle\">step</text>\n"
    << "<text x=\"" << left - 6 << "\" y=\"" << h - bottom << "\" text-anchor=\"end\">" << y0 << "</text>\n"
    << "<text x=\"" << left - 6 << "\" y=\"" << top + 4 << "\" text-anchor=\"end\">" << y1 << "</text>\n"
    << "<text x=\"16\" y=\"" << (top + h - bottom) / 2 << "\" transform=\"rotate(-90 16 " << (top + h - bottom) / 2
    << ")\" text-anchor=\"middle\">loss</text>\n";
  double legend_y = top + 8;
  for (const auto& s : series) {
    o << "<polyline fill=\"none\" stroke=\"" << s.color << "\" stroke-width=\"1.5\" points=\"";
    for (const auto& [x, y] : s.xy)
      if (std::isfinite(x) && std::isfinite(y)) o << px(x) << "," << py(y) << " ";
    o << "\"/>\n";
    if (s.xy.size() <= 40)
      for (const auto& [x, y] : s.xy)
        if (std::isfinite(x) && std::isfinite(y))
          o << "<circle cx=\"" << px(x) << "\" cy=\"" << py(y) << "\" r=\"2.5\" fill=\"" << s.color << "\"/>\n";
    o << "<line x1=\"" << w - right - 150 << "\" y1=\"" << legend_y << "\" x2=\"" << w - right - 130 << "\" y2=\""
      << legend_y << "\" stroke=\"" << s.color << "\" stroke-width=\"2\"/><text x=\"" << w - right - 125
      << "\" y=\"" << legend_y + 4 << "\">" << s.name << "</text>\n";
    legend_y += 16;
  }
  o << "</svg>\n";
  return o.str();
}

}  // namespace coenc
