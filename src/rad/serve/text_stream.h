// The text of a reply as its tokens arrive: decoded in context, cut at the first stop string, and
// released only when final - text that may still become part of a stop string, or a UTF-8 sequence
// whose remaining bytes are in the next token, is held back until the next token settles it.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "rad/tokenizer/tokenizer.h"

namespace rad::serve {

class TextStream {
 public:
  // `context`: the last few prompt tokens, decoded together with the reply so that decoders which
  // treat the first token specially (SentencePiece's leading space) see the reply in context.
  TextStream(const Tokenizer& tokenizer, std::vector<int64_t> context, std::vector<std::string> stops);

  // Adds a token; returns the text that became final (possibly empty).
  std::string push(int64_t token);
  // The reply ended: returns the held-back rest (never past a stop string).
  std::string finish();
  bool stopped() const { return stopped_; }  // a stop string appeared; the text ends before it
  const std::string& text() const { return released_; }  // everything released so far

 private:
  std::string decoded() const;
  const Tokenizer& tok_;
  std::vector<int64_t> context_, reply_;
  std::vector<std::string> stops_;
  std::string prefix_;    // decode(context_)
  std::string released_;  // text handed out
  bool stopped_ = false;
};

}  // namespace rad::serve
