#include "rad/train/teacher_task_rows.h"

#include <algorithm>
#include <string>
#include <tuple>

#include "rad/core/error.h"
#include "rad/tasks/words.h"

namespace rad {
namespace {

int64_t single_token(const tasks::Encoder& encode, const std::string& text, const std::string& what) {
  std::vector<int64_t> ids = encode(text);
  RAD_CHECK(ids.size() == 1, "recipe rows need {} as one token; the tokenizer encodes it as {} tokens", what,
            ids.size());
  return ids[0];
}

std::vector<int64_t> concat(std::initializer_list<std::vector<int64_t>> parts) {
  std::vector<int64_t> out;
  for (const auto& p : parts) out.insert(out.end(), p.begin(), p.end());
  return out;
}

// `k` distinct indices of [0, n) in random order (partial Fisher-Yates).
std::vector<int64_t> sample_distinct(int64_t n, int64_t k, std::mt19937_64& rng) {
  RAD_CHECK(k >= 0 && k <= n, "cannot draw {} distinct items from {}", k, n);
  std::vector<int64_t> idx(n);
  for (int64_t i = 0; i < n; ++i) idx[i] = i;
  for (int64_t i = 0; i < k; ++i) std::swap(idx[i], idx[std::uniform_int_distribution<int64_t>(i, n - 1)(rng)]);
  idx.resize(k);
  return idx;
}

void start_row(const RecipeTokens& t, RecipeRow* row) {
  if (t.bos) row->ids.push_back(*t.bos);
}

// Pairs of distinct keys and distinct values.
void draw_dictionary(const RecipeTokens& t, const std::vector<int64_t>& keys, int64_t pairs, std::mt19937_64& rng,
                     std::vector<int64_t>* ks, std::vector<int64_t>* vs) {
  RAD_CHECK(pairs >= 1 && pairs <= static_cast<int64_t>(t.values.size()),
            "recipe rows: {} pairs, but values are the {} integers 0-99", pairs, t.values.size());
  RAD_CHECK(pairs <= static_cast<int64_t>(keys.size()), "recipe rows: {} pairs but only {} usable keys", pairs,
            keys.size());
  for (int64_t i : sample_distinct(keys.size(), pairs, rng)) ks->push_back(keys[i]);
  for (int64_t i : sample_distinct(t.values.size(), pairs, rng)) vs->push_back(t.values[i]);
}

}  // namespace

RecipeTokens RecipeTokens::build(const tasks::Encoder& encode, std::optional<int64_t> bos) {
  RecipeTokens t;
  t.bos = bos;
  const std::string header = "Memorize the following dictionary:\n", prefix = "The value of the key '",
                    suffix = "' is";
  t.header = encode(header);
  t.query_prefix = encode(prefix);
  t.query_suffix = encode(suffix);
  t.colon = single_token(encode, ":", "\":\"");
  t.newline = single_token(encode, "\n", "a newline");
  t.space = single_token(encode, " ", "a space");
  t.sep = single_token(encode, "|", "the separator \"|\"");
  for (int v = 0; v < 100; ++v) {
    t.values.push_back(single_token(encode, std::to_string(v), fmt::format("the value {}", v)));
    // The answer " V" must be the space then the value, as the paper rows write it.
    RAD_CHECK(encode(" " + std::to_string(v)) == (std::vector<int64_t>{t.space, t.values.back()}),
              "recipe rows need the answer \" {}\" encoded as a space then the value", v);
  }
  // A key is usable when its token survives the probe's contexts unchanged, so token-level rows are
  // exactly the probe's text tokenization.
  auto usable = [&](const std::string& w, int64_t* id) {
    std::vector<int64_t> ids = encode(w);
    if (ids.size() != 1) return false;
    *id = ids[0];
    return encode("\n" + w + ":") == std::vector<int64_t>{t.newline, *id, t.colon} &&
           encode(prefix + w + suffix) == concat({t.query_prefix, {*id}, t.query_suffix});
  };
  auto collect = [&](const std::vector<std::string>& words, std::vector<int64_t>* out) {
    for (const std::string& w : words) {
      int64_t id;
      if (usable(w, &id)) out->push_back(id);
    }
  };
  collect(tasks::key_pool(tasks::KeySplit::kTrain), &t.train_keys);
  collect(tasks::key_pool(tasks::KeySplit::kEval), &t.heldout_keys);
  RAD_CHECK(t.train_keys.size() >= 100,
            "recipe rows need at least 100 training keys that are one token in probe form; the tokenizer gives {}",
            t.train_keys.size());
  // Copy spans make every key token (held-out ones too) a trained input in probe form.
  t.copy_pool = t.train_keys;
  t.copy_pool.insert(t.copy_pool.end(), t.heldout_keys.begin(), t.heldout_keys.end());
  t.copy_pool.insert(t.copy_pool.end(), t.values.begin(), t.values.end());
  return t;
}

RecipeRow paper_row(const RecipeTokens& t, const std::vector<int64_t>& keys, int64_t pairs, int64_t queries,
                    std::mt19937_64& rng) {
  RecipeRow row;
  std::vector<int64_t> ks, vs;
  draw_dictionary(t, keys, pairs, rng, &ks, &vs);
  start_row(t, &row);
  row.ids.insert(row.ids.end(), t.header.begin(), t.header.end());
  for (int64_t i = 0; i < pairs; ++i) row.ids.insert(row.ids.end(), {ks[i], t.colon, vs[i], t.newline});
  std::vector<int64_t> order = sample_distinct(pairs, std::min(queries, pairs), rng);
  for (size_t q = 0; q < order.size(); ++q) {
    if (q > 0) row.ids.push_back(t.newline);
    row.ids.insert(row.ids.end(), t.query_prefix.begin(), t.query_prefix.end());
    row.ids.push_back(ks[order[q]]);
    row.ids.insert(row.ids.end(), t.query_suffix.begin(), t.query_suffix.end());
    row.targets.push_back(row.ids.size());
    row.targets.push_back(row.ids.size() + 1);
    row.ids.insert(row.ids.end(), {t.space, vs[order[q]]});
  }
  row.listed = vs;
  return row;
}

RecipeRow compact_row(const RecipeTokens& t, const std::vector<int64_t>& keys, int64_t pairs, int64_t queries,
                      std::mt19937_64& rng) {
  RecipeRow row;
  std::vector<int64_t> ks, vs;
  draw_dictionary(t, keys, pairs, rng, &ks, &vs);
  start_row(t, &row);
  for (int64_t i = 0; i < pairs; ++i) row.ids.insert(row.ids.end(), {ks[i], vs[i]});
  row.ids.push_back(t.sep);
  for (int64_t j : sample_distinct(pairs, std::min(queries, pairs), rng)) {
    row.ids.push_back(ks[j]);
    row.targets.push_back(row.ids.size());
    row.ids.push_back(vs[j]);
  }
  row.listed = vs;
  return row;
}

RecipeRow copy_row(const RecipeTokens& t, std::mt19937_64& rng) {
  RecipeRow row;
  int64_t k = std::uniform_int_distribution<int64_t>(6, 19)(rng);
  std::uniform_int_distribution<size_t> pick(0, t.copy_pool.size() - 1);
  std::vector<int64_t> span(k);
  for (auto& s : span) s = t.copy_pool[pick(rng)];
  start_row(t, &row);
  row.ids.insert(row.ids.end(), span.begin(), span.end());
  row.ids.push_back(t.sep);
  for (int64_t s : span) {
    row.targets.push_back(row.ids.size());
    row.ids.push_back(s);
  }
  return row;
}

RecipeRow offset_row(const RecipeTokens& t, const std::vector<int64_t>& keys, int64_t triples, std::mt19937_64& rng) {
  RecipeRow row;
  std::uniform_int_distribution<size_t> pick_key(0, keys.size() - 1), pick_value(0, t.values.size() - 1);
  start_row(t, &row);
  for (int64_t i = 0; i < triples; ++i) {
    int64_t k = keys[pick_key(rng)];
    int64_t v = t.values[pick_value(rng)];
    row.ids.insert(row.ids.end(), {k, t.colon, v});
    // The value's position must know the key two tokens back: a dense target for the offset heads.
    row.targets.push_back(row.ids.size());
    row.ids.insert(row.ids.end(), {k, t.newline});
  }
  return row;
}

int64_t paper_probe_length(const RecipeTokens& t, int64_t pairs) {
  return (t.bos ? 1 : 0) + static_cast<int64_t>(t.header.size()) + 4 * pairs +
         static_cast<int64_t>(t.query_prefix.size() + 1 + t.query_suffix.size()) + 2;
}

double mean_embedding_cosine(CausalLM& model, const std::vector<int64_t>& ids) {
  RAD_CHECK(ids.size() >= 2, "embedding cosine needs at least two tokens, got {}", ids.size());
  at::NoGradGuard no_grad;
  const at::Tensor index = at::tensor(ids, at::kLong).to(model->device());
  at::Tensor e = model->model->embed_tokens->weight.index_select(0, index).to(at::kFloat);
  e = e / e.norm(2, {1}, true).clamp_min(1e-12);
  const double m = static_cast<double>(ids.size());
  return (at::matmul(e, e.t()).sum().item<double>() - m) / (m * (m - 1));
}

namespace {

// (accuracy, listed rate) of one-query paper rows; all rows of one size have the same length.
std::pair<double, double> probe_accuracy(CausalLM& model, const RecipeTokens& t, const std::vector<int64_t>& keys,
                                         int64_t pairs, int64_t examples, std::mt19937_64& rng) {
  std::vector<RecipeRow> rows;
  for (int64_t i = 0; i < examples; ++i) rows.push_back(paper_row(t, keys, pairs, 1, rng));
  const int64_t L = rows[0].ids.size();
  int64_t correct = 0, listed = 0;
  const int64_t chunk = 25;
  for (int64_t b = 0; b < examples; b += chunk) {
    const int64_t n = std::min(chunk, examples - b);
    at::Tensor x = at::empty({n, L - 1}, at::kLong);
    auto xa = x.accessor<int64_t, 2>();
    for (int64_t r = 0; r < n; ++r)
      for (int64_t i = 0; i + 1 < L; ++i) xa[r][i] = rows[b + r].ids[i];
    // The two targets are the space (index L-2) and the value (L-1): predicted at L-3 and L-2.
    at::Tensor pred = model->forward(x).narrow(1, L - 3, 2).argmax(-1).contiguous();
    auto pa = pred.accessor<int64_t, 2>();
    for (int64_t r = 0; r < n; ++r) {
      const RecipeRow& row = rows[b + r];
      correct += pa[r][0] == t.space && pa[r][1] == row.ids[L - 1];
      listed += std::find(row.listed.begin(), row.listed.end(), pa[r][1]) != row.listed.end();
    }
  }
  return {static_cast<double>(correct) / examples, static_cast<double>(listed) / examples};
}

}  // namespace

RecipeTelemetry recipe_telemetry(CausalLM& model, const RecipeTokens& t, const std::vector<int64_t>& pair_sizes,
                                 int64_t examples, int64_t seq, uint64_t seed) {
  RAD_CHECK(examples >= 1, "probe examples must be >= 1, got {}", examples);
  at::NoGradGuard no_grad;
  const bool was_training = model->is_training();
  model->eval();
  RecipeTelemetry out;
  for (int64_t n : pair_sizes) {
    if (paper_probe_length(t, n) - 1 > seq || n > static_cast<int64_t>(t.values.size()) ||
        n > static_cast<int64_t>(t.heldout_keys.size())) {
      out.skipped.push_back(n);
      continue;
    }
    RecipeProbe p;
    p.pairs = n;
    // Fixed seeds per (size, pool): every evaluation of a run sees the same probe rows.
    std::seed_seq train_seeds{static_cast<uint32_t>(seed), static_cast<uint32_t>(n), 1u};
    std::mt19937_64 train_rng(train_seeds);
    std::tie(p.train, p.train_listed) = probe_accuracy(model, t, t.train_keys, n, examples, train_rng);
    std::seed_seq heldout_seeds{static_cast<uint32_t>(seed), static_cast<uint32_t>(n), 2u};
    std::mt19937_64 heldout_rng(heldout_seeds);
    std::tie(p.heldout, p.heldout_listed) = probe_accuracy(model, t, t.heldout_keys, n, examples, heldout_rng);
    out.probes.push_back(p);
  }
  if (t.heldout_keys.size() >= 2) out.heldout_key_cosine = mean_embedding_cosine(model, t.heldout_keys);
  std::vector<int64_t> train_ids(t.train_keys.begin(), t.train_keys.begin() + std::min<size_t>(200, t.train_keys.size()));
  out.train_key_cosine = mean_embedding_cosine(model, train_ids);
  if (was_training) model->train();
  return out;
}

}  // namespace rad
