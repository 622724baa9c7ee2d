#include "rad/train/token_shards.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include <cctype>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <optional>
#include <string_view>

#include "rad/core/atomic_file.h"
#include "rad/core/error.h"
#include "rad/core/log.h"
#include "rad/core/progress.h"
#include "rad/io/mapped_file.h"

namespace rad {
namespace fs = std::filesystem;

namespace {

constexpr int kFormatVersion = 1;
constexpr size_t kBlockBytes = size_t{1} << 16;  // TokenCorpus::from_text's encoding block
constexpr size_t kNpyHeaderBytes = 128;          // header written by this file (fits any shape)

uint64_t fnv1a64(std::string_view s, uint64_t h = 1469598103934665603ull) {
  for (unsigned char c : s) {
    h ^= c;
    h *= 1099511628211ull;
  }
  return h;
}

bool is_jsonl(const std::string& path) {
  std::string ext = fs::path(path).extension().string();
  for (auto& c : ext) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return ext == ".jsonl" || ext == ".ndjson";
}

// Where a shard starts: the input line (a text line or a JSONL record) at which the encoding block
// holding its first id begins, and how many of that block's ids belong to earlier shards.
struct Position {
  int64_t input = 0;        // index into the inputs
  int64_t offset = 0;       // byte offset of the physical line in that input
  int64_t line_number = 1;  // its 1-based line number (for messages)
  int64_t sub = 0;          // logical lines of that JSONL record before this one
  int64_t line = 0;         // global index of the logical line
  int64_t skip = 0;         // ids of the block that belong to earlier shards

  nlohmann::json to_json() const {
    return {{"input", input}, {"offset", offset}, {"line_number", line_number}, {"sub", sub}, {"line", line},
            {"skip", skip}};
  }
  static Position from_json(const nlohmann::json& j) {
    Position p;
    p.input = j.at("input").get<int64_t>();
    p.offset = j.at("offset").get<int64_t>();
    p.line_number = j.at("line_number").get<int64_t>();
    p.sub = j.at("sub").get<int64_t>();
    p.line = j.at("line").get<int64_t>();
    p.skip = j.at("skip").get<int64_t>();
    return p;
  }
};

// Reads the logical lines of the inputs (each with "\n" appended) from a position on, in memory
// bounded by max_line_bytes plus a read buffer.
class LineCursor {
 public:
  LineCursor(const std::vector<std::string>& inputs, const std::string& text_field, int64_t max_line_bytes)
      : inputs_(inputs), field_(text_field), max_line_(max_line_bytes), buf_(size_t{1} << 20) {}
  ~LineCursor() { close(); }
  LineCursor(const LineCursor&) = delete;
  LineCursor& operator=(const LineCursor&) = delete;

  void seek(const Position& p) {
    subs_.clear();
    next_sub_ = 0;
    line_ = p.line;
    open(p.input, p.offset, p.line_number);
    if (p.sub > 0) {
      const bool ok = read_physical();
      RAD_CHECK(ok && input_ == p.input && static_cast<int64_t>(subs_.size()) > p.sub,
                "{}:{}: the index points into a record that does not have {} lines; the input changed since the "
                "index was written",
                inputs_[p.input], p.line_number, p.sub + 1);
      next_sub_ = static_cast<size_t>(p.sub);
    }
  }

  // The next logical line and where it starts; false after the last input.
  bool next(std::string* line, Position* where) {
    while (next_sub_ >= subs_.size()) {
      subs_.clear();
      next_sub_ = 0;
      if (!read_physical()) return false;
    }
    *where = Position{input_, cur_offset_, cur_number_, static_cast<int64_t>(next_sub_), line_, 0};
    *line = std::move(subs_[next_sub_++]);
    ++line_;
    return true;
  }

  // Bytes of all inputs consumed so far (for progress).
  int64_t bytes_done() const { return bytes_before_ + file_offset_; }

 private:
  void close() {
    if (file_) std::fclose(file_);
    file_ = nullptr;
  }

  void open(int64_t input, int64_t offset, int64_t line_number) {
    close();
    input_ = input;
    bytes_before_ = 0;
    for (int64_t i = 0; i < input && i < static_cast<int64_t>(inputs_.size()); ++i)
      bytes_before_ += static_cast<int64_t>(fs::file_size(inputs_[i]));
    begin_ = end_ = 0;
    file_offset_ = offset;
    next_number_ = line_number;
    if (input >= static_cast<int64_t>(inputs_.size())) return;
    file_ = std::fopen(inputs_[input].c_str(), "rb");
    RAD_CHECK(file_ != nullptr, "cannot open {}: {}", inputs_[input], std::strerror(errno));
    RAD_CHECK(std::fseek(file_, offset, SEEK_SET) == 0, "cannot seek to byte {} of {}: {}", offset, inputs_[input],
              std::strerror(errno));
  }

  // Reads the next non-empty physical line (moving on to the next input at the end of one) into
  // subs_ as logical lines.
  bool read_physical() {
    for (;;) {
      if (!file_) return false;
      std::string physical;
      bool got = false, newline = false;
      const int64_t start = file_offset_;
      while (!newline) {
        if (begin_ == end_) {
          end_ = std::fread(buf_.data(), 1, buf_.size(), file_);
          begin_ = 0;
          RAD_CHECK(!std::ferror(file_), "cannot read {}: {}", inputs_[input_], std::strerror(errno));
          if (end_ == 0) break;
        }
        const char* b = buf_.data() + begin_;
        const void* nl = std::memchr(b, '\n', end_ - begin_);
        const size_t take = nl ? static_cast<size_t>(static_cast<const char*>(nl) - b) : end_ - begin_;
        RAD_CHECK(physical.size() + take <= static_cast<size_t>(max_line_),
                  "{}:{}: line longer than {} bytes (--max-line-bytes); split the input or raise the limit",
                  inputs_[input_], next_number_, max_line_);
        physical.append(b, take);
        begin_ += take + (nl ? 1 : 0);
        file_offset_ += static_cast<int64_t>(take + (nl ? 1 : 0));
        got = true;
        newline = nl != nullptr;
      }
      if (!got) {  // the end of this input
        open(input_ + 1, 0, 1);
        continue;
      }
      cur_offset_ = start;
      cur_number_ = next_number_++;
      if (!is_jsonl(inputs_[input_])) {
        subs_.push_back(std::move(physical));
        subs_.back() += '\n';
        return true;
      }
      if (physical.find_first_not_of(" \t\r") == std::string::npos) continue;  // blank JSONL line
      nlohmann::json record;
      try {
        record = nlohmann::json::parse(physical);
      } catch (const nlohmann::json::exception& e) {
        fail("{}:{}: not valid JSON ({}); expected one JSON object per line with a string field \"{}\"",
             inputs_[input_], cur_number_, e.what(), field_);
      }
      if (!record.is_object() || !record.contains(field_) || !record[field_].is_string()) {
        const std::string got_what = !record.is_object()       ? std::string("a JSON ") + record.type_name()
                                     : !record.contains(field_) ? std::string("an object without it")
                                                                : std::string("\"") + field_ + "\" of type " +
                                                                      record[field_].type_name();
        fail("{}:{}: expected a JSON object with a string field \"{}\", got {}", inputs_[input_], cur_number_, field_,
             got_what);
      }
      const std::string& text = record[field_].get_ref<const std::string&>();
      for (size_t b = 0; b < text.size();) {  // std::getline's lines, each given its "\n"
        size_t e = text.find('\n', b);
        if (e == std::string::npos) e = text.size();
        subs_.push_back(text.substr(b, e - b) + "\n");
        b = e + 1;
      }
      if (!subs_.empty()) return true;  // an empty text adds no line
    }
  }

  const std::vector<std::string>& inputs_;
  std::string field_;
  int64_t max_line_;
  std::vector<char> buf_;
  size_t begin_ = 0, end_ = 0;
  std::FILE* file_ = nullptr;
  int64_t input_ = 0, file_offset_ = 0, bytes_before_ = 0, line_ = 0;
  int64_t next_number_ = 1, cur_number_ = 1, cur_offset_ = 0;
  std::vector<std::string> subs_;
  size_t next_sub_ = 0;
};

const char* descr_of(int bytes) { return bytes == 2 ? "<u2" : "<u4"; }

// A .npy v1.0 header of exactly kNpyHeaderBytes for a 1-D array of `count` ids.
std::string npy_header(int bytes, int64_t count) {
  std::string dict = fmt::format("{{'descr': '{}', 'fortran_order': False, 'shape': ({},), }}", descr_of(bytes), count);
  const size_t len = kNpyHeaderBytes - 10;
  dict.resize(len - 1, ' ');
  dict += '\n';
  std::string h("\x93NUMPY\x01\x00", 8);
  h += static_cast<char>(len & 0xff);
  h += static_cast<char>(len >> 8);
  return h + dict;
}

struct NpyShard {
  int bytes = 0;          // 2 or 4
  int64_t count = 0;      // ids
  size_t data_offset = 0; // bytes before the first id
};

// Reads and checks a shard's .npy header and size; errors name the file and what was expected.
NpyShard check_shard(const std::string& path, int expect_bytes, int64_t expect_count, int64_t file_size) {
  std::FILE* f = std::fopen(path.c_str(), "rb");
  RAD_CHECK(f != nullptr, "token shard {} is missing or unreadable ({}); re-run `radistill tokenize-corpus` with the "
            "same arguments to rewrite it", path, std::strerror(errno));
  char head[4096];
  const size_t n = std::fread(head, 1, sizeof head, f);
  std::fclose(f);
  RAD_CHECK(n >= 10 && std::memcmp(head, "\x93NUMPY", 6) == 0, "token shard {}: not a .npy file ({} bytes)", path, n);
  const int major = static_cast<unsigned char>(head[6]);
  size_t hlen = 0, pre = 0;
  if (major == 1) {
    hlen = static_cast<unsigned char>(head[8]) | (static_cast<size_t>(static_cast<unsigned char>(head[9])) << 8);
    pre = 10;
  } else {
    RAD_CHECK(n >= 12 && (major == 2 || major == 3), "token shard {}: unsupported .npy version {}", path, major);
    hlen = 0;
    for (int i = 0; i < 4; ++i) hlen |= static_cast<size_t>(static_cast<unsigned char>(head[8 + i])) << (8 * i);
    pre = 12;
  }
  RAD_CHECK(pre + hlen <= n, "token shard {}: truncated .npy header (file has {} bytes, header needs {})", path, n,
            pre + hlen);
  const std::string dict(head + pre, hlen);
  NpyShard s;
  s.data_offset = pre + hlen;
  if (dict.find("'<u2'") != std::string::npos) s.bytes = 2;
  else if (dict.find("'<u4'") != std::string::npos) s.bytes = 4;
  else fail("token shard {}: dtype in header {} is not <u2 or <u4", path, dict);
  RAD_CHECK(dict.find("'fortran_order': False") != std::string::npos, "token shard {}: fortran_order is not False", path);
  const size_t sh = dict.find("'shape': (");
  RAD_CHECK(sh != std::string::npos, "token shard {}: no shape in header {}", path, dict);
  char* end = nullptr;
  s.count = std::strtoll(dict.c_str() + sh + 10, &end, 10);
  RAD_CHECK(end && end[0] == ',' && end[1] == ')', "token shard {}: shape in header {} is not 1-D", path, dict);
  RAD_CHECK(s.bytes == expect_bytes, "token shard {}: ids of {} bytes, but the index says {}", path, s.bytes,
            expect_bytes);
  RAD_CHECK(s.count == expect_count, "token shard {}: holds {} tokens, but the index says {}", path, s.count,
            expect_count);
  const int64_t want = static_cast<int64_t>(s.data_offset) + s.count * s.bytes;
  RAD_CHECK(file_size == want,
            "token shard {} is truncated or damaged: {} bytes, expected {} ({} header + {} tokens x {} bytes); "
            "re-run `radistill tokenize-corpus` with the same arguments to rewrite it",
            path, file_size, want, s.data_offset, s.count, s.bytes);
  RAD_CHECK(s.data_offset % 4 == 0, "token shard {}: ids start at byte {}, not 4-byte aligned", path, s.data_offset);
  return s;
}

int64_t size_of(const std::string& path) {
  std::error_code ec;
  auto n = fs::file_size(path, ec);
  return ec ? -1 : static_cast<int64_t>(n);
}

// One shard being written: to a temp file next to it, renamed into place by finish().
class ShardWriter {
 public:
  ShardWriter(std::string path, int bytes, int64_t vocab) : path_(std::move(path)), bytes_(bytes), vocab_(vocab) {
    fs::path p(path_);
    tmp_ = (p.parent_path() / ("." + p.filename().string() + ".tmp")).string();
    fd_ = ::open(tmp_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    RAD_CHECK(fd_ >= 0, "cannot create {}: {}", tmp_, std::strerror(errno));
    const std::string h = npy_header(bytes_, 0);
    write_all(fd_, h.data(), h.size(), tmp_);
  }
  ~ShardWriter() {
    if (fd_ >= 0) {
      ::close(fd_);
      ::unlink(tmp_.c_str());
    }
  }
  ShardWriter(const ShardWriter&) = delete;
  ShardWriter& operator=(const ShardWriter&) = delete;

  void append(const int64_t* ids, size_t n) {
    for (size_t i = 0; i < n; ++i) {
      RAD_CHECK(ids[i] >= 0 && ids[i] < vocab_, "the tokenizer produced id {}, outside its vocabulary of {}", ids[i],
                vocab_);
      const uint32_t v = static_cast<uint32_t>(ids[i]);
      buf_.append(reinterpret_cast<const char*>(&v), bytes_);  // little-endian host
    }
    count_ += static_cast<int64_t>(n);
    if (buf_.size() >= (size_t{1} << 20)) flush();
  }

  void finish() {
    flush();
    const std::string h = npy_header(bytes_, count_);
    RAD_CHECK(::pwrite(fd_, h.data(), h.size(), 0) == static_cast<ssize_t>(h.size()), "cannot write {}: {}", tmp_,
              std::strerror(errno));
    RAD_CHECK(::fsync(fd_) == 0, "cannot fsync {}: {}", tmp_, std::strerror(errno));
    RAD_CHECK(::close(fd_) == 0, "cannot close {}: {}", tmp_, std::strerror(errno));
    fd_ = -1;
    RAD_CHECK(::rename(tmp_.c_str(), path_.c_str()) == 0, "cannot rename {} to {}: {}", tmp_, path_,
              std::strerror(errno));
  }

  int64_t count() const { return count_; }

 private:
  void flush() {
    write_all(fd_, buf_.data(), buf_.size(), tmp_);
    buf_.clear();
  }
  std::string path_, tmp_;
  int bytes_;
  int64_t vocab_;
  int fd_ = -1;
  int64_t count_ = 0;
  std::string buf_;
};

nlohmann::json read_index(const std::string& path) {
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(read_text_file(path));
  } catch (const nlohmann::json::exception& e) {
    fail("{}: invalid JSON ({})", path, e.what());
  }
  RAD_CHECK(j.is_object() && j.value("format", "") == "radistill-tokens",
            "{}: not a radistill token index (field \"format\" is not \"radistill-tokens\")", path);
  RAD_CHECK(j.value("version", 0) == kFormatVersion, "{}: token index version {}, this build reads version {}", path,
            j.value("version", 0), kFormatVersion);
  return j;
}

int64_t mebibytes(int64_t bytes) { return (bytes + (1 << 20) - 1) >> 20; }

}  // namespace

std::string tokenizer_hash(const std::string& model_dir) {
  uint64_t h = 1469598103934665603ull;
  for (const char* name : {"tokenizer.json", "tokenizer_config.json"}) {
    const fs::path path = fs::path(model_dir) / name;
    if (!fs::exists(path)) {
      RAD_CHECK(std::string(name) != "tokenizer.json", "{}: no tokenizer.json", model_dir);
      continue;
    }
    try {
      h = fnv1a64(std::string(name) + "\n" + nlohmann::json::parse(read_text_file(path.string())).dump() + "\n", h);
    } catch (const nlohmann::json::exception& e) {
      fail("{}: invalid JSON ({})", path.string(), e.what());
    }
  }
  return fmt::format("fnv1a64:{:016x}", h);
}

bool is_token_dir(const std::string& path) {
  std::error_code ec;
  return fs::is_directory(path, ec) && fs::is_regular_file(fs::path(path) / kTokenIndexFile, ec);
}

TokenizeCorpusResult tokenize_corpus(const TokenizeCorpusOptions& o, const CorpusTokenizer& tok) {
  RAD_CHECK(!o.inputs.empty(), "tokenize-corpus: no input files");
  RAD_CHECK(o.shard_tokens >= 1, "--shard-tokens must be >= 1, got {}", o.shard_tokens);
  RAD_CHECK(o.heldout_fraction >= 0 && o.heldout_fraction < 1, "held-out fraction must be in [0, 1), got {}",
            o.heldout_fraction);
  RAD_CHECK(o.max_line_bytes >= 1, "--max-line-bytes must be >= 1, got {}", o.max_line_bytes);
  RAD_CHECK(tok.vocab_size >= 1 && tok.vocab_size <= (int64_t{1} << 32), "tokenizer {}: vocabulary size {} out of range",
            tok.name, tok.vocab_size);
  const int bytes = tok.vocab_size <= 65536 ? 2 : 4;
  ensure_directory(o.out_dir);
  const fs::path out(o.out_dir);
  const std::string index_path = (out / kTokenIndexFile).string();

  // What the shards are a function of: a re-run with another plan must not mix its shards in.
  nlohmann::json inputs = nlohmann::json::array();
  int64_t total_bytes = 0;
  for (const auto& in : o.inputs) {
    std::error_code ec;
    RAD_CHECK(fs::is_regular_file(in, ec), "{}: no such file", in);
    const int64_t size = static_cast<int64_t>(fs::file_size(in));
    const auto mtime = std::chrono::duration_cast<std::chrono::nanoseconds>(
                           fs::last_write_time(in).time_since_epoch()).count();
    inputs.push_back({{"path", fs::absolute(in).lexically_normal().string()},
                      {"format", is_jsonl(in) ? "jsonl" : "text"}, {"bytes", size},
                      {"mtime_ns", static_cast<int64_t>(mtime)}});
    total_bytes += size;
  }
  const nlohmann::json plan = {{"inputs", inputs}, {"tokenizer_hash", tok.hash}, {"vocab_size", tok.vocab_size},
                               {"dtype", bytes == 2 ? "uint16" : "uint32"}, {"shard_tokens", o.shard_tokens},
                               {"heldout_fraction", o.heldout_fraction}, {"text_field", o.text_field}};

  TokenizeCorpusResult result;
  std::vector<nlohmann::json> shards;
  Position next;
  int64_t total_lines = -1;
  if (fs::exists(index_path)) {
    const nlohmann::json index = read_index(index_path);
    const nlohmann::json& old = index.at("plan");
    if (old != plan) {
      std::string key = "plan";
      for (auto it = plan.begin(); it != plan.end(); ++it)
        if (!old.contains(it.key()) || old.at(it.key()) != it.value()) {
          key = it.key();
          break;
        }
      fail("{} already holds tokens of other inputs or settings ({} was {}, now {}); give another --out or delete "
           "the directory",
           o.out_dir, key, old.contains(key) ? old.at(key).dump() : std::string("absent"),
           plan.contains(key) ? plan.at(key).dump() : plan.dump());
    }
    total_lines = index.at("lines").get<int64_t>();
    // Keep the finished shards whose files are intact; rewrite from the first that is not.
    const auto& listed = index.at("shards");
    for (const auto& s : listed) {
      const std::string path = (out / s.at("file").get<std::string>()).string();
      try {
        check_shard(path, bytes, s.at("tokens").get<int64_t>(), size_of(path));
      } catch (const Error& e) {
        log_warn("{}; rewriting it and the shards after it", e.what());
        break;
      }
      shards.push_back(s);
    }
    result.shards_kept = static_cast<int64_t>(shards.size());
    if (shards.size() == listed.size() && index.value("complete", false)) {
      for (const auto& s : shards)
        (s.at("split") == "train" ? result.train_tokens : result.heldout_tokens) += s.at("tokens").get<int64_t>();
      log_info("{} is complete already ({} shards kept)", o.out_dir, shards.size());
      return result;
    }
    next = shards.size() == listed.size() ? Position::from_json(index.at("next"))
                                          : Position::from_json(listed[shards.size()].at("start"));
    for (size_t k = shards.size(); k < listed.size(); ++k)
      fs::remove(out / listed[k].at("file").get<std::string>());
    log_info("resuming {}: {} finished shards kept", o.out_dir, shards.size());
  } else {
    // First pass: count lines (the held-out split is the last fraction of them) and validate JSONL
    // before hours of tokenizing.
    LineCursor count(o.inputs, o.text_field, o.max_line_bytes);
    count.seek(Position{});
    std::optional<Progress> progress;
    if (o.progress) progress.emplace("tokenize-corpus: counting lines", mebibytes(total_bytes), "MiB");
    std::string line;
    Position at;
    total_lines = 0;
    while (count.next(&line, &at)) {
      ++total_lines;
      if (progress && (total_lines & 1023) == 0) progress->update(mebibytes(count.bytes_done()));
    }
    if (progress) progress->finish(fmt::format("{} lines", total_lines));
  }
  RAD_CHECK(total_lines > 0, "tokenize-corpus: the inputs hold no lines of text");
  // As TokenCorpus::from_text splits.
  const int64_t train_lines =
      total_lines - static_cast<int64_t>(o.heldout_fraction * static_cast<size_t>(total_lines));

  auto write_index = [&](bool complete, const Position& resume) {
    nlohmann::json j = {{"format", "radistill-tokens"}, {"version", kFormatVersion}, {"complete", complete},
                        {"plan", plan}, {"tokenizer", tok.name}, {"lines", total_lines},
                        {"train_lines", train_lines}, {"shards", shards}};
    if (complete) {
      int64_t counts[2] = {0, 0}, files[2] = {0, 0};
      for (const auto& s : shards) {
        const int k = s.at("split") == "train" ? 0 : 1;
        counts[k] += s.at("tokens").get<int64_t>();
        ++files[k];
      }
      j["splits"] = {{"train", {{"tokens", counts[0]}, {"shards", files[0]}}},
                     {"heldout", {{"tokens", counts[1]}, {"shards", files[1]}}}};
    } else {
      j["next"] = resume.to_json();
    }
    write_text_atomic(index_path, j.dump(1) + "\n");
  };
  write_index(false, next);

  std::string split = next.line < train_lines ? "train" : "heldout";
  int64_t shard_number = 0;
  for (const auto& s : shards) shard_number += s.at("split") == split ? 1 : 0;
  std::optional<ShardWriter> writer;
  std::string writer_name;
  Position writer_start, block_start;
  std::string block;
  int64_t skip = next.skip, tokens_written = 0;

  auto finish_shard = [&](const Position& resume) {
    writer->finish();
    shards.push_back({{"file", writer_name}, {"split", split}, {"tokens", writer->count()},
                      {"start", writer_start.to_json()}});
    writer.reset();
    ++result.shards_written;
    write_index(false, resume);
  };
  auto encode_block = [&] {
    if (block.empty()) return;
    const std::vector<int64_t> ids = tok.encode(block);
    block.clear();
    RAD_CHECK(static_cast<size_t>(skip) <= ids.size(),
              "{}: the index says the block at {}:{} starts with {} tokens of an earlier shard, but it encodes to {}; "
              "the input or tokenizer changed",
              index_path, o.inputs[block_start.input], block_start.line_number, skip, ids.size());
    size_t from = static_cast<size_t>(skip);
    skip = 0;
    while (from < ids.size()) {
      if (!writer) {
        writer_name = fmt::format("{}-{:05d}.npy", split, shard_number++);
        writer.emplace((out / writer_name).string(), bytes, tok.vocab_size);
        writer_start = block_start;
        writer_start.skip = static_cast<int64_t>(from);
      }
      const size_t take = std::min<size_t>(o.shard_tokens - writer->count(), ids.size() - from);
      writer->append(ids.data() + from, take);
      from += take;
      tokens_written += static_cast<int64_t>(take);
      if (writer->count() == o.shard_tokens) {
        Position resume = block_start;
        resume.skip = static_cast<int64_t>(from);
        finish_shard(resume);
      }
    }
  };
  auto end_split = [&](const Position& resume) {
    encode_block();
    if (writer) finish_shard(resume);
  };

  LineCursor cursor(o.inputs, o.text_field, o.max_line_bytes);
  cursor.seek(next);
  std::optional<Progress> progress;
  if (o.progress) progress.emplace("tokenize-corpus", mebibytes(total_bytes), "MiB", mebibytes(cursor.bytes_done()));
  std::string line;
  Position at;
  int64_t lines = 0;
  while (cursor.next(&line, &at)) {
    if (split == "train" && at.line == train_lines) {
      end_split(at);
      split = "heldout";
      shard_number = 0;
    }
    if (block.empty()) block_start = at;
    block += line;
    if (block.size() > kBlockBytes) encode_block();
    if (progress && (++lines & 255) == 0)
      progress->update(mebibytes(cursor.bytes_done()),
                       fmt::format("{} tokens, {} shards", tokens_written, result.shards_written));
  }
  Position end;  // past the last line: a re-run after a crash here only marks the index complete
  end.input = static_cast<int64_t>(o.inputs.size());
  end.line = total_lines;
  end_split(end);
  if (progress) progress->finish(fmt::format("{} tokens, {} shards", tokens_written, result.shards_written));
  write_index(true, end);
  for (const auto& s : shards)
    (s.at("split") == "train" ? result.train_tokens : result.heldout_tokens) += s.at("tokens").get<int64_t>();
  return result;
}

TokenCorpus load_token_dir(const std::string& dir, const std::string& tokenizer_hash, int64_t vocab_size) {
  const std::string index_path = (fs::path(dir) / kTokenIndexFile).string();
  const nlohmann::json index = read_index(index_path);
  RAD_CHECK(index.value("complete", false),
            "{}: tokenization did not finish (\"complete\": false); re-run `radistill tokenize-corpus` with the same "
            "arguments to finish it",
            dir);
  const nlohmann::json& plan = index.at("plan");
  const std::string hash = plan.at("tokenizer_hash").get<std::string>();
  RAD_CHECK(hash == tokenizer_hash,
            "{} was tokenized with another tokenizer ({}, hash {}) than the model's (hash {}); re-run `radistill "
            "tokenize-corpus` with the model's tokenizer",
            dir, index.value("tokenizer", std::string("?")), hash, tokenizer_hash);
  const int64_t index_vocab = plan.at("vocab_size").get<int64_t>();
  RAD_CHECK(index_vocab <= vocab_size, "{}: ids up to a vocabulary of {}, but the model has {}", dir, index_vocab,
            vocab_size);
  const std::string dtype = plan.at("dtype").get<std::string>();
  RAD_CHECK(dtype == "uint16" || dtype == "uint32", "{}: dtype \"{}\" (expected uint16 or uint32)", index_path, dtype);
  const int bytes = dtype == "uint16" ? 2 : 4;
  std::vector<TokenSeq::Piece> train, heldout;
  int64_t counts[2] = {0, 0};
  for (const auto& s : index.at("shards")) {
    const std::string path = (fs::path(dir) / s.at("file").get<std::string>()).string();
    const int64_t tokens = s.at("tokens").get<int64_t>();
    const int64_t size = size_of(path);
    const NpyShard shard = check_shard(path, bytes, tokens, size);
    std::shared_ptr<const io::MappedFile> map = io::MappedFile::open(path);
    RAD_CHECK(static_cast<int64_t>(map->size()) == size, "{}: changed size while being opened", path);
    // Windows are sampled anywhere: no read-ahead.
    ::madvise(const_cast<uint8_t*>(map->data()), map->size(), MADV_RANDOM);
    std::shared_ptr<const void> owner(map, map->data());  // the piece keeps the mapping alive
    TokenSeq::Piece piece{reinterpret_cast<const char*>(map->data()) + shard.data_offset, static_cast<size_t>(tokens),
                          bytes, owner};
    const bool is_train = s.at("split") == "train";
    counts[is_train ? 0 : 1] += tokens;
    (is_train ? train : heldout).push_back(std::move(piece));
  }
  const auto& splits = index.at("splits");
  RAD_CHECK(splits.at("train").at("tokens").get<int64_t>() == counts[0] &&
                splits.at("heldout").at("tokens").get<int64_t>() == counts[1],
            "{}: the shards hold {} + {} tokens, the split totals say {} + {}", index_path, counts[0], counts[1],
            splits.at("train").at("tokens").get<int64_t>(), splits.at("heldout").at("tokens").get<int64_t>());
  return TokenCorpus{TokenSeq::concat(std::move(train)), TokenSeq::concat(std::move(heldout))};
}

bool corpus_is_token_dir(const std::string& path) {
  if (is_token_dir(path)) return true;
  std::error_code ec;
  RAD_CHECK(!fs::is_directory(path, ec),
            "--corpus {} is a directory without {}: give a UTF-8 text file or a directory written by `radistill "
            "tokenize-corpus`",
            path, kTokenIndexFile);
  return false;
}

TokenCorpus load_corpus(const std::string& path, const std::string& tokenizer_dir, const tasks::Encoder& encode,
                        int64_t vocab_size, double heldout_fraction, bool heldout_fraction_given) {
  if (!corpus_is_token_dir(path)) {
    log_info("tokenizing {} ...", path);
    return TokenCorpus::from_text(read_text_file(path), encode, heldout_fraction);
  }
  if (heldout_fraction_given) {
    const double f = read_index((fs::path(path) / kTokenIndexFile).string()).at("plan").at("heldout_fraction");
    RAD_CHECK(f == heldout_fraction,
              "--heldout-fraction {}: the token directory {} was split with {} when it was tokenized; drop the flag "
              "or re-tokenize with `radistill tokenize-corpus --heldout-fraction {}`",
              heldout_fraction, path, f, heldout_fraction);
  }
  TokenCorpus corpus = load_token_dir(path, tokenizer_hash(tokenizer_dir), vocab_size);
  log_info("memory-mapped the token directory {}: {} training and {} held-out tokens in {} + {} shards", path,
           corpus.train.size(), corpus.heldout.size(), corpus.train.pieces(), corpus.heldout.pieces());
  return corpus;
}

}  // namespace rad
