#include "rad/tokenizer/bpe_model.h"

#include <fmt/format.h>

#include <nlohmann/json.hpp>
#include <algorithm>

#include "rad/core/error.h"
#include "rad/tokenizer/unicode.h"

namespace rad {

namespace {
constexpr size_t kMaxCachedWordBytes = 256;
constexpr size_t kMaxCacheEntries = 1 << 18;
}  // namespace

BpeModel BpeModel::from_json(const nlohmann::json& model) {
  RAD_CHECK(model.is_object(), "tokenizer.json: \"model\" must be an object");
  std::string type = model.value("type", std::string("BPE"));
  RAD_CHECK(type == "BPE", "tokenizer.json: unsupported model type \"{}\" (supported: BPE)", type);
  if (model.contains("dropout") && !model.at("dropout").is_null()) {
    double dropout = model.at("dropout").get<double>();
    RAD_CHECK(dropout == 0.0 || dropout == 1.0, "tokenizer.json: BPE dropout {} is not supported (only null)", dropout);
  }
  BpeModel m;
  int32_t max_id = -1;
  RAD_CHECK(model.contains("vocab") && model.at("vocab").is_object(), "tokenizer.json: model.vocab must be an object");
  // Ids index a table, so a hostile file must not make it huge: real vocabularies are dense, and we
  // accept gaps up to 4x the number of entries (+64k). Found by fuzzing (an id of 1e8 asked for 3 GB).
  const int64_t id_limit = 4 * static_cast<int64_t>(model.at("vocab").size()) + 65536;
  for (const auto& [token, id_json] : model.at("vocab").items()) {
    RAD_CHECK(id_json.is_number_integer(), "tokenizer.json: id of token \"{}\" must be an integer, got {}", token,
              id_json.dump());
    int64_t id64 = id_json.get<int64_t>();
    RAD_CHECK(id64 >= 0 && id64 < id_limit, "tokenizer.json: id {} of token \"{}\" is out of range [0, {})", id64, token,
              id_limit);
    int32_t id = static_cast<int32_t>(id64);
    m.vocab_.emplace(token, id);
    max_id = std::max(max_id, id);
  }
  m.id_to_token_.assign(static_cast<size_t>(max_id + 1), std::string());
  for (const auto& [token, id] : m.vocab_) m.fast_vocab_.insert(token, id);
  for (const auto& [token, id] : m.vocab_) m.id_to_token_[id] = token;

  auto str_or_empty = [&](const char* key) {
    return model.contains(key) && model.at(key).is_string() ? model.at(key).get<std::string>() : std::string();
  };
  m.continuing_subword_prefix_ = str_or_empty("continuing_subword_prefix");
  m.end_of_word_suffix_ = str_or_empty("end_of_word_suffix");
  m.byte_fallback_ = model.value("byte_fallback", false);
  m.fuse_unk_ = model.value("fuse_unk", false);
  m.ignore_merges_ = model.value("ignore_merges", false);
  std::string unk = str_or_empty("unk_token");
  if (!unk.empty()) {
    auto it = m.vocab_.find(unk);
    RAD_CHECK(it != m.vocab_.end(), "tokenizer.json: unk_token \"{}\" is not in the vocabulary", unk);
    m.unk_id_ = it->second;
  }
  for (int b = 0; b < 256; ++b) {
    auto it = m.vocab_.find(fmt::format("<0x{:02X}>", b));
    m.byte_ids_[b] = it == m.vocab_.end() ? -1 : it->second;
  }

  // Merges: "a b" strings (all versions) or ["a", "b"] pairs (tokenizers >= 0.20).
  const auto& merges = model.at("merges");
  m.merges_.reserve(merges.size() * 2);
  int32_t rank = 0;
  for (const auto& merge : merges) {
    std::string left, right;
    if (merge.is_string()) {
      const std::string& s = merge.get_ref<const std::string&>();
      size_t space = s.find(' ', 1);
      RAD_CHECK(space != std::string::npos, "tokenizer.json: merge \"{}\" is not of the form \"a b\"", s);
      left = s.substr(0, space);
      right = s.substr(space + 1);
    } else {
      RAD_CHECK(merge.is_array() && merge.size() == 2, "tokenizer.json: merge {} is not a pair", merge.dump());
      left = merge[0].get<std::string>();
      right = merge[1].get<std::string>();
    }
    auto l = m.vocab_.find(left), r = m.vocab_.find(right), n = m.vocab_.find(left + right);
    RAD_CHECK(l != m.vocab_.end() && r != m.vocab_.end(), "tokenizer.json: merge \"{} {}\" uses a token missing from the vocabulary",
              left, right);
    RAD_CHECK(n != m.vocab_.end(), "tokenizer.json: merge \"{} {}\" makes \"{}{}\", which is missing from the vocabulary", left,
              right, left, right);
    // The first (lowest-rank) occurrence of a pair wins, as in the tokenizers library.
    m.merges_.emplace(pair_key(l->second, r->second), Merge{rank, n->second});
    ++rank;
  }

  const std::string kMeta = "\xE2\x96\x81";  // U+2581
  bool any_meta = false, splittable = true;
  for (const auto& [token, id] : m.vocab_) {
    size_t pos = 0;
    while (token.compare(pos, kMeta.size(), kMeta) == 0) pos += kMeta.size();
    any_meta = any_meta || pos > 0;
    if (token.find(kMeta, pos) != std::string::npos) splittable = false;
  }
  m.metaspace_splittable_ = any_meta && splittable && m.continuing_subword_prefix_.empty() && m.end_of_word_suffix_.empty();

  // Single-character tokens of the Basic Multilingual Plane, for the initial symbols.
  m.bmp_ids_.assign(0x10000, -1);
  for (const auto& [token, id] : m.vocab_) {
    if (token.empty()) continue;
    size_t i = 0;
    uint32_t cp = unicode::next_code_point(token, i);
    if (i == token.size() && cp < 0x10000) m.bmp_ids_[cp] = id;
  }
  return m;
}

std::optional<int64_t> BpeModel::token_to_id(std::string_view token) const {
  auto it = vocab_.find(std::string(token));
  if (it == vocab_.end()) return std::nullopt;
  return it->second;
}

const std::string* BpeModel::id_to_token(int64_t id) const {
  if (id < 0 || id >= size()) return nullptr;
  const std::string& t = id_to_token_[static_cast<size_t>(id)];
  if (t.empty() && !vocab_.count(t)) return nullptr;
  return &t;
}

int32_t BpeModel::char_id(std::string_view ch) const {
  const int32_t* id = fast_vocab_.find(ch);
  return id ? *id : -1;
}

// Splits the word into its initial symbols (one per character, or byte-fallback / unk tokens),
// as the tokenizers library's BPE::merge_word does.
void BpeModel::initial_symbols(std::string_view word, std::vector<int32_t>& ids, std::vector<uint32_t>& lens) const {
  const bool affixes = !continuing_subword_prefix_.empty() || !end_of_word_suffix_.empty();
  std::optional<std::pair<int32_t, uint32_t>> pending_unk;
  std::string affixed;
  size_t i = 0;
  while (i < word.size()) {
    size_t start = i;
    uint32_t cp = unicode::next_code_point(word, i);
    std::string_view ch = word.substr(start, i - start);
    int32_t id;
    if (!affixes) {
      id = cp < 0x10000 ? bmp_ids_[cp] : char_id(ch);
    } else {
      affixed.clear();
      if (start > 0) affixed += continuing_subword_prefix_;
      affixed.append(ch);
      if (i == word.size()) affixed += end_of_word_suffix_;
      id = char_id(affixed);
    }
    if (id >= 0) {
      if (pending_unk) {
        ids.push_back(pending_unk->first);
        lens.push_back(pending_unk->second);
        pending_unk.reset();
      }
      ids.push_back(id);
      lens.push_back(static_cast<uint32_t>(ch.size()));
      continue;
    }
    if (byte_fallback_) {
      bool all = true;
      for (char c : ch) all = all && byte_ids_[static_cast<unsigned char>(c)] >= 0;
      if (all) {
        if (pending_unk) {
          ids.push_back(pending_unk->first);
          lens.push_back(pending_unk->second);
          pending_unk.reset();
        }
        for (char c : ch) {
          ids.push_back(byte_ids_[static_cast<unsigned char>(c)]);
          lens.push_back(1);
        }
        continue;
      }
    }
    RAD_CHECK(unk_id_.has_value(), "tokenizer: character \"{}\" is not in the vocabulary and the BPE model has no unk_token",
              std::string(ch));
    if (pending_unk && fuse_unk_) {
      pending_unk->second += static_cast<uint32_t>(ch.size());
    } else {
      if (pending_unk) {
        ids.push_back(pending_unk->first);
        lens.push_back(pending_unk->second);
      }
      pending_unk = std::make_pair(*unk_id_, static_cast<uint32_t>(ch.size()));
    }
  }
  if (pending_unk) {
    ids.push_back(pending_unk->first);
    lens.push_back(pending_unk->second);
  }
}

void BpeModel::word_to_ids(std::string_view word, std::vector<int32_t>& out) const {
  thread_local std::vector<int32_t> ids;
  thread_local std::vector<uint32_t> lens;
  ids.clear();
  lens.clear();
  initial_symbols(word, ids, lens);
  const int n = static_cast<int>(ids.size());
  if (n <= 1) {
    out.insert(out.end(), ids.begin(), ids.end());
    return;
  }
  // Doubly linked list of symbols; a merged-away symbol gets len 0.
  thread_local std::vector<int> prev, next;
  prev.resize(n);
  next.resize(n);
  for (int k = 0; k < n; ++k) {
    prev[k] = k - 1;
    next[k] = k + 1 < n ? k + 1 : -1;
  }
  struct Candidate {
    int32_t rank;
    int pos;
    int32_t new_id;
  };
  // Min-heap on (rank, pos): the lowest-rank merge first, the leftmost among equal ranks.
  auto later = [](const Candidate& a, const Candidate& b) { return a.rank != b.rank ? a.rank > b.rank : a.pos > b.pos; };
  thread_local std::vector<Candidate> heap;
  heap.clear();
  auto push_pair = [&](int pos) {
    int nx = next[pos];
    if (nx < 0) return;
    auto it = merges_.find(pair_key(ids[pos], ids[nx]));
    if (it == merges_.end()) return;
    heap.push_back({it->second.rank, pos, it->second.new_id});
    std::push_heap(heap.begin(), heap.end(), later);
  };
  for (int k = 0; k + 1 < n; ++k) push_pair(k);
  while (!heap.empty()) {
    std::pop_heap(heap.begin(), heap.end(), later);
    Candidate top = heap.back();
    heap.pop_back();
    int pos = top.pos;
    if (lens[pos] == 0) continue;
    int nx = next[pos];
    if (nx < 0) continue;
    auto it = merges_.find(pair_key(ids[pos], ids[nx]));
    if (it == merges_.end() || it->second.new_id != top.new_id) continue;  // stale candidate
    ids[pos] = top.new_id;
    lens[pos] += lens[nx];
    lens[nx] = 0;
    next[pos] = next[nx];
    if (next[pos] >= 0) prev[next[pos]] = pos;
    if (prev[pos] >= 0) push_pair(prev[pos]);
    push_pair(pos);
  }
  for (int k = 0; k >= 0; k = next[k]) out.push_back(ids[k]);
}

void BpeModel::encode_word(std::string_view word, std::vector<int64_t>& out) const {
  if (word.empty()) return;
  if (metaspace_splittable_ && !ignore_merges_ && word.size() > 64) {
    static const std::string_view kMeta = "\xE2\x96\x81";
    size_t start = 0;
    for (size_t pos = word.find(kMeta, 1); pos != std::string_view::npos; pos = word.find(kMeta, pos + kMeta.size())) {
      if (pos < kMeta.size() || word.compare(pos - kMeta.size(), kMeta.size(), kMeta) == 0) continue;  // in a run of "▁"
      encode_part(word.substr(start, pos - start), out);
      start = pos;
    }
    encode_part(word.substr(start), out);
    return;
  }
  encode_part(word, out);
}

void BpeModel::encode_part(std::string_view word, std::vector<int64_t>& out) const {
  if (word.empty()) return;
  const uint64_t h = hash_bytes(word);
  if (ignore_merges_) {
    if (const int32_t* id = fast_vocab_.find(word, h)) {
      out.push_back(*id);
      return;
    }
  }
  const bool cacheable = word.size() <= kMaxCachedWordBytes;
  if (cacheable) {
    std::lock_guard<std::mutex> lock(cache_->mutex);
    if (const CachedIds* c = cache_->map.find(word, h)) {
      const int32_t* p = cache_->ids.data() + c->offset;
      out.insert(out.end(), p, p + c->count);
      return;
    }
  }
  thread_local std::vector<int32_t> ids;
  ids.clear();
  word_to_ids(word, ids);
  out.insert(out.end(), ids.begin(), ids.end());
  if (cacheable) {
    std::lock_guard<std::mutex> lock(cache_->mutex);
    if (cache_->map.size() < kMaxCacheEntries) {
      CachedIds c{static_cast<uint32_t>(cache_->ids.size()), static_cast<uint32_t>(ids.size())};
      if (cache_->map.insert(word, c)) cache_->ids.insert(cache_->ids.end(), ids.begin(), ids.end());
    }
  }
}

}  // namespace rad
