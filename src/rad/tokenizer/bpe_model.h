// The BPE model of tokenizer.json ("model": {"type": "BPE", ...}).
//
// Hand-written because neither Debian nor any C++ package manager we may use ships a tokenizer.json
// BPE (and libsentencepiece crashes next to libtorch, docs/DESIGN.md section 9). Speed comes from caching
// the ids of every pre-tokenized word, a per-code-point id table for the initial symbols, merges
// keyed by a packed (left id, right id) integer, and a rank-ordered heap over a linked list of
// symbols (the tokenizers library's algorithm), with scratch buffers reused across words.
#pragma once

#include <nlohmann/json_fwd.hpp>

#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "rad/tokenizer/string_map.h"

namespace rad {

class BpeModel {
 public:
  // Parses tokenizer.json's "model" object; rejects anything but type BPE with an error naming it.
  static BpeModel from_json(const nlohmann::json& model);


  // Appends the ids of one pre-tokenized word.
  void encode_word(std::string_view word, std::vector<int64_t>& out) const;

  std::optional<int64_t> token_to_id(std::string_view token) const;
  // nullptr when the id is not in the model's vocabulary.
  const std::string* id_to_token(int64_t id) const;
  // One past the largest id of the model vocabulary.
  int64_t size() const { return static_cast<int64_t>(id_to_token_.size()); }

 private:
  struct Merge {
    int32_t rank;
    int32_t new_id;
  };
  static uint64_t pair_key(int32_t a, int32_t b) {
    return (static_cast<uint64_t>(static_cast<uint32_t>(a)) << 32) | static_cast<uint32_t>(b);
  }
  void encode_part(std::string_view word, std::vector<int64_t>& out) const;
  void word_to_ids(std::string_view word, std::vector<int32_t>& out) const;
  void initial_symbols(std::string_view word, std::vector<int32_t>& ids, std::vector<uint32_t>& lens) const;
  int32_t char_id(std::string_view ch) const;

  std::unordered_map<std::string, int32_t> vocab_;
  FlatStringMap<int32_t> fast_vocab_;  // the same, for lookups in the hot path
  std::vector<std::string> id_to_token_;
  std::unordered_map<uint64_t, Merge> merges_;
  std::vector<int32_t> bmp_ids_;  // code point < 0x10000 -> id of that single character (-1: not a token)
  std::optional<int32_t> unk_id_;
  std::string continuing_subword_prefix_, end_of_word_suffix_;
  bool byte_fallback_ = false, fuse_unk_ = false, ignore_merges_ = false;
  // True when every token is "▁"* followed by no further "▁" (SentencePiece-style vocabularies): no
  // merge can then join a non-"▁" character with a following "▁", so long words (e.g. a whole text
  // without pre-tokenizer) may be encoded piecewise, split before each such "▁", with identical ids.
  bool metaspace_splittable_ = false;
  int32_t byte_ids_[256];  // <0xXX> tokens for byte fallback (-1: missing)

  // Word -> ids cache (bounded); encode is const and may run from several threads.
  struct CachedIds {
    uint32_t offset = 0, count = 0;  // into Cache::ids
  };
  struct Cache {
    std::mutex mutex;
    FlatStringMap<CachedIds> map;
    std::vector<int32_t> ids;
  };
  std::unique_ptr<Cache> cache_ = std::make_unique<Cache>();
};

}  // namespace rad
