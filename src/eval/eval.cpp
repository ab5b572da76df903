// The evaluation harness (docs/eval.md): every task runs each item under every condition with the same
// decoder — no context, the full context, the context compressed at each ratio, and the context truncated to
// the decoder's window where it does not fit — and reports quality next to cost (decoder positions, KV-cache
// bytes, seconds).
#include <algorithm>
#include <chrono>
#include <cmath>
#include <map>
#include <random>

#include "coenc/error.h"
#include "coenc/eval.h"
#include "coenc/generate.h"
#include "coenc/pipeline.h"
#include "coenc/session.h"
#include "core/progress.h"

namespace coenc {

using nlohmann::json;

namespace {

using clock = std::chrono::steady_clock;

double since(clock::time_point t0) {
  return std::chrono::duration<double>(clock::now() - t0).count();
}

// Running sums of one condition: its metrics and its cost.
struct Condition {
  std::map<std::string, double> sum;  // metric -> sum over items
  std::map<std::string, int64_t> count;
  std::map<std::string, std::map<int64_t, double>> by_item;  // metric -> item index -> the item's own score
  std::map<int64_t, std::string> answers;                     // item index -> the greedy answer (qa)
  int64_t positions = 0, items = 0;
  double seconds = 0;

  // `value` summed over `n` units (tokens, or 1) of item `item`.
  void add(const std::string& metric, double value, int64_t n, int64_t item) {
    sum[metric] += value;
    count[metric] += n;
    if (n > 0) by_item[metric][item] = value / static_cast<double>(n);
  }
  double mean(const std::string& metric) const {
    auto it = count.find(metric);
    return it == count.end() || it->second == 0 ? std::nan("")
                                                : sum.at(metric) / static_cast<double>(it->second);
  }
};

// Scores and answers through the engine, exactly as `coenc ask` reads a prompt.
class Reader {
 public:
  Reader(CoEncoderImpl& model, const CoEncoderTokenizers& tok) : model_(model), tok_(tok) {
    const ModelConfig& t = model.config().text;
    window_ = t.max_position_embeddings;
    const int64_t elem = torch::elementSize(model.device_options().dtype);
    kv_bytes_per_position_ = t.n_layers * 2 * t.n_kv_heads * t.head_dim * elem;
    for (TokenId id : t.eos_token_ids) stop_.push_back(id);
    if (auto eos = tok.text->eos_id())
      if (std::find(stop_.begin(), stop_.end(), *eos) == stop_.end()) stop_.push_back(*eos);
  }

  int64_t window() const { return window_; }
  int64_t kv_bytes(int64_t positions) const { return positions * kv_bytes_per_position_; }

  struct TargetScore {
    double nll_sum = 0;
    int64_t tokens = 0, correct = 0;
    int64_t first = 0;               // the first target token scored (1 with an empty prompt)
    std::vector<double> token_nll;   // each scored token's NLL, target[first] onwards
  };
  // Teacher-forced: the summed NLL and argmax hits of `target` read after `prompt`. With an empty prompt the
  // first target token has nothing to be predicted from and is not scored.
  TargetScore score(const std::vector<Segment>& prompt, const TokenIds& target) {
    torch::NoGradGuard no_grad;
    Session s(model_.language_model);
    std::vector<Segment> all = prompt;
    all.push_back(Segment::tokens(target));
    int64_t p = 0;
    for (const auto& seg : prompt) p += seg.length();
    torch::Tensor logits = s.prefill_all_logits(all);  // [p + n, V] float32, CPU
    const int64_t n = static_cast<int64_t>(target.size()), first = p == 0 ? 1 : 0;
    TargetScore out;
    if (n <= first) return out;
    torch::Tensor rows =
        logits.narrow(0, p - 1 + first, n - first).log_softmax(-1);  // predicts target[first..]
    torch::Tensor ids = torch::tensor(TokenIds(target.begin() + first, target.end()), torch::kInt64);
    const torch::Tensor nll = -rows.gather(1, ids.unsqueeze(1)).squeeze(1).contiguous();
    out.nll_sum = nll.sum().item<double>();
    out.correct = (rows.argmax(1) == ids).sum().item<int64_t>();
    out.tokens = n - first;
    out.first = first;
    out.token_nll.assign(nll.data_ptr<float>(), nll.data_ptr<float>() + nll.numel());
    return out;
  }

  // Greedy answer of at most `max_tokens`, stopping at the decoder's end-of-text (and a newline when
  // `one_line`).
  GenerationResult answer(const std::vector<Segment>& prompt, int64_t max_tokens, bool one_line = true) {
    torch::NoGradGuard no_grad;
    Session s(model_.language_model);
    GenerationOptions go;
    go.max_new_tokens = static_cast<int>(max_tokens);
    go.sampling.temperature = 0;
    go.stop_tokens = stop_;
    if (one_line) go.stop_strings = {"\n"};
    go.detokenize = [&](const TokenIds& ids) { return tok_.text->decode_bytes(ids, true); };
    return generate(s, prompt, go);
  }

  // The text tokenizer's ids of `text` (documents are read as plain text: special-token spellings stay text).
  TokenIds text_ids(const std::string& text) const {
    return tok_.text->encode(text, EncodeOptions{false, false});
  }
  TokenIds context_ids(const std::string& text) const {
    return tok_.context->encode(text, EncodeOptions{false, false});
  }
  // Context-tokenizer ids as the decoder's text ids (the same ids when one tokenizer serves both).
  TokenIds as_text(const TokenIds& context_ids) const {
    if (tok_.context.get() == tok_.text.get()) return context_ids;
    return text_ids(tok_.context->decode(context_ids));
  }
  // The compressed block of `context_ids` at the model's current ratio, as one embedding segment.
  Segment compressed(const TokenIds& context_ids) {
    torch::NoGradGuard no_grad;
    return raw_prompt(model_, {model_.compress(context_ids)}, {}).front();
  }
  const Tokenizer& text_tokenizer() const { return *tok_.text; }
  const Tokenizer& context_tokenizer() const { return *tok_.context; }
  std::optional<TokenId> bos() const {
    if (auto b = tok_.text->bos_id()) return b;
    return tok_.text->eos_id();
  }

 private:
  CoEncoderImpl& model_;
  const CoEncoderTokenizers& tok_;
  int64_t window_ = 0, kv_bytes_per_position_ = 0;
  TokenIds stop_;
};

int64_t length_of(const std::vector<Segment>& segs) {
  int64_t n = 0;
  for (const auto& s : segs) n += s.length();
  return n;
}

std::string compressed_name(int64_t r) {
  return "compressed@" + std::to_string(r);
}

json cost_json(const Condition& c, const Reader& reader) {
  const double n = std::max<double>(1, static_cast<double>(c.items));
  return {{"positions", static_cast<double>(c.positions) / n},
          {"kv_bytes", static_cast<double>(reader.kv_bytes(c.positions)) / n},
          {"seconds", c.seconds},
          {"n", c.items}};
}

json number_or_null(double v) {
  return std::isfinite(v) ? json(v) : json(nullptr);
}

// Each item-scored metric's standard error over the items, as METRIC_stderr (null below two items); breakdowns of
// a metric (METRIC@PART: ppl's NLL by target position) are reported in their own arrays, not here.
void add_errors(json& j, const Condition& k) {
  for (const auto& [metric, items] : k.by_item) {
    if (metric.find('@') != std::string::npos) continue;
    std::vector<double> values;
    for (const auto& [item, v] : items) values.push_back(v);
    j[metric + "_stderr"] = number_or_null(mean_and_error(values).error);
  }
}

// Every item's own scores, one object per item and condition ({"item", "condition", METRIC: score, ...,
// "answer" where one was generated}), in item order: what pairs two checkpoints' results evaluated with the same
// seed and data. `ids` names the items where the data does (qa).
json item_scores(const std::map<std::string, Condition>& cond, const std::vector<std::string>& ids = {}) {
  std::map<std::pair<int64_t, std::string>, json> rows;
  for (const auto& [name, k] : cond)
    for (const auto& [metric, items] : k.by_item)
      for (const auto& [item, v] : items) {
        json& row = rows[{item, name}];
        if (row.is_null()) {
          row = {{"item", item}, {"condition", name}};
          if (static_cast<size_t>(item) < ids.size() && !ids[item].empty()) row["id"] = ids[item];
          if (auto a = k.answers.find(item); a != k.answers.end()) row["answer"] = a->second;
        }
        row[metric] = v;
      }
  json list = json::array();
  for (auto& [key, row] : rows) list.push_back(std::move(row));
  return list;
}

// "difference@R": `metrics` of compressed@R minus the reference condition, paired by item, with standard errors.
json paired_differences(const Condition& reference, const Condition& compressed,
                        const std::vector<std::string>& metrics) {
  json d = json::object();
  for (const auto& metric : metrics) {
    auto a = reference.by_item.find(metric), b = compressed.by_item.find(metric);
    if (a == reference.by_item.end() || b == compressed.by_item.end()) continue;
    const MeanError e = paired_difference(a->second, b->second);
    d[metric] = number_or_null(e.mean);
    d[metric + "_stderr"] = number_or_null(e.error);
  }
  return d;
}

// Sets the model's ratio for the duration of a scope and restores the checkpoint's own afterwards.
class RatioScope {
 public:
  RatioScope(CoEncoderImpl& model, int64_t r) : model_(model), own_(model.config().ratio) {
    if (r != own_) model.set_compression_ratio(r);
  }
  ~RatioScope() {
    if (model_.config().ratio != own_) model_.set_compression_ratio(own_);
  }

 private:
  CoEncoderImpl& model_;
  int64_t own_;
};

// ---- recon
// ---------------------------------------------------------------------------------------------------------

json run_recon(CoEncoderImpl& model, Reader& reader, const EvalOptions& o, std::mt19937_64& rng) {
  std::vector<std::string> docs = read_eval_documents(o.data);
  std::shuffle(docs.begin(), docs.end(), rng);
  const int64_t limit = o.limit > 0 ? o.limit : 200, c = model.config().chunk_size;
  std::vector<TokenIds> chunks;
  for (const auto& d : docs) {
    const TokenIds ids = reader.context_ids(d);
    for (size_t s = 0; s < ids.size() && static_cast<int64_t>(chunks.size()) < limit; s += c)
      chunks.emplace_back(ids.begin() + s, ids.begin() + std::min(ids.size(), s + c));
    if (static_cast<int64_t>(chunks.size()) >= limit) break;
  }
  COENC_CHECK(!chunks.empty(), "{}: the documents encode to no tokens", o.data.front());
  std::map<std::string, Condition> cond;
  std::map<std::string, std::vector<TokenIds>> greedy_out;
  std::vector<TokenIds> targets;
  ProgressBar bar("recon", static_cast<int64_t>(chunks.size()), "chunks", o.progress);
  for (size_t i = 0; i < chunks.size(); ++i) {
    const auto item = static_cast<int64_t>(i);
    const TokenIds target = reader.as_text(chunks[i]);
    targets.push_back(target);
    // No context: how much of the chunk the decoder guesses alone (from its first token on).
    {
      auto t0 = clock::now();
      auto sc = reader.score({}, target);
      Condition& k = cond["none"];
      k.add("token_accuracy", static_cast<double>(sc.correct), sc.tokens, item);
      k.add("nll", sc.nll_sum, sc.tokens, item);
      k.positions += static_cast<int64_t>(target.size());
      ++k.items;
      k.seconds += since(t0);
    }
    for (int64_t r : o.ratios) {
      RatioScope ratio(model, r);
      const std::string name = compressed_name(r);
      Condition& k = cond[name];
      auto t0 = clock::now();
      std::vector<Segment> prompt = {reader.compressed(chunks[i])};
      auto sc = reader.score(prompt, target);
      k.add("token_accuracy", static_cast<double>(sc.correct), sc.tokens, item);
      k.add("nll", sc.nll_sum, sc.tokens, item);
      // Greedy regeneration, as long as the chunk (the reconstruction prompt has no stop string).
      GenerationResult g = reader.answer(prompt, static_cast<int64_t>(target.size()), false);
      int64_t same = 0;
      for (size_t t = 0; t < target.size() && t < g.ids.size(); ++t) same += g.ids[t] == target[t];
      k.add("exact_accuracy", static_cast<double>(same), static_cast<int64_t>(target.size()), item);
      greedy_out[name].push_back(g.ids);
      k.positions += length_of(prompt) + static_cast<int64_t>(target.size());
      ++k.items;
      k.seconds += since(t0);
    }
    bar.update(static_cast<int64_t>(i + 1));
  }
  bar.finish();
  json out = {{"n", chunks.size()}, {"conditions", json::object()}};
  for (auto& [name, k] : cond) {
    json m = cost_json(k, reader);
    m["token_accuracy"] = number_or_null(k.mean("token_accuracy"));
    m["nll"] = number_or_null(k.mean("nll"));
    if (name != "none") {
      m["exact_accuracy"] = number_or_null(k.mean("exact_accuracy"));
      m["bleu4"] = corpus_bleu4(greedy_out[name], targets);
    }
    add_errors(m, k);
    out["conditions"][name] = m;
  }
  if (o.item_scores) out["items"] = item_scores(cond);
  return out;
}

// ---- ppl
// -----------------------------------------------------------------------------------------------------------

json run_ppl(CoEncoderImpl& model, Reader& reader, const EvalOptions& o, std::mt19937_64& rng) {
  const int64_t k_ctx = o.context_tokens, m = o.target_tokens;
  COENC_CHECK(k_ctx >= 1 && m >= 1, "--context-tokens and --target-tokens must be >= 1");
  COENC_CHECK(o.raw_tail >= 0 && o.raw_tail < k_ctx, "--raw-tail {}: expected 0 to {} (fewer than --context-tokens)",
              o.raw_tail, k_ctx - 1);
  // The conditions a ratio adds: compressed@R, and with a raw tail compressed@R+tailN.
  auto compressed_conditions = [&](int64_t r) {
    std::vector<std::string> names = {compressed_name(r)};
    if (o.raw_tail > 0) names.push_back(compressed_name(r) + "+tail" + std::to_string(o.raw_tail));
    return names;
  };
  std::vector<std::string> docs = read_eval_documents(o.data);
  std::shuffle(docs.begin(), docs.end(), rng);
  const int64_t limit = o.limit > 0 ? o.limit : 200;
  struct Item {
    TokenIds context, target;  // context-tokenizer ids; text ids of the target
  };
  std::vector<Item> items;
  for (const auto& d : docs) {
    if (static_cast<int64_t>(items.size()) >= limit) break;
    const TokenIds ids = reader.context_ids(d);
    if (static_cast<int64_t>(ids.size()) < k_ctx + m) continue;
    std::uniform_int_distribution<int64_t> start(0, static_cast<int64_t>(ids.size()) - k_ctx - m);
    const int64_t s = start(rng);
    Item it;
    it.context.assign(ids.begin() + s, ids.begin() + s + k_ctx);
    it.target = reader.as_text(TokenIds(ids.begin() + s + k_ctx, ids.begin() + s + k_ctx + m));
    if (static_cast<int64_t>(it.target.size()) > m) it.target.resize(m);
    items.push_back(std::move(it));
  }
  COENC_CHECK(!items.empty(),
              "{}: no document has the {} + {} tokens a ppl item needs (--context-tokens, "
              "--target-tokens)",
              o.data.front(), k_ctx, m);
  std::map<std::string, Condition> cond;
  ProgressBar bar("ppl", static_cast<int64_t>(items.size()), "documents", o.progress);
  const auto bos = reader.bos();
  for (size_t i = 0; i < items.size(); ++i) {
    const Item& it = items[i];
    const auto item = static_cast<int64_t>(i);
    auto run = [&](const std::string& name, const std::vector<Segment>& prompt) {
      auto t0 = clock::now();
      auto sc = reader.score(prompt, it.target);
      Condition& k = cond[name];
      k.add("nll", sc.nll_sum, sc.tokens, item);
      // The same NLL by where the token stands in the target (target_position_bucket).
      std::map<std::string, std::pair<double, int64_t>> by_bucket;
      for (size_t j = 0; j < sc.token_nll.size(); ++j) {
        auto& [sum, n] = by_bucket[target_position_bucket(sc.first + static_cast<int64_t>(j) + 1)];
        sum += sc.token_nll[j];
        n += 1;
      }
      for (const auto& [bucket, sum_n] : by_bucket) k.add("nll@" + bucket, sum_n.first, sum_n.second, item);
      k.positions += length_of(prompt) + static_cast<int64_t>(it.target.size());
      ++k.items;
      k.seconds += since(t0);
    };
    // Every condition scores all M target tokens: with no context the decoder starts from its BOS (the token
    // that separates documents in pretraining).
    run("none", bos ? std::vector<Segment>{Segment::tokens({*bos})} : std::vector<Segment>{});
    const TokenIds full = reader.as_text(it.context);
    const int64_t room = reader.window() - static_cast<int64_t>(it.target.size());
    if (static_cast<int64_t>(full.size()) <= room) {
      run("full", {Segment::tokens(full)});
    } else {
      run("truncated", {Segment::tokens(TokenIds(full.end() - room, full.end()))});
    }
    for (int64_t r : o.ratios) {
      RatioScope ratio(model, r);
      auto t0 = clock::now();
      std::vector<Segment> prompt = {reader.compressed(it.context)};
      const double tower = since(t0);
      run(compressed_name(r), prompt);
      cond[compressed_name(r)].seconds += tower;
      if (o.raw_tail > 0) {
        const auto cut = it.context.end() - o.raw_tail;
        t0 = clock::now();
        std::vector<Segment> tail = {reader.compressed(TokenIds(it.context.begin(), cut)),
                                     Segment::tokens(reader.as_text(TokenIds(cut, it.context.end())))};
        const double tail_tower = since(t0);
        const std::string name = compressed_conditions(r).back();
        run(name, tail);
        cond[name].seconds += tail_tower;
      }
    }
    bar.update(static_cast<int64_t>(i + 1));
  }
  bar.finish();
  json out = {
      {"n", items.size()}, {"context_tokens", k_ctx}, {"target_tokens", m}, {"conditions", json::object()}};
  std::vector<std::string> buckets;  // in position order
  for (int64_t p = 1; p <= m; ++p)
    if (buckets.empty() || buckets.back() != target_position_bucket(p)) buckets.push_back(target_position_bucket(p));
  auto by_position = [&](const Condition& k) {
    json a = json::array();
    for (const std::string& b : buckets)
      if (k.count.count("nll@" + b)) a.push_back({{"positions", b}, {"nll", number_or_null(k.mean("nll@" + b))}});
    return a;
  };
  for (auto& [name, k] : cond) {
    json j = cost_json(k, reader);
    const double nll = k.mean("nll");
    j["nll"] = number_or_null(nll);
    j["ppl"] = number_or_null(std::exp(nll));
    add_errors(j, k);
    j["nll_by_position"] = by_position(k);
    out["conditions"][name] = j;
  }
  const std::string reference = cond.count("full") ? "full" : "truncated";
  for (int64_t r : o.ratios)
    for (const std::string& name : compressed_conditions(r)) {
      const std::string suffix = name.substr(name.find('@') + 1);  // "4" or "4+tail8"
      if (cond.count("full")) {
        auto g = gain_retained(cond["none"].mean("nll"), cond[name].mean("nll"), cond["full"].mean("nll"));
        out["gain_retained@" + suffix] = g ? json(*g) : json(nullptr);
        json a = json::array();
        for (const std::string& b : buckets) {
          const std::string metric = "nll@" + b;
          if (!cond["none"].count.count(metric) || !cond["full"].count.count(metric)) continue;
          auto gb = gain_retained(cond["none"].mean(metric), cond[name].mean(metric), cond["full"].mean(metric));
          a.push_back({{"positions", b}, {"gain_retained", gb ? json(*gb) : json(nullptr)}});
        }
        out["gain_retained_by_position@" + suffix] = a;
      }
      out["difference@" + suffix] = paired_differences(cond[reference], cond[name], {"nll"});
    }
  if (o.item_scores) out["items"] = item_scores(cond);
  return out;
}

// ---- qa
// ------------------------------------------------------------------------------------------------------------

// Every question under every condition: the option most likely (items with options), else a greedy answer scored
// by SQuAD's EM and F1. Shared by the qa, lookup and cloze tasks.
json score_questions(CoEncoderImpl& model, Reader& reader, const EvalOptions& o, const std::vector<QaItem>& items) {
  std::map<std::string, Condition> cond;
  ProgressBar bar(o.task, static_cast<int64_t>(items.size()), "questions", o.progress);
  for (size_t i = 0; i < items.size(); ++i) {
    const QaItem& it = items[i];
    const auto item = static_cast<int64_t>(i);
    const TokenIds question = reader.text_ids(it.question);
    const TokenIds context = reader.context_ids(it.context);
    auto run = [&](const std::string& name, const std::vector<Segment>& prompt, double extra_seconds) {
      auto t0 = clock::now();
      Condition& k = cond[name];
      if (!it.options.empty()) {
        // The option with the highest mean log-likelihood per token.
        int64_t best = -1;
        double best_ll = -INFINITY;
        for (size_t opt = 0; opt < it.options.size(); ++opt) {
          auto sc = reader.score(prompt, reader.text_ids(" " + it.options[opt]));
          const double ll = sc.tokens > 0 ? -sc.nll_sum / static_cast<double>(sc.tokens) : -INFINITY;
          if (ll > best_ll) best_ll = ll, best = static_cast<int64_t>(opt);
        }
        k.add("accuracy", best == it.answer_index ? 1.0 : 0.0, 1, item);
      } else {
        GenerationResult g = reader.answer(prompt, o.max_answer_tokens);
        k.add("em", exact_match(g.text, it.answers), 1, item);
        k.add("f1", f1_score(g.text, it.answers), 1, item);
        if (o.item_scores) k.answers[item] = g.text;
      }
      k.positions += length_of(prompt);
      ++k.items;
      k.seconds += since(t0) + extra_seconds;
    };
    run("none", {Segment::tokens(question)}, 0);
    const TokenIds full = plain_text_prompt(reader.text_tokenizer(), reader.as_text(context), question);
    const int64_t room = reader.window() - o.max_answer_tokens;
    if (static_cast<int64_t>(full.size()) <= room) {
      run("full", {Segment::tokens(full)}, 0);
    } else {
      const TokenIds ctx_text = reader.as_text(context);
      const int64_t keep = std::max<int64_t>(
          0, static_cast<int64_t>(ctx_text.size()) - (static_cast<int64_t>(full.size()) - room));
      run("truncated",
          {Segment::tokens(plain_text_prompt(reader.text_tokenizer(),
                                             TokenIds(ctx_text.begin(), ctx_text.begin() + keep), question))},
          0);
    }
    for (int64_t r : o.ratios) {
      RatioScope ratio(model, r);
      auto t0 = clock::now();
      std::vector<Segment> prompt = {reader.compressed(context), Segment::tokens(question)};
      const double tower = since(t0);
      if (length_of(prompt) + o.max_answer_tokens > reader.window()) continue;  // reported as fewer items
      run(compressed_name(r), prompt, tower);
    }
    bar.update(static_cast<int64_t>(i + 1));
  }
  bar.finish();
  // Retention is F1's where any question is open, accuracy's where every one has options; a set of both kinds
  // also gets accuracy's as retention_accuracy@R (the score is never chosen by which question comes first).
  const auto with_options = std::count_if(items.begin(), items.end(), [](const auto& q) { return !q.options.empty(); });
  const bool all_choice = with_options == static_cast<std::ptrdiff_t>(items.size());
  const std::string score = all_choice ? "accuracy" : "f1";
  json out = {{"n", items.size()}, {"conditions", json::object()}};
  for (auto& [name, k] : cond) {
    json j = cost_json(k, reader);
    if (k.count.count("accuracy")) j["accuracy"] = number_or_null(k.mean("accuracy"));
    if (k.count.count("em")) j["em"] = number_or_null(k.mean("em"));
    if (k.count.count("f1")) j["f1"] = number_or_null(k.mean("f1"));
    add_errors(j, k);
    out["conditions"][name] = j;
  }
  const std::string full_name = cond.count("full") ? "full" : "truncated";
  const auto retention = [&](const std::string& metric, int64_t r) {
    const double f = cond[full_name].mean(metric), c = cond[compressed_name(r)].mean(metric);
    return f > 0 && std::isfinite(c) ? json(c / f) : json(nullptr);
  };
  for (int64_t r : o.ratios) {
    out["retention@" + std::to_string(r)] = retention(score, r);
    if (with_options > 0 && !all_choice) out["retention_accuracy@" + std::to_string(r)] = retention("accuracy", r);
    out["difference@" + std::to_string(r)] =
        paired_differences(cond[full_name], cond[compressed_name(r)], {"accuracy", "em", "f1"});
  }
  if (o.item_scores) {
    std::vector<std::string> ids;
    for (const auto& it : items) ids.push_back(it.id);
    out["items"] = item_scores(cond, ids);
  }
  return out;
}

json run_qa(CoEncoderImpl& model, Reader& reader, const EvalOptions& o, std::mt19937_64& rng) {
  std::vector<QaItem> all = read_qa_items(o.data), items;
  for (auto& it : all)
    if (!it.answers.empty() || !it.options.empty()) items.push_back(std::move(it));
  COENC_CHECK(!items.empty(), "{}: no answerable question", o.data.front());
  std::shuffle(items.begin(), items.end(), rng);
  const int64_t limit = o.limit > 0 ? o.limit : 500;
  if (static_cast<int64_t>(items.size()) > limit) items.resize(limit);
  return score_questions(model, reader, o, items);
}

// ---- lookup
// --------------------------------------------------------------------------------------------------------

// Questions made from the text documents of --data (lookup, cloze), one at a time: documents in random order (round
// again while fewer than --limit, default 300, at most 20 x limit draws), each tokenized when a question first
// reaches it (a large file is not read whole for a few questions); `ask(ids)` makes a question about a document
// of at least `min_tokens` tokens, or none. A first round without such a document ends the search (any_long false).
struct TextQuestions {
  std::vector<QaItem> items;  // ids TASK-0, TASK-1, ...
  bool any_long = false;      // some document had min_tokens
};

template <class Ask>
TextQuestions questions_from_documents(Reader& reader, const EvalOptions& o, std::mt19937_64& rng, int64_t min_tokens,
                                       Ask ask) {
  std::vector<std::string> docs = read_eval_documents(o.data);
  std::shuffle(docs.begin(), docs.end(), rng);
  const int64_t limit = o.limit > 0 ? o.limit : 300;
  std::vector<std::optional<TokenIds>> ids(docs.size());
  TextQuestions out;
  for (int64_t draw = 0; static_cast<int64_t>(out.items.size()) < limit && draw < 20 * limit; ++draw) {
    const size_t d = static_cast<size_t>(draw) % docs.size();
    if (!ids[d]) ids[d] = reader.context_ids(docs[d]);
    if (static_cast<int64_t>(ids[d]->size()) < min_tokens) {
      if (!out.any_long && d + 1 == docs.size()) break;
      continue;
    }
    out.any_long = true;
    std::optional<QaItem> it = ask(*ids[d]);
    if (!it) continue;
    it->id = o.task + "-" + std::to_string(out.items.size());
    out.items.push_back(std::move(*it));
  }
  return out;
}

// Questions made from text, as training's objective lookup makes them: a window of --context-tokens tokens of a
// document is the context, about 8 of its tokens from a random place are quoted ("What follows \"CUE\" in the
// text?"), and about 8 tokens after them are the answer, both whole words (draw_lookup_span).
json run_lookup(CoEncoderImpl& model, Reader& reader, const EvalOptions& o, std::mt19937_64& rng) {
  constexpr int64_t kNeed = kLookupCueTokens + kLookupAnswerTokens;
  const Tokenizer& ctx = reader.context_tokenizer();
  const TextQuestions q = questions_from_documents(reader, o, rng, kNeed, [&](const TokenIds& doc) {
    const std::optional<LookupSpan> drawn = draw_lookup_span(doc, o.context_tokens, ctx, rng);
    if (!drawn) return std::optional<QaItem>();
    const LookupSpan span = *drawn;
    QaItem it;
    it.question = lookup_question(ctx.decode(TokenIds(doc.begin() + span.cue, doc.begin() + span.answer)));
    const std::string answer = ctx.decode(TokenIds(doc.begin() + span.answer, doc.begin() + span.stop));
    if (it.question.empty() || answer.find_first_not_of(" \t\r\n") == std::string::npos)
      return std::optional<QaItem>();
    it.context = ctx.decode(TokenIds(doc.begin() + span.begin, doc.begin() + span.end));
    it.answers = {answer};
    return std::optional<QaItem>(std::move(it));
  });
  COENC_CHECK(q.any_long, "{}: no document of at least {} tokens to quote from", o.data.front(), kNeed);
  COENC_CHECK(!q.items.empty(), "{}: no quotable text (every cue drawn was blank)", o.data.front());
  return score_questions(model, reader, o, q.items);
}

// ---- cloze
// --------------------------------------------------------------------------------------------------------

// Questions in SQuAD's form made from text, as training's objective cloze makes them: a window of --context-tokens
// tokens of a document is the context, one of its sentences asked with "what" / "what year" / ... where a name or
// number stood is the question, that name or number the answer (make_cloze_question).
json run_cloze(CoEncoderImpl& model, Reader& reader, const EvalOptions& o, std::mt19937_64& rng) {
  const Tokenizer& ctx = reader.context_tokenizer();
  const TextQuestions q = questions_from_documents(reader, o, rng, 1, [&](const TokenIds& doc) {
    const int64_t len = static_cast<int64_t>(doc.size()), w = std::min(len, o.context_tokens);
    const int64_t s = std::uniform_int_distribution<int64_t>(0, len - w)(rng);
    QaItem it;
    it.context = ctx.decode(TokenIds(doc.begin() + s, doc.begin() + s + w));
    const auto cloze = make_cloze_question(it.context, rng);
    if (!cloze) return std::optional<QaItem>();
    it.question = cloze->question;
    it.answers = {cloze->answer};
    return std::optional<QaItem>(std::move(it));
  });
  COENC_CHECK(!q.items.empty(),
              "{}: no cloze question could be made from its documents (it needs prose: finished sentences of 6-40 "
              "words with a capitalised name or a number after their first word)",
              o.data.front());
  return score_questions(model, reader, o, q.items);
}

// ---- needle
// --------------------------------------------------------------------------------------------------------

json run_needle(CoEncoderImpl& model, Reader& reader, const EvalOptions& o, std::mt19937_64& rng) {
  std::vector<std::string> docs = read_eval_documents(o.data);
  std::shuffle(docs.begin(), docs.end(), rng);
  // One long stream of filler tokens, cut into haystacks.
  const int64_t reserve = 64;  // positions kept for the question and the answer
  const int64_t unit = reader.window() - reserve;
  COENC_CHECK(unit > 16, "the decoder's window ({} positions) is too short for the needle test",
              reader.window());
  const std::vector<double> multiples = {0.5, 1, 2, 4, 8}, depths = {0, 0.25, 0.5, 0.75, 1.0};
  const int64_t longest = static_cast<int64_t>(multiples.back() * static_cast<double>(unit));
  TokenIds filler;
  for (const auto& d : docs) {
    const TokenIds ids = reader.context_ids(d + "\n\n");
    filler.insert(filler.end(), ids.begin(), ids.end());
    if (static_cast<int64_t>(filler.size()) >= 2 * longest) break;
  }
  COENC_CHECK(static_cast<int64_t>(filler.size()) >= longest,
              "{}: the filler text has {} tokens; the needle test "
              "needs {} (8 windows)",
              o.data.front(), filler.size(), longest);
  const int64_t trials = o.limit > 0 ? o.limit : 2;
  const TokenIds question = reader.text_ids("What is the secret number?");
  std::map<std::string, std::map<std::pair<size_t, size_t>, Condition>>
      cells;  // condition -> (length, depth)
  std::map<std::string, Condition> total;
  ProgressBar bar("needle", static_cast<int64_t>(multiples.size() * depths.size()) * trials, "trials",
                  o.progress);
  int64_t done = 0;
  for (size_t li = 0; li < multiples.size(); ++li) {
    const int64_t length = static_cast<int64_t>(multiples[li] * static_cast<double>(unit));
    for (size_t di = 0; di < depths.size(); ++di) {
      for (int64_t t = 0; t < trials; ++t) {
        std::uniform_int_distribution<int64_t> number(10000, 99999),
            start(0, static_cast<int64_t>(filler.size()) - length);
        const std::string passkey = std::to_string(number(rng));
        const TokenIds needle = reader.context_ids(" The secret number is " + passkey + ". ");
        const int64_t hay = length - static_cast<int64_t>(needle.size()), s = start(rng);
        const int64_t at = static_cast<int64_t>(std::llround(depths[di] * static_cast<double>(hay)));
        TokenIds doc(filler.begin() + s, filler.begin() + s + at);
        doc.insert(doc.end(), needle.begin(), needle.end());
        doc.insert(doc.end(), filler.begin() + s + at, filler.begin() + s + hay);
        auto run = [&](const std::string& name, const std::vector<Segment>& prompt, double extra) {
          auto t0 = clock::now();
          GenerationResult g = reader.answer(prompt, 8);
          const double hit = g.text.find(passkey) != std::string::npos ? 1.0 : 0.0;
          for (Condition* k : {&cells[name][{li, di}], &total[name]}) {
            k->add("accuracy", hit, 1, done);
            k->positions += length_of(prompt);
            ++k->items;
            k->seconds += since(t0) + extra;
          }
        };
        const TokenIds text = reader.as_text(doc);
        if (static_cast<int64_t>(text.size()) <= unit) {
          run("full", {Segment::tokens(plain_text_prompt(reader.text_tokenizer(), text, question))}, 0);
        } else {
          run("truncated",
              {Segment::tokens(plain_text_prompt(reader.text_tokenizer(),
                                                 TokenIds(text.end() - unit, text.end()), question))},
              0);
        }
        for (int64_t r : o.ratios) {
          RatioScope ratio(model, r);
          const int64_t n_chunks = (length + model.config().chunk_size - 1) / model.config().chunk_size;
          // mean / attn pooling: ceil(chunk / r) vectors a chunk; skip what cannot fit before compressing it.
          if (model.config().pooling != PoolingMode::Dynamic && (length + r - 1) / r + n_chunks + 2 > unit)
            continue;
          auto t0 = clock::now();
          Segment block = reader.compressed(doc);
          const double tower = since(t0);
          if (block.length() > unit) continue;
          run(compressed_name(r), {block, Segment::tokens(question)}, tower);
        }
        bar.update(++done);
      }
    }
  }
  bar.finish();
  json out = {{"n", done}, {"window", reader.window()}, {"conditions", json::object()}};
  for (auto& [name, k] : total) {
    json j = cost_json(k, reader);
    j["accuracy"] = number_or_null(k.mean("accuracy"));
    add_errors(j, k);
    json list = json::array();
    for (size_t li = 0; li < multiples.size(); ++li)
      for (size_t di = 0; di < depths.size(); ++di) {
        auto it = cells[name].find({li, di});
        list.push_back(
            {{"length_windows", multiples[li]},
             {"tokens", static_cast<int64_t>(multiples[li] * static_cast<double>(unit))},
             {"depth", depths[di]},
             {"accuracy", it == cells[name].end() ? json(nullptr) : json(it->second.mean("accuracy"))}});
      }
    j["cells"] = list;
    out["conditions"][name] = j;
  }
  if (o.item_scores) out["items"] = item_scores(total);
  return out;
}

}  // namespace

json run_eval(CoEncoderImpl& model, const CoEncoderTokenizers& tok, const EvalOptions& options,
              const std::string& model_name) {
  EvalOptions o = options;
  const CoEncoderConfig& cfg = model.config();
  if (o.ratios.empty()) o.ratios = {cfg.ratio};
  for (int64_t r : o.ratios) {
    COENC_CHECK(r >= 1, "--ratio {}: a compression ratio is at least 1", r);
    COENC_CHECK_CODE(
        cfg.pooling != PoolingMode::Dynamic || r == cfg.ratio, Unsupported,
        "--ratio {}: this checkpoint pools \"dynamic\" (it sizes its own output); only its ratio {} "
        "applies",
        r, cfg.ratio);
  }
  COENC_CHECK(o.limit >= 0, "--limit must be >= 0 (0: the task's default), got {}", o.limit);
  COENC_CHECK(o.max_answer_tokens >= 1, "the answer length must be >= 1");
  COENC_CHECK(o.raw_tail == 0 || o.task == "ppl", "--raw-tail is a condition of --task ppl, not of {}", o.task);
  Reader reader(model, tok);
  std::mt19937_64 rng(o.seed);
  const auto t0 = clock::now();
  json out;
  if (o.task == "recon") {
    out = run_recon(model, reader, o, rng);
  } else if (o.task == "ppl") {
    out = run_ppl(model, reader, o, rng);
  } else if (o.task == "qa") {
    out = run_qa(model, reader, o, rng);
  } else if (o.task == "lookup") {
    out = run_lookup(model, reader, o, rng);
  } else if (o.task == "cloze") {
    out = run_cloze(model, reader, o, rng);
  } else if (o.task == "needle") {
    out = run_needle(model, reader, o, rng);
  } else {
    fail(ErrorCode::InvalidInput, "--task \"{}\": expected recon, ppl, qa, lookup, cloze or needle", o.task);
  }
  json result = {{"task", o.task}, {"model", model_name}, {"ratios", o.ratios},
                 {"seed", o.seed}, {"data", o.data},      {"device", model.device_options().device.str()}};
  result.update(out);
  result["seconds"] = since(t0);
  return result;
}

std::string needle_heatmap_svg(const json& r) {
  // One panel per condition: rows are depths (0% at the top), columns lengths; green = found, red = missed.
  const auto& conds = r.at("conditions");
  const int cw = 56, ch = 28, left = 70, top = 50, gap = 40;
  std::vector<double> lengths, depths;
  for (const auto& [name, c] : conds.items())
    for (const auto& cell : c.at("cells")) {
      const double l = cell.at("length_windows"), d = cell.at("depth");
      if (std::find(lengths.begin(), lengths.end(), l) == lengths.end()) lengths.push_back(l);
      if (std::find(depths.begin(), depths.end(), d) == depths.end()) depths.push_back(d);
    }
  const int panel_w = left + cw * static_cast<int>(lengths.size());
  const int width = gap + static_cast<int>(conds.size()) * (panel_w + gap);
  const int height = top + ch * static_cast<int>(depths.size()) + 60;
  std::string svg = format(
      "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{}\" height=\"{}\" "
      "font-family=\"sans-serif\" font-size=\"11\">\n<rect width=\"100%\" height=\"100%\" "
      "fill=\"white\"/>\n",
      width, height);
  int x0 = gap;
  for (const auto& [name, c] : conds.items()) {
    svg += format("<text x=\"{}\" y=\"20\" font-size=\"13\" font-weight=\"bold\">{}</text>\n", x0, name);
    for (size_t li = 0; li < lengths.size(); ++li)
      svg += format("<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">{}x</text>\n",
                    x0 + left + cw * li + cw / 2, top - 8, lengths[li]);
    for (size_t di = 0; di < depths.size(); ++di)
      svg += format("<text x=\"{}\" y=\"{}\" text-anchor=\"end\">depth {}%</text>\n", x0 + left - 6,
                    top + ch * di + ch / 2 + 4, static_cast<int>(depths[di] * 100));
    for (const auto& cell : c.at("cells")) {
      const size_t li = std::find(lengths.begin(), lengths.end(), cell.at("length_windows").get<double>()) -
                        lengths.begin();
      const size_t di =
          std::find(depths.begin(), depths.end(), cell.at("depth").get<double>()) - depths.begin();
      std::string fill = "#dddddd", label = "-";
      if (!cell.at("accuracy").is_null()) {
        const double a = cell.at("accuracy");
        fill = format("rgb({},{},80)", static_cast<int>(220 * (1 - a) + 30), static_cast<int>(190 * a + 40));
        label = format("{}%", static_cast<int>(std::lround(a * 100)));
      }
      svg += format("<rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" fill=\"{}\" stroke=\"white\"/>\n",
                    x0 + left + cw * li, top + ch * di, cw, ch, fill);
      svg += format("<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">{}</text>\n",
                    x0 + left + cw * li + cw / 2, top + ch * di + ch / 2 + 4, label);
    }
    x0 += panel_w + gap;
  }
  svg += format(
      "<text x=\"{}\" y=\"{}\">document length in decoder windows ({} positions); - : does not fit"
      "</text>\n</svg>\n",
      gap, height - 15, r.value("window", 0));
  return svg;
}

}  // namespace coenc
