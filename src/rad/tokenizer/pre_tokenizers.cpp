#include "rad/tokenizer/pre_tokenizers.h"

#include <nlohmann/json.hpp>

#include "rad/core/error.h"
#include "rad/tokenizer/pattern.h"
#include "rad/tokenizer/unicode.h"

namespace rad {

const char* const kGpt2SplitRegex = R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";
const char* const kLlama3SplitRegex =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";

namespace {

enum class Behavior { kRemoved, kIsolated, kMergedWithPrevious, kMergedWithNext, kContiguous };

Behavior parse_behavior(const std::string& s) {
  if (s == "Removed") return Behavior::kRemoved;
  if (s == "Isolated") return Behavior::kIsolated;
  if (s == "MergedWithPrevious") return Behavior::kMergedWithPrevious;
  if (s == "MergedWithNext") return Behavior::kMergedWithNext;
  if (s == "Contiguous") return Behavior::kContiguous;
  fail("tokenizer.json: unsupported split behavior \"{}\"", s);
}

// Splits `piece` at the given delimiter spans (sorted, non-overlapping, inside the piece) following
// the tokenizers library's SplitDelimiterBehavior, appending the resulting pieces to `out`.
void split_piece(const Piece& piece, const std::vector<std::pair<size_t, size_t>>& delims, Behavior behavior,
                 std::vector<Piece>& out) {
  // Segments covering the piece: (begin, end, is_delimiter).
  struct Seg {
    size_t b, e;
    bool delim;
  };
  std::vector<Seg> segs;
  size_t last = piece.begin;
  for (auto [b, e] : delims) {
    if (b > last) segs.push_back({last, b, false});
    segs.push_back({b, e, true});
    last = e;
  }
  if (last < piece.end) segs.push_back({last, piece.end, false});

  auto emit = [&](size_t b, size_t e) {
    if (e > b) out.push_back({b, e, piece.at_text_start && b == piece.begin});
  };
  switch (behavior) {
    case Behavior::kRemoved:
      for (const auto& s : segs)
        if (!s.delim) emit(s.b, s.e);
      break;
    case Behavior::kIsolated:
      for (const auto& s : segs) emit(s.b, s.e);
      break;
    case Behavior::kContiguous: {
      size_t i = 0;
      while (i < segs.size()) {
        size_t j = i + 1;
        if (segs[i].delim)
          while (j < segs.size() && segs[j].delim) ++j;
        emit(segs[i].b, segs[j - 1].e);
        i = j;
      }
      break;
    }
    case Behavior::kMergedWithPrevious: {
      size_t start = piece.begin;
      for (const auto& s : segs) {
        if (s.delim) {
          emit(start, s.e);
          start = s.e;
        }
      }
      emit(start, piece.end);
      break;
    }
    case Behavior::kMergedWithNext: {
      size_t start = piece.begin;
      for (const auto& s : segs) {
        if (s.delim && s.b > start) {
          emit(start, s.b);
          start = s.b;
        }
      }
      emit(start, piece.end);
      break;
    }
  }
}

class SplitPreTokenizer : public PreTokenizer {
 public:
  SplitPreTokenizer(Pattern pattern, Behavior behavior, bool invert)
      : pattern_(std::move(pattern)), behavior_(behavior), invert_(invert) {}

  void pre_tokenize(PieceList& list) const override {
    std::vector<Piece> out;
    out.reserve(list.pieces.size() * 2 + 16);
    std::vector<std::pair<size_t, size_t>> delims;
    for (const Piece& p : list.pieces) {
      delims.clear();
      std::string_view s = list.view(p);
      pattern_.for_each_match(s, [&](size_t b, size_t e) { delims.emplace_back(p.begin + b, p.begin + e); });
      if (invert_) {  // the non-matching parts become the delimiters
        std::vector<std::pair<size_t, size_t>> inverted;
        size_t last = p.begin;
        for (auto [b, e] : delims) {
          if (b > last) inverted.emplace_back(last, b);
          last = e;
        }
        if (last < p.end) inverted.emplace_back(last, p.end);
        delims.swap(inverted);
      }
      split_piece(p, delims, behavior_, out);
    }
    list.pieces.swap(out);
  }

 private:
  Pattern pattern_;
  Behavior behavior_;
  bool invert_;
};

class ByteLevelPreTokenizer : public PreTokenizer {
 public:
  ByteLevelPreTokenizer(bool add_prefix_space, bool use_regex)
      : add_prefix_space_(add_prefix_space), regex_(use_regex ? std::make_unique<Regex>(kGpt2SplitRegex) : nullptr) {}

  void pre_tokenize(PieceList& list) const override {
    const auto& table = unicode::byte_to_utf8();
    PieceList out;
    out.text.reserve(list.text.size() + list.text.size() / 4 + 16);
    out.pieces.reserve(list.pieces.size());
    std::string prefixed;
    for (const Piece& p : list.pieces) {
      std::string_view s = list.view(p);
      if (add_prefix_space_ && (s.empty() || s.front() != ' ')) {
        prefixed.assign(" ");
        prefixed.append(s);
        s = prefixed;
      }
      auto emit = [&](size_t b, size_t e) {
        size_t start = out.text.size();
        for (size_t i = b; i < e; ++i) out.text += table[static_cast<unsigned char>(s[i])];
        out.pieces.push_back({start, out.text.size(), p.at_text_start && b == 0});
      };
      if (regex_) {
        std::vector<std::pair<size_t, size_t>> all;
        regex_->for_each_match(s, [&](size_t b, size_t e) { all.emplace_back(b, e); });
        // Isolated: the gaps between matches are pieces too.
        size_t last = 0;
        for (auto [b, e] : all) {
          if (b > last) emit(last, b);
          emit(b, e);
          last = e;
        }
        if (last < s.size()) emit(last, s.size());
      } else if (!s.empty()) {
        emit(0, s.size());
      }
    }
    list = std::move(out);
  }

 private:
  bool add_prefix_space_;
  std::unique_ptr<Regex> regex_;
};

enum class PrependScheme { kAlways, kFirst, kNever };

class MetaspacePreTokenizer : public PreTokenizer {
 public:
  MetaspacePreTokenizer(std::string replacement, PrependScheme scheme, bool split)
      : replacement_(std::move(replacement)), scheme_(scheme), split_(split) {}

  void pre_tokenize(PieceList& list) const override {
    PieceList out;
    out.text.reserve(list.text.size() * 2 + 16);
    for (const Piece& p : list.pieces) {
      std::string_view s = list.view(p);
      size_t start = out.text.size();
      bool starts_with_rep = s.substr(0, 1) == " " || s.substr(0, replacement_.size()) == replacement_;
      bool prepend = !starts_with_rep && (scheme_ == PrependScheme::kAlways ||
                                          (scheme_ == PrependScheme::kFirst && p.at_text_start));
      if (prepend) out.text += replacement_;
      for (char c : s) {
        if (c == ' ')
          out.text += replacement_;
        else
          out.text += c;
      }
      Piece whole{start, out.text.size(), p.at_text_start};
      if (!split_) {
        if (whole.end > whole.begin) out.pieces.push_back(whole);
        continue;
      }
      std::vector<std::pair<size_t, size_t>> delims;
      std::string_view w = std::string_view(out.text).substr(start);
      for (size_t pos = 0; (pos = w.find(replacement_, pos)) != std::string_view::npos; pos += replacement_.size())
        delims.emplace_back(start + pos, start + pos + replacement_.size());
      split_piece(whole, delims, Behavior::kMergedWithNext, out.pieces);
    }
    list = std::move(out);
  }

 private:
  std::string replacement_;
  PrependScheme scheme_;
  bool split_;
};

class SequencePreTokenizer : public PreTokenizer {
 public:
  explicit SequencePreTokenizer(std::vector<std::unique_ptr<PreTokenizer>> parts) : parts_(std::move(parts)) {}
  void pre_tokenize(PieceList& list) const override {
    for (const auto& p : parts_) p->pre_tokenize(list);
  }

 private:
  std::vector<std::unique_ptr<PreTokenizer>> parts_;
};

}  // namespace

std::unique_ptr<PreTokenizer> make_pre_tokenizer(const nlohmann::json& config) {
  if (config.is_null()) return nullptr;
  RAD_CHECK(config.is_object() && config.contains("type"), "tokenizer.json: pre_tokenizer without a \"type\": {}",
            config.dump().substr(0, 200));
  const std::string type = config.at("type").get<std::string>();
  if (type == "Sequence") {
    std::vector<std::unique_ptr<PreTokenizer>> parts;
    for (const auto& c : config.at("pretokenizers")) {
      auto p = make_pre_tokenizer(c);
      if (p) parts.push_back(std::move(p));
    }
    return std::make_unique<SequencePreTokenizer>(std::move(parts));
  }
  if (type == "Split") {
    return std::make_unique<SplitPreTokenizer>(Pattern::from_json(config.at("pattern")),
                                               parse_behavior(config.at("behavior").get<std::string>()),
                                               config.value("invert", false));
  }
  if (type == "ByteLevel")
    return std::make_unique<ByteLevelPreTokenizer>(config.value("add_prefix_space", true), config.value("use_regex", true));
  if (type == "Metaspace") {
    std::string replacement = config.value("replacement", std::string("\xE2\x96\x81"));
    PrependScheme scheme = PrependScheme::kAlways;
    if (config.contains("prepend_scheme") && !config.at("prepend_scheme").is_null()) {
      std::string s = config.at("prepend_scheme").get<std::string>();
      if (s == "always") scheme = PrependScheme::kAlways;
      else if (s == "first") scheme = PrependScheme::kFirst;
      else if (s == "never") scheme = PrependScheme::kNever;
      else fail("tokenizer.json: unsupported Metaspace prepend_scheme \"{}\"", s);
    } else if (config.contains("add_prefix_space")) {
      scheme = config.at("add_prefix_space").get<bool>() ? PrependScheme::kAlways : PrependScheme::kNever;
    }
    return std::make_unique<MetaspacePreTokenizer>(replacement, scheme, config.value("split", true));
  }
  if (type == "Digits") {
    bool individual = config.value("individual_digits", false);
    return std::make_unique<SplitPreTokenizer>(Pattern::regex(individual ? "[0-9]" : "[0-9]+"), Behavior::kIsolated, false);
  }
  if (type == "Whitespace")
    return std::make_unique<SplitPreTokenizer>(Pattern::regex("\\w+|[^\\w\\s]+"), Behavior::kRemoved, true);
  if (type == "WhitespaceSplit")
    return std::make_unique<SplitPreTokenizer>(Pattern::regex("\\s+"), Behavior::kRemoved, false);
  fail("tokenizer.json: unsupported pre_tokenizer type \"{}\" (supported: Sequence, Split, ByteLevel, Metaspace, Digits, "
       "Whitespace, WhitespaceSplit)", type);
}

}  // namespace rad
