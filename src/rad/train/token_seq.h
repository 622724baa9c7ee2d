// A read-only sequence of token ids: either owned (a vector, from text tokenized in memory) or a
// concatenation of memory-mapped shards (uint16/uint32 .npy files from `radistill tokenize-corpus`),
// so a training loop samples windows from a corpus of any size without copying it into memory.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

namespace rad {

class TokenSeq {
 public:
  // A contiguous run of ids of `bytes` (2 or 4) bytes each, kept alive by `owner`.
  struct Piece {
    const void* data = nullptr;
    size_t size = 0;
    int bytes = 4;
    std::shared_ptr<const void> owner;
  };

  TokenSeq() = default;
  TokenSeq(std::vector<int32_t> tokens);  // NOLINT: implicit, a vector is a one-piece sequence
  static TokenSeq concat(std::vector<Piece> pieces);

  size_t size() const { return total_; }
  bool empty() const { return total_ == 0; }
  int64_t operator[](size_t i) const;
  // Copies ids [start, start + n) to out (throws rad::Error when out of range).
  void copy(size_t start, size_t n, int64_t* out) const;
  std::vector<int32_t> to_vector() const;  // the whole sequence (small corpora, tests)
  size_t pieces() const { return pieces_.size(); }

 private:
  std::vector<Piece> pieces_;
  std::vector<size_t> begin_;  // begin_[k]: index of piece k's first id
  size_t total_ = 0;
};

}  // namespace rad
