#include "core/progress.h"

#include <unistd.h>

#include <cstdio>

namespace coenc {

std::string format_duration(double s) {
  char buf[32];
  if (s < 60) std::snprintf(buf, sizeof buf, "%.1fs", s);
  else if (s < 3600) std::snprintf(buf, sizeof buf, "%dm%02ds", static_cast<int>(s) / 60, static_cast<int>(s) % 60);
  else std::snprintf(buf, sizeof buf, "%dh%02dm", static_cast<int>(s) / 3600, static_cast<int>(s) / 60 % 60);
  return buf;
}

ProgressBar::ProgressBar(std::string label, int64_t total, std::string unit, bool enabled)
    : label_(std::move(label)), unit_(std::move(unit)), total_(total), enabled_(enabled),
      tty_(isatty(STDERR_FILENO) != 0), start_(std::chrono::steady_clock::now()), last_draw_() {}

void ProgressBar::update(int64_t done, const std::string& note) {
  done_ = done;
  note_ = note;
  if (!enabled_) return;
  const auto now = std::chrono::steady_clock::now();
  // On a terminal redraw 10x a second; in a log, one line every 10 seconds.
  const auto every = tty_ ? std::chrono::milliseconds(100) : std::chrono::milliseconds(10000);
  if (now - last_draw_ < every) return;
  last_draw_ = now;
  draw(false);
}

void ProgressBar::finish(const std::string& note) {
  if (!note.empty()) note_ = note;
  if (enabled_) draw(true);
  enabled_ = false;
}

void ProgressBar::draw(bool final_line) {
  const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  const double frac = total_ > 0 ? static_cast<double>(done_) / static_cast<double>(total_) : 0;
  std::string bar;
  const int width = 24, filled = static_cast<int>(frac * width + 0.5);
  for (int i = 0; i < width; ++i) bar += i < filled ? "#" : "-";
  std::string eta = "?";
  if (done_ > 0 && total_ > done_) eta = format_duration(elapsed / frac - elapsed);
  else if (done_ >= total_) eta = "0s";
  std::fprintf(stderr, "%s%s [%s] %lld/%lld %s %3.0f%% %s elapsed, ETA %s%s%s%s", tty_ ? "\r\033[K" : "",
               label_.c_str(), bar.c_str(), static_cast<long long>(done_), static_cast<long long>(total_),
               unit_.c_str(), frac * 100, format_duration(elapsed).c_str(), eta.c_str(), note_.empty() ? "" : " | ",
               note_.c_str(), (final_line || !tty_) ? "\n" : "");
  std::fflush(stderr);
}

}  // namespace coenc
