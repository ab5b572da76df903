// Metrics of the evaluation harness, each as its reference defines it (include/coenc/eval.h).
#include <algorithm>
#include <array>
#include <cctype>
#include <cmath>
#include <map>
#include <sstream>

#include "coenc/error.h"
#include "coenc/eval.h"

namespace coenc {

std::string squad_normalize(const std::string& text) {
  // lower, remove punctuation, remove articles, fix whitespace (evaluate-v1.1.py applies them in this order).
  std::string s;
  for (char ch : text) {
    const auto c = static_cast<unsigned char>(ch);
    if (std::ispunct(c)) continue;
    s += static_cast<char>(std::tolower(c));
  }
  std::istringstream words(s);
  std::string w, out;
  while (words >> w) {
    if (w == "a" || w == "an" || w == "the") continue;
    out += (out.empty() ? "" : " ") + w;
  }
  return out;
}

namespace {

std::vector<std::string> split_words(const std::string& s) {
  std::istringstream in(s);
  std::vector<std::string> out;
  std::string w;
  while (in >> w) out.push_back(w);
  return out;
}

double f1_one(const std::string& prediction, const std::string& answer) {
  const auto p = split_words(squad_normalize(prediction)), g = split_words(squad_normalize(answer));
  if (p.empty() || g.empty()) return p == g ? 1.0 : 0.0;
  std::map<std::string, int64_t> count;
  for (const auto& w : g) ++count[w];
  int64_t same = 0;
  for (const auto& w : p)
    if (count[w]-- > 0) ++same;
  if (same == 0) return 0;
  const double precision = static_cast<double>(same) / static_cast<double>(p.size());
  const double recall = static_cast<double>(same) / static_cast<double>(g.size());
  return 2 * precision * recall / (precision + recall);
}

}  // namespace

double exact_match(const std::string& prediction, const std::vector<std::string>& answers) {
  const std::string p = squad_normalize(prediction);
  for (const auto& a : answers)
    if (squad_normalize(a) == p) return 1;
  return 0;
}

double f1_score(const std::string& prediction, const std::vector<std::string>& answers) {
  double best = 0;
  for (const auto& a : answers) best = std::max(best, f1_one(prediction, a));
  return best;
}

double corpus_bleu4(const std::vector<TokenIds>& candidates, const std::vector<TokenIds>& references) {
  std::array<double, 4> matched{}, total{};
  double cand_len = 0, ref_len = 0;
  for (size_t i = 0; i < candidates.size() && i < references.size(); ++i) {
    const TokenIds &c = candidates[i], &r = references[i];
    cand_len += static_cast<double>(c.size());
    ref_len += static_cast<double>(r.size());
    for (size_t n = 1; n <= 4; ++n) {
      if (c.size() < n) continue;
      std::map<TokenIds, int64_t> ref_counts;
      for (size_t k = 0; k + n <= r.size(); ++k) ++ref_counts[TokenIds(r.begin() + k, r.begin() + k + n)];
      for (size_t k = 0; k + n <= c.size(); ++k) {
        auto it = ref_counts.find(TokenIds(c.begin() + k, c.begin() + k + n));
        if (it != ref_counts.end() && it->second > 0) {
          --it->second;
          ++matched[n - 1];
        }
      }
      total[n - 1] += static_cast<double>(c.size() - n + 1);
    }
  }
  double log_sum = 0;
  for (int n = 0; n < 4; ++n) {
    if (matched[n] == 0 || total[n] == 0) return 0;
    log_sum += std::log(matched[n] / total[n]);
  }
  const double brevity = cand_len < ref_len ? std::exp(1 - ref_len / std::max(cand_len, 1.0)) : 1.0;
  return brevity * std::exp(log_sum / 4);
}

std::optional<double> gain_retained(double nll_none, double nll_compressed, double nll_full) {
  const double full_gain = nll_none - nll_full;
  if (!(full_gain > 0)) return std::nullopt;
  return (nll_none - nll_compressed) / full_gain;
}

std::string target_position_bucket(int64_t position) {
  COENC_CHECK_CODE(position >= 1, Internal, "target positions count from 1, got {}", position);
  if (position <= 2) return std::to_string(position);
  int64_t high = 4;
  while (high < position) high *= 2;
  return std::to_string(high / 2 + 1) + "-" + std::to_string(high);
}

MeanError mean_and_error(const std::vector<double>& values) {
  MeanError out;
  const auto n = static_cast<double>(values.size());
  if (values.empty()) return {std::nan(""), std::nan("")};
  for (double v : values) out.mean += v;
  out.mean /= n;
  if (values.size() < 2) return {out.mean, std::nan("")};
  double squares = 0;
  for (double v : values) squares += (v - out.mean) * (v - out.mean);
  out.error = std::sqrt(squares / (n - 1) / n);
  return out;
}

MeanError paired_difference(const std::map<int64_t, double>& a, const std::map<int64_t, double>& b) {
  std::vector<double> differences;
  for (const auto& [item, score] : b) {
    auto it = a.find(item);
    if (it != a.end()) differences.push_back(score - it->second);
  }
  return mean_and_error(differences);
}

}  // namespace coenc
