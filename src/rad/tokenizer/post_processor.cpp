#include "rad/tokenizer/post_processor.h"

#include <nlohmann/json.hpp>
#include <string>

#include "rad/core/error.h"

namespace rad {
namespace {

class TemplateProcessor : public PostProcessor {
 public:
  // Each item: the ids of a special token, or an empty vector standing for the sequence.
  explicit TemplateProcessor(std::vector<std::vector<int64_t>> items) : items_(std::move(items)) {}
  void process(std::vector<int64_t>& ids) const override {
    std::vector<int64_t> out;
    out.reserve(ids.size() + 4);
    for (const auto& item : items_) {
      if (item.empty())
        out.insert(out.end(), ids.begin(), ids.end());
      else
        out.insert(out.end(), item.begin(), item.end());
    }
    ids.swap(out);
  }

 private:
  std::vector<std::vector<int64_t>> items_;
};

class NoOpProcessor : public PostProcessor {
 public:
  void process(std::vector<int64_t>&) const override {}
};

class SequenceProcessor : public PostProcessor {
 public:
  explicit SequenceProcessor(std::vector<std::unique_ptr<PostProcessor>> parts) : parts_(std::move(parts)) {}
  void process(std::vector<int64_t>& ids) const override {
    for (const auto& p : parts_) p->process(ids);
  }

 private:
  std::vector<std::unique_ptr<PostProcessor>> parts_;
};

std::unique_ptr<PostProcessor> make_template(const nlohmann::json& config) {
  const auto& special = config.contains("special_tokens") ? config.at("special_tokens") : nlohmann::json::object();
  std::vector<std::vector<int64_t>> items;
  const auto& single = config.at("single");
  RAD_CHECK(single.is_array(), "tokenizer.json: TemplateProcessing \"single\" must be a list of pieces (got {})",
            single.dump().substr(0, 200));
  for (const auto& piece : single) {
    if (piece.contains("Sequence")) {
      items.emplace_back();
    } else if (piece.contains("SpecialToken")) {
      std::string name = piece.at("SpecialToken").at("id").get<std::string>();
      RAD_CHECK(special.contains(name), "tokenizer.json: TemplateProcessing uses special token \"{}\" missing from special_tokens",
                name);
      auto ids = special.at(name).at("ids").get<std::vector<int64_t>>();
      RAD_CHECK(!ids.empty(), "tokenizer.json: TemplateProcessing special token \"{}\" has no ids", name);
      items.push_back(std::move(ids));
    } else {
      fail("tokenizer.json: unsupported TemplateProcessing piece {}", piece.dump());
    }
  }
  return std::make_unique<TemplateProcessor>(std::move(items));
}

}  // namespace

std::unique_ptr<PostProcessor> make_post_processor(const nlohmann::json& config) {
  if (config.is_null()) return nullptr;
  RAD_CHECK(config.is_object() && config.contains("type"), "tokenizer.json: post_processor without a \"type\": {}",
            config.dump().substr(0, 200));
  const std::string type = config.at("type").get<std::string>();
  if (type == "TemplateProcessing") return make_template(config);
  if (type == "ByteLevel") return std::make_unique<NoOpProcessor>();
  if (type == "Sequence") {
    std::vector<std::unique_ptr<PostProcessor>> parts;
    for (const auto& c : config.at("processors")) {
      auto p = make_post_processor(c);
      if (p) parts.push_back(std::move(p));
    }
    return std::make_unique<SequenceProcessor>(std::move(parts));
  }
  if (type == "BertProcessing" || type == "RobertaProcessing") {
    int64_t cls = config.at("cls").at(1).get<int64_t>(), sep = config.at("sep").at(1).get<int64_t>();
    return std::make_unique<TemplateProcessor>(std::vector<std::vector<int64_t>>{{cls}, {}, {sep}});
  }
  fail("tokenizer.json: unsupported post_processor type \"{}\" (supported: TemplateProcessing, ByteLevel, Sequence, "
       "BertProcessing, RobertaProcessing)", type);
}

}  // namespace rad
