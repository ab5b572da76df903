// The loss curve of a training run as a small standalone SVG (no plotting dependency).
#pragma once

#include <string>
#include <utility>
#include <vector>

namespace coenc {

struct LossSeries {
  std::string name;                            // legend text, e.g. "train"
  std::string color;                           // any SVG colour, e.g. "#1f77b4"
  std::vector<std::pair<double, double>> xy;   // (step, loss)
};

// An SVG document: each series as a polyline (with dots when it has few points), shared axes with min / max
// labels, a legend. Non-finite points are dropped.
std::string loss_curve_svg(const std::vector<LossSeries>& series, const std::string& title);

}  // namespace coenc
