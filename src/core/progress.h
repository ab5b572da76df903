// A progress bar on stderr for long work: redrawn in place on a terminal, a plain line every few seconds
// otherwise (logs, CI).
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

namespace coenc {

class ProgressBar {
 public:
  // `total` units of work named `unit` ("steps", "tokens"); `label` starts the line.
  ProgressBar(std::string label, int64_t total, std::string unit, bool enabled = true);
  // Reports `done` units and an optional note (e.g. "loss 3.21, 41k tok/s"). Cheap: draws at most 10x a second.
  void update(int64_t done, const std::string& note = "");
  // The work turned out to be `total` units (a training run shortened to fit its time budget).
  void set_total(int64_t total) { total_ = total; }
  // Draws the final state and ends the line.
  void finish(const std::string& note = "");

 private:
  void draw(bool final_line);
  std::string label_, unit_, note_;
  int64_t total_, done_ = 0;
  bool enabled_, tty_;
  std::chrono::steady_clock::time_point start_, last_draw_;
};

// "1m05s", "3h02m", "12.4s".
std::string format_duration(double seconds);

}  // namespace coenc
