// UTF-8 helpers, the GPT-2 byte <-> unicode table used by byte-level BPE, and Unicode
// normalization forms (through ICU) for the NFC/NFKC/NFD/NFKD normalizers.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>

namespace rad::unicode {

// Length in bytes of the UTF-8 sequence that starts with byte `lead` (1 for invalid leads).
inline int utf8_len(unsigned char lead) {
  if (lead < 0x80) return 1;
  if ((lead >> 5) == 0x6) return 2;
  if ((lead >> 4) == 0xE) return 3;
  if ((lead >> 3) == 0x1E) return 4;
  return 1;
}

// Appends the UTF-8 encoding of code point `cp` to `out`.
void append_utf8(std::string& out, uint32_t cp);

// Decodes the code point at s[i] (s must be valid UTF-8) and advances i.
uint32_t next_code_point(std::string_view s, size_t& i);

bool is_valid_utf8(std::string_view s);

// Replaces every maximal invalid subsequence with U+FFFD, as WHATWG's TextDecoder, Python's
// bytes.decode(errors="replace") and Rust's String::from_utf8_lossy do. Valid input is returned
// unchanged.
std::string sanitize_utf8(std::string_view s);

// GPT-2's reversible byte -> printable code point map (e.g. ' ' -> U+0120 'Ġ').
const std::array<uint32_t, 256>& byte_to_code_point();
// The same map as UTF-8 strings, for fast appends.
const std::array<std::string, 256>& byte_to_utf8();
// Inverse map: code point -> byte, or -1 if the code point is not one of the 256.
int code_point_to_byte(uint32_t cp);

enum class NormalForm { kNFC, kNFD, kNFKC, kNFKD };
// Normalizes valid UTF-8 text with ICU.
std::string normalize(std::string_view text, NormalForm form);

}  // namespace rad::unicode
