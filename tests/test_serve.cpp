// The OpenAI-compatible server (src/rad/serve): the Jinja subset against Python's jinja2, the text
// stream's stop strings, and the server over HTTP with curl on a loopback port - greedy output
// equals `radistill generate`, streaming, chat templates, hostile input, a client killed
// mid-stream while another finishes, and admission by cache budget (queue, then 503 + Retry-After);
// log-probabilities (completions' logprobs/echo, chat's logprobs/top_logprobs) against the
// runtime's own logits and libtorch's, n choices and seeds.
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <sstream>
#include <thread>

#include "rad/core/atomic_file.h"
#include "rad/io/npy.h"
#include "rad/runtime/engine.h"
#include "rad/runtime/sampler.h"
#include "rad/serve/api.h"
#include "rad/serve/chat_template.h"
#include "rad/serve/jinja.h"
#include "rad/serve/server.h"
#include "rad/serve/text_stream.h"
#include "rad/tokenizer/tokenizer.h"
#include "test_util.h"

namespace rad::test {
namespace {

using json = nlohmann::json;
namespace fs = std::filesystem;

// Templates and their renderings by Python's jinja2 3.1 in Hugging Face's environment
// (ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True) + raise_exception), for
// messages `msgs` and `sys` (a system message first), add_generation_prompt=True, bos "<s>",
// eos "</s>". smol: SmolLM2-135M-Instruct's template verbatim; llama3: Llama-3-Instruct's;
// mistral: a Mistral-style template written to exercise whitespace control, elif, `~`, slices,
// `is defined`, methods, loop.last and raise_exception.
const char* kTemplateGoldens = R"json({
 "templates": {
  "smol": "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}",
  "llama3": "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n'+ message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{% endif %}",
  "mistral": "{{- bos_token }}\n{%- if messages[0]['role'] == 'system' %}\n    {%- set system = messages[0]['content'] %}\n    {%- set rest = messages[1:] %}\n{%- else %}\n    {%- set rest = messages %}\n{%- endif %}\n{%- for message in rest %}\n    {%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}\n        {{- raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}\n    {%- endif %}\n    {%- if message['role'] == 'user' %}\n        {%- if loop.last and system is defined %}\n            {{- '[INST] ' ~ system ~ '\\n\\n' ~ message['content'].strip() ~ ' [/INST]' }}\n        {%- else %}\n            {{- '[INST] ' + message['content'] + ' [/INST]' }}\n        {%- endif %}\n    {%- elif message.role == 'assistant' %}\n        {{- ' ' + message['content']|trim + eos_token }}\n    {%- endif %}\n{%- endfor %}\n{% if add_generation_prompt %}\n  {% for i in [1, 2] %}{{ i }}{% if not loop.last %},{% endif %}{% endfor %}\n{% endif %}\n"
 },
 "out": {
  "smol_msgs": "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n<|im_start|>user\n  Hi there \n<|im_end|>\n<|im_start|>assistant\nHello!<|im_end|>\n<|im_start|>user\nName a colour.<|im_end|>\n<|im_start|>assistant\n",
  "smol_sys": "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\n  Hi there \n<|im_end|>\n<|im_start|>assistant\nHello!<|im_end|>\n<|im_start|>user\nName a colour.<|im_end|>\n<|im_start|>assistant\n",
  "llama3_msgs": "<s><|start_header_id|>user<|end_header_id|>\n\nHi there<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\nHello!<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nName a colour.<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n",
  "llama3_sys": "<s><|start_header_id|>system<|end_header_id|>\n\nBe brief.<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nHi there<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\nHello!<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nName a colour.<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n",
  "mistral_msgs": "<s>[INST]   Hi there \n [/INST] Hello!</s>[INST] Name a colour. [/INST]1,2",
  "mistral_sys": "<s>[INST]   Hi there \n [/INST] Hello!</s>[INST] Be brief.\n\nName a colour. [/INST]1,2",
  "mistral_error": "Conversation roles must alternate user/assistant/user/assistant/..."
 }
}
)json";

json golden_messages(bool with_system) {
  json m = json::array({{{"role", "user"}, {"content", "  Hi there \n"}},
                        {{"role", "assistant"}, {"content", "Hello!"}},
                        {{"role", "user"}, {"content", "Name a colour."}}});
  if (with_system) m.insert(m.begin(), json{{"role", "system"}, {"content", "Be brief."}});
  return m;
}

TEST(ServeJinja, ChatTemplatesRenderLikeJinja2) {
  json g = json::parse(kTemplateGoldens);
  for (const char* name : {"smol", "llama3", "mistral"}) {
    json config = {{"chat_template", g["templates"][name]}, {"bos_token", "<s>"}, {"eos_token", {{"content", "</s>"}}}};
    auto t = serve::ChatTemplate::from_config(config, name);
    ASSERT_TRUE(t.has_value());
    EXPECT_EQ(t->render(golden_messages(false)), g["out"][std::string(name) + "_msgs"].get<std::string>()) << name;
    EXPECT_EQ(t->render(golden_messages(true)), g["out"][std::string(name) + "_sys"].get<std::string>()) << name;
  }
  // raise_exception carries the template's message.
  json config = {{"chat_template", g["templates"]["mistral"]}};
  auto t = serve::ChatTemplate::from_config(config, "mistral");
  EXPECT_RAD_ERROR(t->render(json::array({golden_messages(false)[1]})), g["out"]["mistral_error"].get<std::string>());
  // No template: nullopt, not an error.
  EXPECT_FALSE(serve::ChatTemplate::from_config(json{{"bos_token", "<s>"}}, "x").has_value());
}

TEST(ServeJinja, ExpressionsAndUnsupportedConstructs) {
  auto render = [](const std::string& src, const json& ctx = json::object()) {
    return serve::JinjaTemplate::parse(src).render(ctx);
  };
  EXPECT_EQ(render("{{ 'a' ~ 1 ~ none }}|{{ 7 // 2 }}|{{ -7 % 3 }}|{{ [1, 2, 3][-1] }}|{{ 'abc'[1:] }}"), "a1None|3|2|3|bc");
  EXPECT_EQ(render("{{ x | default('d') }}|{{ 'A b' | lower | upper }}|{{ [1, 2] | length }}|{{ ['a', 'b'] | join('-') }}"),
            "d|A B|2|a-b");
  EXPECT_EQ(render("{% for k, v in d.items() %}{{ k }}={{ v }};{% else %}empty{% endfor %}", {{"d", {{"a", 1}}}}), "a=1;");
  EXPECT_EQ(render("{% for x in [] %}x{% else %}empty{% endfor %}"), "empty");
  EXPECT_EQ(render("{{ 'yes' if 'b' in 'abc' and not false else 'no' }}{{ x is not defined }}{{ 'xy'.startswith('x') }}"),
            "yesTrueTrue");
  EXPECT_EQ(render("{{ d.get('k', 'dflt') }} {{ d['a'] | tojson }}", {{"d", {{"a", {1, "b"}}}}}), "dflt [1, \"b\"]");
  EXPECT_EQ(render("  {%- if true -%}  x  {%- endif -%}  \n"), "x");
  EXPECT_RAD_ERROR(render("{% macro m() %}{% endmacro %}"), "unsupported statement 'macro'");
  EXPECT_RAD_ERROR(render("{{ x | frobnicate }}"), "unsupported filter 'frobnicate'");
  EXPECT_RAD_ERROR(render("{{ range(3) }}"), "unsupported function 'range()'");
  EXPECT_RAD_ERROR(render("{% if x %}"), "missing '{% endif %}'");
  EXPECT_RAD_ERROR(render("{{ 'a' + 1 }}"), "cannot apply '+' to a string and a integer");
  EXPECT_RAD_ERROR(render("{{ x.y }}"), "'.y' of an undefined value");
  EXPECT_RAD_ERROR(render("{{ 'open"), "unclosed tag");
  EXPECT_RAD_ERROR(render("{{ raise_exception('bad roles') }}"), "chat template raised an error: bad roles");
}

// Literals and integer arithmetic at the edges of int64 (next to the fuzz findings of 2026-12-07,
// tests/fuzz/regressions/chat_template/): Python's results where they fit, else a template error,
// never an exception of another type or undefined behaviour; values that are not valid UTF-8 are
// dumped with U+FFFD in their place.
TEST(ServeJinja, Int64EdgesInvalidUtf8AndDeepNesting) {
  auto render = [](const std::string& src, const json& ctx = json::object()) {
    return serve::JinjaTemplate::parse(src).render(ctx);
  };
  EXPECT_EQ(render("{{ 9223372036854775807 }}|{{ -9223372036854775807 - 1 }}"), "9223372036854775807|-9223372036854775808");
  EXPECT_RAD_ERROR(render("{{ 9223372036854775808 }}"), "integer literal 9223372036854775808 is out of range");
  EXPECT_RAD_ERROR(render("{{ 1" + std::string(400, '0') + " }}"), "integer literal 10000000000000000000...0000000000 is out of range");
  EXPECT_RAD_ERROR(render("{{ 1" + std::string(400, '0') + ".5 }}"), "float literal");
  EXPECT_EQ(render("{{ 0." + std::string(400, '0') + "1 }}"), "0.0");  // underflow: 0, as in Python
  EXPECT_RAD_ERROR(render("{{ 9223372036854775807 + 1 }}"), "integer overflow in 9223372036854775807 + 1");
  EXPECT_RAD_ERROR(render("{{ -9223372036854775807 - 2 }}"), "integer overflow");
  EXPECT_RAD_ERROR(render("{{ 4294967296 * 4294967296 }}"), "integer overflow");
  EXPECT_RAD_ERROR(render("{{ -(-9223372036854775807 - 1) }}"), "integer overflow");
  EXPECT_RAD_ERROR(render("{{ (-9223372036854775807 - 1) // -1 }}"), "integer overflow");
  EXPECT_EQ(render("{{ (-9223372036854775807 - 1) % -1 }}|{{ 9223372036854775806 % 9223372036854775807 }}"),
            "0|9223372036854775806");
  EXPECT_EQ(render("{{ 7 // -2 }}|{{ -7 // 2 }}|{{ 7 % -3 }}|{{ -7 % 3 }}|{{ 9007199254740993 // 1 }}"),
            "-4|-4|-2|2|9007199254740993");
  EXPECT_EQ(render("{{ 2.7 | int }}|{{ -2.7 | int }}|{{ 9007199254740993 | int }}|{{ 'x' | int }}"), "2|-2|9007199254740993|0");
  EXPECT_RAD_ERROR(render("{{ 1" + std::string(30, '0') + ".0 | int }}"), "'int' of 1e+30 is out of the 64-bit integer range");
  EXPECT_EQ(render("{{ s | tojson }}|{{ d | tojson }}", {{"s", "a\xff"}, {"d", {{"k\xfe", 1}}}}),
            "\"a\xef\xbf\xbd\"|{\"k\xef\xbf\xbd\": 1}");

  // Nesting and size are bounded (fuzz finding: deeply nested '[' overflowed the parser's stack,
  // tests/fuzz/regressions/chat_template/nested_brackets_stack_overflow.jinja).
  EXPECT_EQ(render("{{ " + std::string(60, '(') + "1" + std::string(60, ')') + " }}"), "1");
  EXPECT_RAD_ERROR(render("{{ " + std::string(5000, '[') + " }}"), "expression nested more than 100 levels deep");
  EXPECT_RAD_ERROR(render("{{ " + std::string(5000, '-') + "1 }}"), "expression nested more than 100 levels deep");
  std::string chain = "{{ 1";
  for (int i = 0; i < 2000; ++i) chain += "+1";
  EXPECT_RAD_ERROR(render(chain + " }}"), "expression of more than 1000 parts");
  std::string ifs, ends;
  for (int i = 0; i < 150; ++i) ifs += "{% if true %}", ends += "{% endif %}";
  EXPECT_RAD_ERROR(render(ifs + "x" + ends), "statements nested more than 100 levels deep");
  EXPECT_EQ(render(ifs.substr(0, 50 * 13) + "x" + ends.substr(0, 50 * 11)), "x");
}

std::string teacher_dir() { return source_dir() + "/models/default-teacher"; }

TEST(ServeTextStream, StopStringsEndTheTextAndPartialOnesAreHeldBack) {
  Tokenizer tok = Tokenizer::load(teacher_dir());
  const std::string text = "And God said, Let there be light: and there was light.";
  std::vector<int64_t> ids = tok.encode(text, false);
  ASSERT_GT(ids.size(), 6u);
  serve::TextStream s(tok, {}, {"there was"});
  std::string out;
  bool stopped_at = false;
  for (int64_t id : ids) {
    std::string delta = s.push(id);
    out += delta;
    // Never released: any text from the stop string on.
    EXPECT_EQ(out.find("there w"), std::string::npos) << out;
    if (s.stopped()) {
      stopped_at = true;
      break;
    }
  }
  ASSERT_TRUE(stopped_at);
  out += s.finish();
  EXPECT_EQ(out, "And God said, Let there be light: and ");
  // A character split over several byte-level tokens is released whole, never as U+FFFD.
  const std::string accents = "na\xC3\xAFve caf\xC3\xA9 \xF0\x9F\x99\x82 done";  // "naïve café 🙂 done"
  std::vector<int64_t> accent_ids = tok.encode(accents, false);
  serve::TextStream u(tok, {}, {});
  std::string pieces;
  for (int64_t id : accent_ids) {
    std::string delta = u.push(id);
    EXPECT_EQ(delta.find("\xEF\xBF\xBD"), std::string::npos) << "a partial character was released";
    pieces += delta;
  }
  pieces += u.finish();
  EXPECT_EQ(pieces, accents);
  // The case is exercised: some token alone is part of a character (decodes to U+FFFD).
  bool split = false;
  for (int64_t id : accent_ids) split = split || tok.decode({id}, true).find("\xEF\xBF\xBD") != std::string::npos;
  EXPECT_TRUE(split) << "no character of the test text is split over tokens by this tokenizer";
  // Without a stop string everything is released by the end, and the pieces add up to the text.
  serve::TextStream all(tok, {}, {});
  std::string whole;
  for (int64_t id : ids) whole += all.push(id);
  whole += all.finish();
  EXPECT_EQ(whole, text);
}

TEST(ServeOptions, ByteSizesParseWithUnitsAndBadOnesAreNamed) {
  EXPECT_EQ(serve::parse_byte_size("2GiB"), int64_t{2} << 30);
  EXPECT_EQ(serve::parse_byte_size("512MiB"), int64_t{512} << 20);
  EXPECT_EQ(serve::parse_byte_size("1.5GB"), 1500000000);
  EXPECT_EQ(serve::parse_byte_size("1000"), 1000);
  EXPECT_RAD_ERROR(serve::parse_byte_size("lots"), "'lots' is not a byte size");
  EXPECT_RAD_ERROR(serve::parse_byte_size("2XB"), "unknown unit 'XB'");
  EXPECT_RAD_ERROR(serve::parse_byte_size("-1GiB"), "must be a positive byte size");
}

// /v1/completions encodes a string prompt by the rule generate --text, chat and bench follow
// (rad::encode_prompt: BOS by default, none with --no-special-tokens); /v1/chat/completions encodes
// the template's text as is, so a Llama-3 template that writes BOS gives exactly one.
TEST(ServeApi, PromptsGetBosOnceByTheSharedRuleOnALlama3Tokenizer) {
  const std::string dir = source_dir() + "/tests/fixtures/tokenizers/llama3";
  json tok_json = json::parse(read_text_file(dir + "/tokenizer.json"));
  json config = json::parse(read_text_file(dir + "/tokenizer_config.json"));
  tok_json["post_processor"] =
      json::parse(read_text_file(dir + "/golden_bos_template.json"))["override"]["post_processor"];
  const Tokenizer tok = Tokenizer::from_json(tok_json, config);
  config["chat_template"] =
      "{{ bos_token }}{% for m in messages %}<|start_header_id|>{{ m['role'] }}<|end_header_id|>\n\n"
      "{{ m['content'] }}<|eot_id|>{% endfor %}<|start_header_id|>assistant<|end_header_id|>\n\n";
  const std::optional<serve::ChatTemplate> chat_template = serve::ChatTemplate::from_config(config, dir);
  ASSERT_TRUE(chat_template.has_value());
  serve::ApiContext ctx{tok, chat_template, dir, tok.vocab_size(), 4096};
  std::vector<int64_t> plain = tok.encode("Hello world", false);
  std::vector<int64_t> with_bos = plain;
  with_bos.insert(with_bos.begin(), 128000);
  const std::string completion = R"({"prompt": "Hello world", "max_tokens": 1})";
  EXPECT_EQ(serve::parse_completion_request(completion, false, ctx).params.prompt, with_bos);
  EXPECT_EQ(serve::parse_completion_request(completion, false, ctx).params.prompt, encode_prompt(tok, "Hello world", true));
  ctx.add_special_tokens = false;  // serve --no-special-tokens
  EXPECT_EQ(serve::parse_completion_request(completion, false, ctx).params.prompt, plain);
  for (bool add : {true, false}) {
    ctx.add_special_tokens = add;  // the chat path does not depend on it: the template decides
    std::vector<int64_t> chat =
        serve::parse_completion_request(R"({"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 1})", true, ctx)
            .params.prompt;
    ASSERT_GE(chat.size(), 2u);
    EXPECT_EQ(chat[0], 128000);
    EXPECT_EQ(std::count(chat.begin(), chat.end(), 128000), 1);
  }
}

// ---------------------------------------------------------------- HTTP helpers

struct Http {
  int status = 0;
  std::string body, headers;
  json parsed() const { return json::parse(body); }
};

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Runs curl with `args`; the status, headers and body come back.
Http curl(const std::string& args) {
  TempDir d;
  const std::string cmd = "curl -sS --max-time 120 -o " + d.file("body") + " -D " + d.file("headers") + " -w '%{http_code}' " +
                          args + " 2>" + d.file("err");
  FILE* p = popen(cmd.c_str(), "r");
  if (!p) return {};
  std::string code;
  char buf[64];
  while (fgets(buf, sizeof buf, p)) code += buf;
  pclose(p);
  Http h;
  h.status = std::atoi(code.c_str());
  h.body = read_file(d.file("body"));
  h.headers = read_file(d.file("headers"));
  if (h.status == 0) ADD_FAILURE() << "curl failed: " << read_file(d.file("err"));
  return h;
}

std::string url(int port, const std::string& path) { return "http://127.0.0.1:" + std::to_string(port) + path; }

Http post_raw(int port, const std::string& path, const std::string& body, const std::string& extra = "") {
  TempDir d;
  std::ofstream(d.file("req.json"), std::ios::binary) << body;
  return curl("-X POST -H 'Content-Type: application/json' -H 'Expect:' --data-binary @" + d.file("req.json") + " " + extra +
              " " + url(port, path));
}
Http post(int port, const std::string& path, const json& body) { return post_raw(port, path, body.dump()); }
Http get(int port, const std::string& path) { return curl(url(port, path)); }

// The events of a server-sent-event body; *done: it ended with `data: [DONE]`.
std::vector<json> sse_events(const std::string& body, bool* done) {
  std::vector<json> out;
  *done = false;
  size_t at = 0;
  while (at < body.size()) {
    size_t end = body.find("\n\n", at);
    if (end == std::string::npos) end = body.size();
    const std::string event = body.substr(at, end - at);
    at = end + 2;
    if (event.rfind("data: ", 0) != 0) continue;  // comments (": waiting")
    const std::string data = event.substr(6);
    EXPECT_FALSE(*done) << "an event after [DONE]";
    if (data == "[DONE]") *done = true;
    else out.push_back(json::parse(data));
  }
  return out;
}

// The concatenated text of a stream's chunks, and its finish_reason (exactly one chunk has one).
std::string stream_text(const std::vector<json>& events, bool chat, std::string* finish_reason) {
  std::string text;
  int finishes = 0;
  for (const auto& e : events) {
    if (e["choices"].empty()) continue;  // the usage chunk
    const json& c = e["choices"][0];
    if (chat) text += c["delta"].value("content", "");
    else text += c["text"].get<std::string>();
    if (!c["finish_reason"].is_null()) {
      ++finishes;
      *finish_reason = c["finish_reason"].get<std::string>();
    }
  }
  EXPECT_EQ(finishes, 1);
  return text;
}

// A metric's value from /metrics (the first sample whose name and labels start with `name`).
double metric(int port, const std::string& name) {
  Http h = get(port, "/metrics");
  std::istringstream in(h.body);
  for (std::string line; std::getline(in, line);)
    if (line.rfind(name + " ", 0) == 0) return std::stod(line.substr(name.size() + 1));
  return -1;
}

bool wait_for(const std::function<bool()>& pred, double timeout_s) {
  const auto until = std::chrono::steady_clock::now() + std::chrono::duration<double>(timeout_s);
  while (std::chrono::steady_clock::now() < until) {
    if (pred()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return pred();
}

class TestServer {
 public:
  explicit TestServer(const serve::ServerOptions& o) : server_(o) {
    port_ = server_.bind();
    thread_ = std::thread([this] { server_.listen(); });
    // stop() before listen() has started would be lost; wait until it runs.
    while (!server_.running()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  ~TestServer() { stop(); }
  void stop() {
    if (!thread_.joinable()) return;
    server_.stop();
    thread_.join();
  }
  int port() const { return port_; }

 private:
  serve::Server server_;
  std::thread thread_;
  int port_ = 0;
};

serve::ServerOptions options(const std::string& dir, int64_t ctx) {
  serve::ServerOptions o;
  o.model_dir = dir;
  o.port = 0;
  o.scheduler.n_ctx = ctx;
  o.scheduler.cache_budget = int64_t{1} << 30;
  o.scheduler.max_sessions = 4;
  o.scheduler.max_queue = 4;
  o.scheduler.queue_timeout_s = 30;
  return o;
}

// A child process with its stdout on a pipe (for a streaming curl to kill).
struct Child {
  pid_t pid = -1;
  int out = -1;
};

Child spawn(const std::vector<std::string>& args) {
  int fds[2];
  if (pipe(fds) != 0) return {};
  Child c;
  c.pid = fork();
  if (c.pid == 0) {
    dup2(fds[1], 1);
    close(fds[0]);
    close(fds[1]);
    std::vector<char*> argv;
    for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    execvp(argv[0], argv.data());
    _exit(127);
  }
  close(fds[1]);
  c.out = fds[0];
  return c;
}

// Reads the child's output until it contains `needle`, it ends, or `timeout_s` passes.
std::string read_until(Child& c, std::string& so_far, const std::string& needle, double timeout_s) {
  const auto until = std::chrono::steady_clock::now() + std::chrono::duration<double>(timeout_s);
  char buf[4096];
  while (so_far.find(needle) == std::string::npos && std::chrono::steady_clock::now() < until) {
    pollfd p{c.out, POLLIN, 0};
    if (poll(&p, 1, 100) <= 0) continue;
    const ssize_t n = read(c.out, buf, sizeof buf);
    if (n <= 0) break;
    so_far.append(buf, static_cast<size_t>(n));
  }
  return so_far;
}

Child stream_with_curl(int port, const std::string& path, const json& body, const TempDir& dir) {
  std::ofstream(dir.file("stream.json")) << body.dump();
  return spawn({"curl", "-sS", "-N", "--max-time", "120", "-X", "POST", "-H", "Content-Type: application/json",
                "--data-binary", "@" + dir.file("stream.json"), url(port, path)});
}

// `radistill generate --text` on the default teacher: the reference greedy continuation.
std::string generate_text(const std::string& prompt, int max_new) {
  CliResult r = run_cli("generate " + teacher_dir() + " --text \"" + prompt + "\" --max-new-tokens " + std::to_string(max_new));
  EXPECT_EQ(r.exit_code, 0) << r.err;
  std::string out = r.out;
  if (!out.empty() && out.back() == '\n') out.pop_back();
  return out;
}

void expect_error_shape(const Http& h, int status, const std::string& needle, const std::string& param = "") {
  EXPECT_EQ(h.status, status) << h.body;
  json j;
  try {
    j = h.parsed();
  } catch (const std::exception& e) {
    ADD_FAILURE() << "not JSON: " << h.body;
    return;
  }
  ASSERT_TRUE(j.contains("error")) << h.body;
  EXPECT_NE(j["error"]["message"].get<std::string>().find(needle), std::string::npos) << h.body;
  EXPECT_TRUE(j["error"]["type"].is_string()) << h.body;
  if (!param.empty()) {
    EXPECT_EQ(j["error"]["param"], param) << h.body;
  }
}

// ---------------------------------------------------------------- server tests

TEST(Serve, CompletionsEqualGenerateGreedyPlainStreamedAndWithStopStrings) {
  const std::string expected = generate_text("And God said", 12);
  ASSERT_FALSE(expected.empty());
  TestServer server(options(teacher_dir(), 256));
  const int port = server.port();
  json req = {{"model", "default-teacher"}, {"prompt", "And God said"}, {"max_tokens", 12}, {"temperature", 0}};
  Http h = post(port, "/v1/completions", req);
  ASSERT_EQ(h.status, 200) << h.body;
  json j = h.parsed();
  EXPECT_EQ(j["object"], "text_completion");
  EXPECT_EQ(j["model"], "default-teacher");
  EXPECT_EQ(j["choices"][0]["text"], expected);
  const int64_t n_prompt = static_cast<int64_t>(Tokenizer::load(teacher_dir()).encode("And God said", true).size());
  EXPECT_EQ(j["usage"]["prompt_tokens"], n_prompt);
  const int64_t n_new = j["usage"]["completion_tokens"].get<int64_t>();
  EXPECT_EQ(j["usage"]["total_tokens"], n_prompt + n_new);
  EXPECT_EQ(j["choices"][0]["finish_reason"], n_new == 12 ? "length" : "stop");

  // Streamed: the same text, chunk by chunk, then [DONE]; the usage chunk when asked for.
  req["stream"] = true;
  req["stream_options"] = {{"include_usage", true}};
  h = post(port, "/v1/completions", req);
  ASSERT_EQ(h.status, 200) << h.body;
  EXPECT_NE(h.headers.find("text/event-stream"), std::string::npos) << h.headers;
  bool done = false;
  std::vector<json> events = sse_events(h.body, &done);
  EXPECT_TRUE(done);
  std::string reason;
  EXPECT_EQ(stream_text(events, false, &reason), expected);
  EXPECT_EQ(reason, j["choices"][0]["finish_reason"]);
  ASSERT_FALSE(events.empty());
  EXPECT_EQ(events.back()["usage"], j["usage"]);

  // A stop string inside the greedy text ends it there (finish_reason "stop"), plain and streamed.
  const std::string stop = expected.substr(expected.size() / 2, 3);
  const std::string cut = expected.substr(0, expected.find(stop));
  req = {{"prompt", "And God said"}, {"max_tokens", 12}, {"temperature", 0}, {"stop", {stop, "never-seen"}}};
  h = post(port, "/v1/completions", req);
  ASSERT_EQ(h.status, 200) << h.body;
  EXPECT_EQ(h.parsed()["choices"][0]["text"], cut) << "stop " << stop;
  EXPECT_EQ(h.parsed()["choices"][0]["finish_reason"], "stop");
  req["stream"] = true;
  h = post(port, "/v1/completions", req);
  EXPECT_EQ(stream_text(sse_events(h.body, &done), false, &reason), cut);
  EXPECT_EQ(reason, "stop");

  // Token-id prompts, seeded sampling (same seed -> same text), /v1/models, /health, /metrics.
  std::vector<int64_t> ids = Tokenizer::load(teacher_dir()).encode("And God said", true);
  h = post(port, "/v1/completions", {{"prompt", ids}, {"max_tokens", 12}, {"temperature", 0}});
  EXPECT_EQ(h.parsed()["choices"][0]["text"], expected);
  json sampled = {{"prompt", "In the beginning"}, {"max_tokens", 16}, {"temperature", 0.9}, {"top_k", 40},
                  {"top_p", 0.95},           {"seed", 7},           {"repetition_penalty", 1.1}};
  EXPECT_EQ(post(port, "/v1/completions", sampled).parsed()["choices"][0]["text"],
            post(port, "/v1/completions", sampled).parsed()["choices"][0]["text"]);
  json models = get(port, "/v1/models").parsed();
  EXPECT_EQ(models["data"][0]["id"], "default-teacher");
  EXPECT_EQ(models["data"][0]["meta"]["n_ctx"], 256);
  EXPECT_EQ(get(port, "/health").parsed()["status"], "ok");
  // (The request counter is bumped after the response is written: wait for the last one.)
  EXPECT_TRUE(wait_for([&] { return metric(port, "radistill_requests_total{path=\"/v1/completions\",status=\"200\"}") == 7; }, 10))
      << get(port, "/metrics").body;
  EXPECT_GE(metric(port, "radistill_tokens_generated_total"), 12 * 3);
  EXPECT_EQ(metric(port, "radistill_active_sessions"), 0);
  EXPECT_EQ(metric(port, "radistill_cache_bytes_allocated"), 0);
}

// A copy of the default teacher (links to its files) whose tokenizer_config.json has a chat template.
std::string templated_teacher(const TempDir& dir, const std::string& chat_template) {
  const std::string out = dir.file("chat-teacher");
  fs::create_directories(out);
  for (const char* f : {"config.json", "model.safetensors", "tokenizer.json"})
    fs::create_symlink(teacher_dir() + "/" + f, out + "/" + f);
  json config = json::parse(read_file(teacher_dir() + "/tokenizer_config.json"));
  config["chat_template"] = chat_template;
  std::ofstream(out + "/tokenizer_config.json") << config.dump(1);
  return out;
}

TEST(Serve, AQuantizedGgufFileServesWhatGenerateGivesOnIt) {
  TempDir dir;
  const std::string gguf = dir.file("teacher-q8_0.gguf");
  CliResult q = run_cli("quantize " + teacher_dir() + " --type q8_0 -o " + gguf);
  ASSERT_EQ(q.exit_code, 0) << q.err;
  CliResult g = run_cli("generate " + gguf + " --text \"And God said\" --max-new-tokens 12");
  ASSERT_EQ(g.exit_code, 0) << g.err;
  std::string expected = g.out;
  if (!expected.empty() && expected.back() == '\n') expected.pop_back();
  ASSERT_FALSE(expected.empty());
  TestServer server(options(gguf, 256));  // the tokenizer comes from the file's metadata
  json req = {{"prompt", "And God said"}, {"max_tokens", 12}, {"temperature", 0}};
  Http h = post(server.port(), "/v1/completions", req);
  ASSERT_EQ(h.status, 200) << h.body;
  EXPECT_EQ(h.parsed()["choices"][0]["text"], expected);
  EXPECT_EQ(h.parsed()["model"], "teacher-q8_0.gguf");
}

TEST(Serve, ChatCompletionsUseTheModelsTemplate) {
  TempDir dir;
  const std::string smol = json::parse(kTemplateGoldens)["templates"]["smol"];
  const std::string model = templated_teacher(dir, smol);
  TestServer server(options(model, 256));
  const int port = server.port();
  json messages = json::array({{{"role", "user"}, {"content", "And God said"}}});
  json req = {{"messages", messages}, {"max_tokens", 10}, {"temperature", 0}};
  Http h = post(port, "/v1/chat/completions", req);
  ASSERT_EQ(h.status, 200) << h.body;
  json j = h.parsed();
  EXPECT_EQ(j["object"], "chat.completion");
  EXPECT_EQ(j["choices"][0]["message"]["role"], "assistant");
  const std::string content = j["choices"][0]["message"]["content"];

  // The prompt is the template's text, tokenized without added special tokens: the same request
  // as token ids to /v1/completions gives the same reply and usage.
  auto t = serve::ChatTemplate::load(model);
  ASSERT_TRUE(t.has_value());
  std::vector<int64_t> ids = Tokenizer::load(model).encode(t->render(messages), false);
  EXPECT_EQ(j["usage"]["prompt_tokens"], ids.size());
  Http c = post(port, "/v1/completions", {{"prompt", ids}, {"max_tokens", 10}, {"temperature", 0}});
  EXPECT_EQ(c.parsed()["choices"][0]["text"], content);
  EXPECT_EQ(c.parsed()["usage"], j["usage"]);

  // Streamed: a first chunk with the role, the same content, [DONE].
  req["stream"] = true;
  h = post(port, "/v1/chat/completions", req);
  ASSERT_EQ(h.status, 200) << h.body;
  bool done = false;
  std::vector<json> events = sse_events(h.body, &done);
  EXPECT_TRUE(done);
  ASSERT_FALSE(events.empty());
  EXPECT_EQ(events[0]["object"], "chat.completion.chunk");
  EXPECT_EQ(events[0]["choices"][0]["delta"]["role"], "assistant");
  std::string reason;
  EXPECT_EQ(stream_text(events, true, &reason), content);
  EXPECT_EQ(reason, j["choices"][0]["finish_reason"]);

  // Content as a list of text parts; bad messages name the field.
  h = post(port, "/v1/chat/completions",
           {{"messages", {{{"role", "user"}, {"content", {{{"type", "text"}, {"text", "And God said"}}}}}}},
            {"max_tokens", 10},
            {"temperature", 0}});
  EXPECT_EQ(h.parsed()["choices"][0]["message"]["content"], content);
  expect_error_shape(post(port, "/v1/chat/completions", {{"messages", json::array()}}), 400, "non-empty list", "messages");
  expect_error_shape(post(port, "/v1/chat/completions", {{"messages", {{{"role", "user"}}}}}), 400, "is missing",
                     "messages[0].content");
  expect_error_shape(post(port, "/v1/chat/completions", {{"messages", {{{"role", 3}, {"content", "x"}}}}}), 400,
                     "must be a string", "messages[0].role");

  // The default teacher has no chat template: a clear 400.
  TestServer plain(options(teacher_dir(), 256));
  expect_error_shape(post(plain.port(), "/v1/chat/completions", {{"messages", messages}}), 400,
                     "has no chat_template in tokenizer_config.json", "messages");
}

TEST(Serve, RepliesEndAtTheEosTokensOfGenerationConfigToo) {
  // The first greedy token after the prompt becomes an end-of-sequence token in generation_config.
  std::vector<int64_t> prompt = Tokenizer::load(teacher_dir()).encode("And God said", true);
  std::string ids;
  for (int64_t id : prompt) ids += (ids.empty() ? "" : ",") + std::to_string(id);
  CliResult r = run_cli("generate " + teacher_dir() + " --token-ids " + ids + " --max-new-tokens 1 --ignore-eos");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const int64_t first = json::parse(r.out)[0];
  TempDir dir;
  const std::string model = templated_teacher(dir, "{{ messages[0]['content'] }}");
  auto m = runtime::Model::load(model);
  Tokenizer tok = Tokenizer::load(model);
  ASSERT_TRUE(tok.eos_id().has_value());
  std::ofstream(model + "/generation_config.json") << json{{"eos_token_id", {first, *tok.eos_id()}}}.dump();
  // Each id once: config.json's, generation_config's and tokenizer_config's (which repeat each other here).
  std::vector<int64_t> expected = m->config().eos_token_ids;
  expected.push_back(first);
  expected.push_back(*tok.eos_id());
  std::sort(expected.begin(), expected.end());
  expected.erase(std::unique(expected.begin(), expected.end()), expected.end());
  EXPECT_EQ(serve::end_of_sequence_ids(model, m->config(), tok), expected);
  TestServer server(options(model, 256));
  Http h = post(server.port(), "/v1/completions", {{"prompt", prompt}, {"max_tokens", 12}, {"temperature", 0}});
  ASSERT_EQ(h.status, 200) << h.body;
  EXPECT_EQ(h.parsed()["usage"]["completion_tokens"], 1);
  EXPECT_EQ(h.parsed()["choices"][0]["finish_reason"], "stop");
  EXPECT_EQ(h.parsed()["choices"][0]["text"], "");  // the end token's text is not part of the reply
  h = post(server.port(), "/v1/completions", {{"prompt", prompt}, {"max_tokens", 12}, {"temperature", 0}, {"ignore_eos", true}});
  EXPECT_EQ(h.parsed()["usage"]["completion_tokens"], 12);
}

TEST(Serve, HostileInputGetsJsonErrorsAndTheServerKeepsServing) {
  serve::ServerOptions o = options(teacher_dir(), 64);
  o.max_body_bytes = 64 << 10;
  TestServer server(o);
  const int port = server.port();
  const std::string path = "/v1/completions";
  expect_error_shape(post_raw(port, path, "{\"prompt\": \"a\", "), 400, "not valid JSON");
  expect_error_shape(post_raw(port, path, "{\"prompt\": \"a\xff\xfe\"}"), 400, "UTF-8");
  expect_error_shape(post_raw(port, path, "[1, 2]"), 400, "must be a JSON object");
  expect_error_shape(post(port, path, {{"max_tokens", 4}}), 400, "'prompt' is missing", "prompt");
  expect_error_shape(post(port, path, {{"prompt", 42}}), 400, "'prompt' must be a string or a list of token ids", "prompt");
  expect_error_shape(post(port, path, {{"prompt", "a"}, {"max_tokens", "ten"}}), 400, "'max_tokens' must be an integer",
                     "max_tokens");
  expect_error_shape(post(port, path, {{"prompt", "a"}, {"max_tokens", -1}}), 400, "in [0,", "max_tokens");
  expect_error_shape(post(port, path, {{"prompt", "a"}, {"temperature", 5}}), 400, "'temperature' must be in [0, 2]",
                     "temperature");
  expect_error_shape(post(port, path, {{"prompt", "a"}, {"stream", "yes"}}), 400, "'stream' must be a boolean", "stream");
  const int64_t n_vocab = runtime::Model::load(teacher_dir())->config().n_vocab;
  expect_error_shape(post(port, path, {{"prompt", {int64_t{1}, int64_t{2}, n_vocab}}}), 400,
                     "token 2 is " + std::to_string(n_vocab) + ", outside the vocabulary [0, " + std::to_string(n_vocab) + ")",
                     "prompt");
  expect_error_shape(post(port, path, {{"prompt", {1, -5}}}), 400, "outside the vocabulary", "prompt");
  expect_error_shape(post(port, path, {{"prompt", std::vector<int64_t>(100, 5)}}), 400,
                     "the prompt has 100 tokens but the context holds 64", "prompt");
  expect_error_shape(post(port, path, {{"prompt", "a"}, {"n", 17}}), 400, "'n' must be an integer in [1, 16]", "n");
  expect_error_shape(post(port, path, {{"prompt", "a"}, {"frequency_penalty", 0.5}}), 400, "use 'repetition_penalty'",
                     "frequency_penalty");
  expect_error_shape(post(port, path, {{"prompt", "a"}, {"stop", {"a", "b", "c", "d", "e"}}}), 400, "at most 4", "stop");
  expect_error_shape(post(port, path, {{"prompt", {"a", "b"}}}), 400, "several prompts", "prompt");
  expect_error_shape(post_raw(port, path, "{\"prompt\": \"" + std::string(100 << 10, 'a') + "\"}"), 413, "too large");
  expect_error_shape(get(port, "/v1/nothing"), 404, "no route GET /v1/nothing");
  // A flood of malformed requests, then the server still answers.
  for (int i = 0; i < 40; ++i) EXPECT_EQ(post_raw(port, path, std::string(i, '{')).status, 400);
  EXPECT_EQ(get(port, "/health").status, 200);
  // A prompt that fills the context still gets its one token; max_tokens is clamped, not refused.
  Http h = post(port, path, {{"prompt", std::vector<int64_t>(64, 5)}, {"max_tokens", 50}, {"temperature", 0}, {"ignore_eos", true}});
  ASSERT_EQ(h.status, 200) << h.body;
  EXPECT_EQ(h.parsed()["usage"]["completion_tokens"], 1);
  EXPECT_EQ(h.parsed()["choices"][0]["finish_reason"], "length");
  EXPECT_GE(metric(port, "radistill_requests_total{path=\"/v1/completions\",status=\"400\"}"), 55);
}

TEST(Serve, AClientKilledMidStreamIsCancelledWhileAnotherFinishes) {
  TestServer server(options(teacher_dir(), 1024));
  const int port = server.port();
  json other = {{"prompt", "In the beginning"}, {"max_tokens", 200}, {"temperature", 0}};
  const std::string expected = post(port, "/v1/completions", other).parsed()["choices"][0]["text"];
  ASSERT_FALSE(expected.empty());

  TempDir dir;
  Child c = stream_with_curl(port, "/v1/completions",
                             {{"prompt", "And God said"}, {"max_tokens", 1000}, {"ignore_eos", true}, {"stream", true},
                              {"temperature", 0}},
                             dir);
  ASSERT_GT(c.pid, 0);
  std::string got;
  read_until(c, got, "data: ", 60);
  ASSERT_NE(got.find("data: "), std::string::npos) << got;
  Http concurrent;
  std::thread t([&] { concurrent = post(port, "/v1/completions", other); });
  std::this_thread::sleep_for(std::chrono::milliseconds(30));
  kill(c.pid, SIGKILL);
  int status = 0;
  waitpid(c.pid, &status, 0);
  close(c.out);
  t.join();
  ASSERT_EQ(concurrent.status, 200) << concurrent.body;
  EXPECT_EQ(concurrent.parsed()["choices"][0]["text"], expected);
  // The killed stream's sequence is dropped and its cache freed.
  EXPECT_TRUE(wait_for([&] { return metric(port, "radistill_cancelled_total") == 1; }, 30));
  EXPECT_TRUE(wait_for([&] { return metric(port, "radistill_active_sessions") == 0; }, 30));
  EXPECT_EQ(metric(port, "radistill_cache_bytes_allocated"), 0);
  EXPECT_EQ(metric(port, "radistill_cache_bytes_reserved"), 0);
  EXPECT_EQ(get(port, "/health").status, 200);
}

// The tests that need one sequence to keep running while they check others give it 2000 tokens
// (beyond the default teacher's 1024 positions; the runtime allows it): about 3 s on the 2-core VM,
// so still several times the 0.5 s queue timeout on a machine much faster than it.
constexpr int64_t kLongCtx = 2048, kLongGen = 2000;

TEST(Serve, TheCacheBudgetAdmitsQueuesThenRefusesWith503) {
  const int64_t ctx = kLongCtx;
  const int64_t full = runtime::Model::load(teacher_dir())->cache_bytes(ctx);
  {
    serve::ServerOptions o = options(teacher_dir(), ctx);
    o.scheduler.cache_budget = full - 1;
    EXPECT_RAD_ERROR(serve::Server s(o), "holds no session of --ctx 2048 tokens");
  }
  serve::ServerOptions o = options(teacher_dir(), ctx);
  o.scheduler.cache_budget = full;  // one full-context session
  o.scheduler.max_queue = 1;
  o.scheduler.queue_timeout_s = 0.5;
  TestServer server(o);
  const int port = server.port();
  TempDir dir;
  Child a = stream_with_curl(port, "/v1/completions",
                             {{"prompt", "And God said"}, {"max_tokens", kLongGen}, {"ignore_eos", true}, {"stream", true},
                              {"stream_options", {{"include_usage", true}}}, {"temperature", 0}},
                             dir);
  std::string a_out;
  read_until(a, a_out, "data: ", 60);
  ASSERT_NE(a_out.find("data: "), std::string::npos) << a_out;
  EXPECT_EQ(metric(port, "radistill_active_sessions"), 1);
  EXPECT_EQ(metric(port, "radistill_cache_bytes_allocated"), metric(port, "radistill_cache_bytes_reserved"));

  // B needs more cache than is left: it waits in the queue, then gets 503 after the queue timeout.
  json big = {{"prompt", "In the beginning"}, {"max_tokens", kLongGen}};
  Http b;
  std::thread tb([&] { b = post(port, "/v1/completions", big); });
  EXPECT_TRUE(wait_for([&] { return metric(port, "radistill_queue_length") == 1; }, 10));
  // C finds the queue (1 place) full: 503 at once.
  Http c = post(port, "/v1/completions", big);
  tb.join();
  expect_error_shape(c, 503, "queue of 1 waiting requests is full");
  EXPECT_NE(c.headers.find("Retry-After: 1"), std::string::npos) << c.headers;
  expect_error_shape(b, 503, "no session became free within 0.5 s");
  EXPECT_NE(b.headers.find("Retry-After:"), std::string::npos) << b.headers;
  EXPECT_EQ(b.parsed()["error"]["type"], "server_overloaded");

  // A finishes correctly: all its tokens, finish_reason "length", [DONE].
  read_until(a, a_out, "[DONE]", 120);
  int status = 0;
  waitpid(a.pid, &status, 0);
  close(a.out);
  bool done = false;
  std::vector<json> events = sse_events(a_out, &done);
  EXPECT_TRUE(done);
  std::string reason;
  stream_text(events, false, &reason);
  EXPECT_EQ(reason, "length");
  ASSERT_FALSE(events.empty());
  EXPECT_EQ(events.back()["usage"]["completion_tokens"], kLongGen);
  // Then the server admits again.
  Http d = post(port, "/v1/completions", {{"prompt", "In the beginning"}, {"max_tokens", 4}});
  EXPECT_EQ(d.status, 200) << d.body;
  EXPECT_EQ(metric(port, "radistill_rejected_total"), 2);
}

// --cache-type f16 (llama.cpp's default K/V type): reservations, the budget check and /metrics
// count the real bytes, half the f32 ones for a teacher's K/V; a budget too small for one f32
// session holds one f16 session, which generates.
TEST(Serve, AnF16KvCacheHalvesTheBytesTheBudgetAndMetricsCount) {
  const int64_t ctx = kLongCtx;
  auto model = runtime::Model::load(teacher_dir());
  const int64_t full32 = model->cache_bytes(ctx), full16 = model->cache_bytes(ctx, runtime::CacheType::kF16);
  EXPECT_EQ(2 * full16, full32);  // a teacher's cache is all K/V
  {
    serve::ServerOptions o = options(teacher_dir(), ctx);
    o.scheduler.cache_budget = full16;
    EXPECT_RAD_ERROR(serve::Server s(o), "holds no session of --ctx 2048 tokens");  // f32: too small
  }
  serve::ServerOptions o = options(teacher_dir(), ctx);
  o.scheduler.cache_budget = full16;
  o.scheduler.cache_type = runtime::CacheType::kF16;
  TestServer server(o);
  const int port = server.port();
  Http models = get(port, "/v1/models");
  ASSERT_EQ(models.status, 200) << models.body;
  EXPECT_EQ(models.parsed()["data"][0]["meta"]["cache_bytes_per_full_context"], full16);
  EXPECT_EQ(models.parsed()["data"][0]["meta"]["cache_type"], "f16");
  TempDir dir;
  Child a = stream_with_curl(port, "/v1/completions",
                             {{"prompt", "And God said"}, {"max_tokens", kLongGen}, {"ignore_eos", true}, {"stream", true},
                              {"temperature", 0}},
                             dir);
  std::string a_out;
  read_until(a, a_out, "data: ", 60);
  ASSERT_NE(a_out.find("data: "), std::string::npos) << a_out;
  EXPECT_EQ(metric(port, "radistill_active_sessions"), 1);
  const double reserved = metric(port, "radistill_cache_bytes_reserved");
  EXPECT_EQ(metric(port, "radistill_cache_bytes_allocated"), reserved);
  EXPECT_GT(reserved, full16 * 9 / 10);  // the prompt + 2000 tokens: most of the 2048
  EXPECT_LE(reserved, full16);
  read_until(a, a_out, "[DONE]", 120);
  int status = 0;
  waitpid(a.pid, &status, 0);
  close(a.out);
  EXPECT_NE(a_out.find("[DONE]"), std::string::npos);
  EXPECT_TRUE(wait_for([&] { return metric(port, "radistill_active_sessions") == 0; }, 30));
  EXPECT_EQ(metric(port, "radistill_cache_bytes_allocated"), 0);
}

TEST(Serve, ConcurrentSequencesInterleavedGiveTheirSoloOutputsAmidMalformedRequests) {
  serve::ServerOptions o = options(teacher_dir(), 256);
  o.scheduler.max_sessions = 6;  // fewer than the requests: some wait in the queue
  o.scheduler.max_queue = 16;
  o.scheduler.prefill_chunk = 4;  // prompts prefill over several iterations, between others' steps
  TestServer server(o);
  const int port = server.port();
  const std::vector<std::string> prompts = {"In the beginning", "And God said", "And the LORD spake unto Moses",
                                            "Blessed are", "Then Jesus", "The earth was without form",
                                            "And it came to pass", "Thou shalt"};
  auto request = [](const std::string& p, bool stream) {
    return json{{"prompt", p}, {"max_tokens", 24}, {"temperature", 0}, {"stream", stream}};
  };
  std::vector<std::string> solo;
  for (const auto& p : prompts) solo.push_back(post(port, "/v1/completions", request(p, false)).parsed()["choices"][0]["text"]);
  std::vector<Http> results(prompts.size());
  std::vector<int> bad_status(8);
  std::vector<std::thread> threads;
  for (size_t i = 0; i < prompts.size(); ++i)
    threads.emplace_back([&, i] { results[i] = post(port, "/v1/completions", request(prompts[i], i % 2 == 1)); });
  for (size_t i = 0; i < bad_status.size(); ++i)
    threads.emplace_back([&, i] { bad_status[i] = post_raw(port, "/v1/completions", "{\"prompt\": [1, \"x\"]").status; });
  for (auto& t : threads) t.join();
  for (size_t i = 0; i < prompts.size(); ++i) {
    ASSERT_EQ(results[i].status, 200) << results[i].body;
    std::string text;
    if (i % 2 == 1) {
      bool done = false;
      std::string reason;
      text = stream_text(sse_events(results[i].body, &done), false, &reason);
      EXPECT_TRUE(done);
    } else {
      text = results[i].parsed()["choices"][0]["text"];
    }
    EXPECT_EQ(text, solo[i]) << prompts[i];
  }
  for (int st : bad_status) EXPECT_EQ(st, 400);
}

// Continuous batching: concurrent streams share decode steps (one runtime::BatchDecoder pass for
// all of them, counted in /metrics), and each still gets the text it gets alone.
TEST(Serve, ConcurrentStreamsShareBatchedDecodeStepsAndKeepTheirSoloOutputs) {
  serve::ServerOptions o = options(teacher_dir(), 512);
  o.scheduler.max_sessions = 4;
  TestServer server(o);
  const int port = server.port();
  const std::vector<std::string> prompts = {"In the beginning", "And God said unto Noah", "Blessed are the", "Thou"};
  // Long enough (200 tokens each, EOS ignored) that the four overlap however the threads start.
  auto request = [](const std::string& p) {
    return json{{"prompt", p}, {"max_tokens", 200}, {"ignore_eos", true}, {"temperature", 0}, {"stream", true}};
  };
  auto text_of = [](const Http& h) {
    EXPECT_EQ(h.status, 200) << h.body;
    bool done = false;
    std::string reason;
    std::string text = stream_text(sse_events(h.body, &done), false, &reason);
    EXPECT_TRUE(done);
    EXPECT_EQ(reason, "length");
    return text;
  };
  std::vector<std::string> solo;
  for (const auto& p : prompts) solo.push_back(text_of(post(port, "/v1/completions", request(p))));
  EXPECT_EQ(metric(port, "radistill_decode_batch_max"), 1);  // one at a time so far
  const double steps0 = metric(port, "radistill_decode_steps_total"), rows0 = metric(port, "radistill_decode_rows_total");
  EXPECT_EQ(rows0, 4 * 199);  // the first token of each comes from its prompt's prefill
  EXPECT_EQ(steps0, rows0);
  std::vector<Http> results(prompts.size());
  std::vector<std::thread> threads;
  for (size_t i = 0; i < prompts.size(); ++i)
    threads.emplace_back([&, i] { results[i] = post(port, "/v1/completions", request(prompts[i])); });
  for (auto& t : threads) t.join();
  for (size_t i = 0; i < prompts.size(); ++i) EXPECT_EQ(text_of(results[i]), solo[i]) << prompts[i];
  const double steps = metric(port, "radistill_decode_steps_total") - steps0;
  const double rows = metric(port, "radistill_decode_rows_total") - rows0;
  EXPECT_EQ(rows, 4 * 199);
  EXPECT_LT(steps, rows) << "no decode step held more than one sequence";
  EXPECT_GE(metric(port, "radistill_decode_batch_max"), 2);
  EXPECT_LE(metric(port, "radistill_decode_batch_max"), 4);
}

TEST(Serve, ALongPromptPrefillsInChunksBetweenTheOthersSteps) {
  serve::ServerOptions o = options(teacher_dir(), kLongCtx);
  o.scheduler.prefill_chunk = 8;  // the 2000-token prompt takes 250 iterations, the short request 9
  TestServer server(o);
  const int port = server.port();
  std::vector<int64_t> long_prompt;
  const int64_t n_vocab = runtime::Model::load(teacher_dir())->config().n_vocab;
  for (int64_t i = 0; i < 2000; ++i) long_prompt.push_back(4 + (i * 31) % (n_vocab - 8));
  using clock = std::chrono::steady_clock;
  clock::time_point long_done, short_done;
  Http long_h, short_h;
  std::thread tl([&] {
    long_h = post(port, "/v1/completions", {{"prompt", long_prompt}, {"max_tokens", 1}, {"temperature", 0}});
    long_done = clock::now();
  });
  // The short request arrives once the long one is prefilling.
  ASSERT_TRUE(wait_for([&] { return metric(port, "radistill_prompt_tokens_total") > 0; }, 30));
  short_h = post(port, "/v1/completions", {{"prompt", "And God said"}, {"max_tokens", 8}, {"temperature", 0}});
  short_done = clock::now();
  tl.join();
  ASSERT_EQ(long_h.status, 200) << long_h.body;
  ASSERT_EQ(short_h.status, 200) << short_h.body;
  EXPECT_EQ(long_h.parsed()["usage"]["prompt_tokens"], 2000);
  // Had the long prompt been prefilled in one go, the short request would have waited for it.
  EXPECT_LT(short_done, long_done) << "the short request finished after the long prompt's prefill";
}

TEST(Serve, RequestsAreBoundedInTimeAndStopEndsStreamsAndTheQueue) {
  serve::ServerOptions o = options(teacher_dir(), kLongCtx);
  o.scheduler.request_timeout_s = 0.3;
  {
    TestServer server(o);
    // The time bound ends the reply cleanly, as "length", long before its 2000 tokens.
    Http h = post(server.port(), "/v1/completions",
                  {{"prompt", "And God said"}, {"max_tokens", kLongGen}, {"ignore_eos", true}, {"temperature", 0}});
    ASSERT_EQ(h.status, 200) << h.body;
    EXPECT_EQ(h.parsed()["choices"][0]["finish_reason"], "length");
    EXPECT_LT(h.parsed()["usage"]["completion_tokens"].get<int64_t>(), kLongGen);
    EXPECT_GT(h.parsed()["usage"]["completion_tokens"].get<int64_t>(), 0);
  }
  // Stopping the server ends a running stream and refuses a queued request at once (not after the
  // 30 s queue timeout).
  o = options(teacher_dir(), kLongCtx);
  o.scheduler.cache_budget = runtime::Model::load(teacher_dir())->cache_bytes(kLongCtx);
  o.scheduler.max_queue = 1;
  o.scheduler.queue_timeout_s = 30;
  TestServer server(o);
  const int port = server.port();
  TempDir dir;
  Child a = stream_with_curl(port, "/v1/completions",
                             {{"prompt", "And God said"}, {"max_tokens", kLongGen}, {"ignore_eos", true}, {"stream", true}},
                             dir);
  std::string a_out;
  read_until(a, a_out, "data: ", 60);
  ASSERT_NE(a_out.find("data: "), std::string::npos) << a_out;
  Http b;
  std::thread tb([&] { b = post(port, "/v1/completions", {{"prompt", "In the beginning"}, {"max_tokens", kLongGen}}); });
  ASSERT_TRUE(wait_for([&] { return metric(port, "radistill_queue_length") == 1; }, 10));
  const auto t0 = std::chrono::steady_clock::now();
  server.stop();
  tb.join();
  EXPECT_LT(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(), 10);
  expect_error_shape(b, 503, "shutting down");
  read_until(a, a_out, "\n\n\n", 10);  // until curl ends
  int status = 0;
  waitpid(a.pid, &status, 0);
  close(a.out);
  EXPECT_EQ(a_out.find("[DONE]"), std::string::npos);  // cut short, not completed
}

// ---------------------------------------------------------------- log-probabilities, n, seed

// log_softmax (in double) of the runtime's logits at every position of `ids`: [ids.size()][n_vocab].
std::vector<std::vector<double>> runtime_logprobs(const std::string& dir, const std::vector<int64_t>& ids) {
  auto model = runtime::Model::load(dir);
  runtime::SessionOptions so;
  so.n_ctx = static_cast<int64_t>(ids.size());
  so.threads = 1;
  runtime::Session session(model, so);
  const int64_t V = model->config().n_vocab;
  std::vector<float> logits(ids.size() * V);
  session.forward(ids.data(), static_cast<int64_t>(ids.size()), logits.data());
  std::vector<std::vector<double>> out(ids.size(), std::vector<double>(V));
  for (size_t t = 0; t < ids.size(); ++t) {
    const float* row = logits.data() + t * V;
    double mx = row[0], sum = 0;
    for (int64_t i = 0; i < V; ++i) mx = std::max<double>(mx, row[i]);
    for (int64_t i = 0; i < V; ++i) sum += std::exp(row[i] - mx);
    for (int64_t i = 0; i < V; ++i) out[t][i] = row[i] - mx - std::log(sum);
  }
  return out;
}

// The runtime's greedy continuation (the server's temperature 0, ignore_eos).
std::vector<int64_t> greedy_tokens(const std::string& dir, const std::vector<int64_t>& prompt, int64_t n) {
  runtime::SessionOptions so;
  so.threads = 1;
  runtime::Session session(runtime::Model::load(dir), so);
  runtime::GenerateOptions g;
  g.max_new_tokens = n;
  g.stop_at_eos = false;
  return runtime::generate(session, prompt, g).tokens;
}

// The k largest values of a reference row, largest first.
std::vector<double> top_values(const std::vector<double>& row, size_t k) {
  std::vector<double> v = row;
  std::partial_sort(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(k), v.end(), std::greater<>());
  v.resize(k);
  return v;
}

std::vector<int64_t> join(std::vector<int64_t> a, const std::vector<int64_t>& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

TEST(ServeLogprobs, CompletionLogprobsAndEchoEqualTheRuntimesLogSoftmax) {
  const std::string prompt = "And God said, Let there be light: and there was light.";
  Tokenizer tok = Tokenizer::load(teacher_dir());
  const std::vector<int64_t> prompt_ids = tok.encode(prompt, true);
  const std::vector<int64_t> gen = greedy_tokens(teacher_dir(), prompt_ids, 6);
  const std::vector<int64_t> all = join(prompt_ids, gen);
  const auto ref = runtime_logprobs(teacher_dir(), all);
  const size_t P = prompt_ids.size();
  ASSERT_GT(P, 9u);

  serve::ServerOptions o = options(teacher_dir(), 256);
  o.scheduler.prefill_chunk = 4;  // the prompt's logits come from several prefill chunks
  TestServer server(o);
  const int port = server.port();
  Http h = post(port, "/v1/completions",
                {{"prompt", prompt}, {"max_tokens", 6}, {"temperature", 0}, {"ignore_eos", true}, {"logprobs", 5}, {"echo", true}});
  ASSERT_EQ(h.status, 200) << h.body;
  const json c = h.parsed()["choices"][0];
  const std::string completion = tok.decode(gen, true);
  EXPECT_EQ(c["text"], prompt + completion);
  const json& lp = c["logprobs"];
  ASSERT_EQ(lp["tokens"].size(), all.size()) << lp.dump();
  ASSERT_EQ(lp["token_logprobs"].size(), all.size());
  ASSERT_EQ(lp["top_logprobs"].size(), all.size());
  ASSERT_EQ(lp["text_offset"].size(), all.size());
  // The first prompt token has no context: null, as OpenAI and llama-server answer.
  EXPECT_TRUE(lp["token_logprobs"][0].is_null());
  EXPECT_TRUE(lp["top_logprobs"][0].is_null());
  EXPECT_EQ(lp["tokens"][0], "<|begin_of_text|>");  // BOS, by name; it has no text
  std::string concat;
  for (size_t i = 0; i < all.size(); ++i) {
    EXPECT_EQ(lp["text_offset"][i], serve::utf8_chars(concat)) << i;
    if (i > 0) concat += lp["tokens"][i].get<std::string>();
    if (i == 0) continue;
    // Token i's log-probability is position i - 1's log-softmax at token i.
    ASSERT_TRUE(lp["token_logprobs"][i].is_number()) << i;
    EXPECT_NEAR(lp["token_logprobs"][i].get<double>(), ref[i - 1][all[i]], 1e-4) << "position " << i;
    // The 5 alternatives (plus the chosen token when it is not among them) are the 5 most likely.
    const json& top = lp["top_logprobs"][i];
    ASSERT_TRUE(top.is_object());
    EXPECT_TRUE(top.size() == 5 || top.size() == 6) << top.dump();
    EXPECT_TRUE(top.contains(lp["tokens"][i].get<std::string>())) << top.dump();
    std::vector<double> got;
    for (const auto& [k, v] : top.items()) got.push_back(v.get<double>());
    std::sort(got.begin(), got.end(), std::greater<>());
    const std::vector<double> want = top_values(ref[i - 1], 5);
    for (size_t k = 0; k < 5; ++k) EXPECT_NEAR(got[k], want[k], 1e-4) << "position " << i << " rank " << k;
    // Greedy: every generated token is its position's most likely one.
    if (i >= P) {
      EXPECT_NEAR(lp["token_logprobs"][i].get<double>(), want[0], 1e-6) << i;
    }
  }
  EXPECT_EQ(concat, prompt + completion);

  // The same, independently: libtorch's forward (`radistill forward --dump-logits`).
  TempDir d;
  std::string ids;
  for (int64_t id : all) ids += (ids.empty() ? "" : ",") + std::to_string(id);
  CliResult r = run_cli("forward " + teacher_dir() + " --token-ids " + ids + " --dump-logits " + d.file("logits.npy"));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  at::Tensor torch_lp = at::log_softmax(io::load_npy(d.file("logits.npy")).to(at::kDouble), -1);
  ASSERT_EQ(torch_lp.size(0), static_cast<int64_t>(all.size()));
  for (size_t i = 1; i < all.size(); ++i)
    EXPECT_NEAR(lp["token_logprobs"][i].get<double>(), torch_lp[i - 1][all[i]].item<double>(), 1e-4) << i;

  // Without echo: the reply's tokens only, offsets from 0; logprobs 0 lists the chosen token alone.
  h = post(port, "/v1/completions",
           {{"prompt", prompt}, {"max_tokens", 6}, {"temperature", 0}, {"ignore_eos", true}, {"logprobs", 0}});
  ASSERT_EQ(h.status, 200) << h.body;
  const json lp0 = h.parsed()["choices"][0]["logprobs"];
  EXPECT_EQ(h.parsed()["choices"][0]["text"], completion);
  ASSERT_EQ(lp0["tokens"].size(), gen.size());
  EXPECT_EQ(lp0["text_offset"][0], 0);
  for (size_t j = 0; j < gen.size(); ++j) {
    EXPECT_NEAR(lp0["token_logprobs"][j].get<double>(), ref[P + j - 1][gen[j]], 1e-4) << j;
    EXPECT_EQ(lp0["top_logprobs"][j].size(), 1u);
    EXPECT_EQ(lp0["tokens"][j], lp["tokens"][P + j]);
  }
  // A stop string cuts the reply: its tokens end with the one that reached the cut.
  const std::string stop = lp0["tokens"][3];
  h = post(port, "/v1/completions",
           {{"prompt", prompt}, {"max_tokens", 6}, {"temperature", 0}, {"ignore_eos", true}, {"logprobs", 1}, {"stop", stop}});
  ASSERT_EQ(h.status, 200) << h.body;
  const std::string cut = h.parsed()["choices"][0]["text"];
  const json lps = h.parsed()["choices"][0]["logprobs"];
  EXPECT_EQ(h.parsed()["choices"][0]["finish_reason"], "stop");
  EXPECT_LT(cut.size(), completion.size());
  EXPECT_LT(lps["tokens"].size(), gen.size());
  std::string joined;
  for (size_t j = 0; j < lps["tokens"].size(); ++j) {
    EXPECT_LT(lps["text_offset"][j].get<int64_t>(), serve::utf8_chars(cut)) << j;
    joined += lps["tokens"][j].get<std::string>();
  }
  EXPECT_EQ(joined.substr(0, cut.size()), cut);
  EXPECT_GE(joined.size(), cut.size());
  // Without logprobs the field stays null; echo alone returns the prompt's text.
  h = post(port, "/v1/completions", {{"prompt", prompt}, {"max_tokens", 6}, {"temperature", 0}, {"ignore_eos", true}, {"echo", true}});
  EXPECT_TRUE(h.parsed()["choices"][0]["logprobs"].is_null());
  EXPECT_EQ(h.parsed()["choices"][0]["text"], prompt + completion);
}

TEST(ServeLogprobs, MaxTokensZeroWithEchoScoresEveryPromptTokenAsLmEvalAsks) {
  Tokenizer tok = Tokenizer::load(teacher_dir());
  const std::string text = "In the beginning God created the heaven and the earth.";
  const std::vector<int64_t> ids = tok.encode(text, true);
  const auto ref = runtime_logprobs(teacher_dir(), ids);
  TestServer server(options(teacher_dir(), 256));
  const int port = server.port();
  // lm-evaluation-harness's local-completions: token ids in a one-element list, max_tokens 0.
  for (const json& prompt : {json(text), json::array({json(ids)})}) {
    Http h = post(port, "/v1/completions",
                  {{"model", "default-teacher"}, {"prompt", prompt}, {"max_tokens", 0}, {"temperature", 0}, {"logprobs", 1},
                   {"echo", true}, {"seed", 1234}});
    ASSERT_EQ(h.status, 200) << h.body;
    const json j = h.parsed();
    const json& c = j["choices"][0];
    EXPECT_EQ(c["text"], text);
    EXPECT_EQ(c["finish_reason"], "length");
    EXPECT_EQ(j["usage"]["prompt_tokens"], ids.size());
    EXPECT_EQ(j["usage"]["completion_tokens"], 0);
    const json& lp = c["logprobs"];
    ASSERT_EQ(lp["token_logprobs"].size(), ids.size()) << lp.dump();
    EXPECT_TRUE(lp["token_logprobs"][0].is_null());
    double sum = 0;
    for (size_t i = 1; i < ids.size(); ++i) {
      EXPECT_NEAR(lp["token_logprobs"][i].get<double>(), ref[i - 1][ids[i]], 1e-4) << i;
      sum += lp["token_logprobs"][i].get<double>();
      // lm-eval's greedy check: the token's log-probability equals the largest listed.
      const json& top = lp["top_logprobs"][i];
      ASSERT_TRUE(top.size() == 1 || top.size() == 2) << top.dump();
      double best = -1e30;
      for (const auto& [k, v] : top.items()) best = std::max(best, v.get<double>());
      const bool greedy = std::max_element(ref[i - 1].begin(), ref[i - 1].end()) - ref[i - 1].begin() == ids[i];
      EXPECT_EQ(lp["token_logprobs"][i].get<double>() == best, greedy) << i;
    }
    EXPECT_LT(sum, 0);
  }
  // max_tokens 0 without echo: an empty completion.
  Http h = post(port, "/v1/completions", {{"prompt", text}, {"max_tokens", 0}});
  ASSERT_EQ(h.status, 200) << h.body;
  EXPECT_EQ(h.parsed()["choices"][0]["text"], "");
  EXPECT_EQ(h.parsed()["usage"]["completion_tokens"], 0);
}

TEST(ServeLogprobs, ChatLogprobsAndTopLogprobsInTheChatFormat) {
  TempDir dir;
  const std::string model = templated_teacher(dir, json::parse(kTemplateGoldens)["templates"]["smol"]);
  json messages = json::array({{{"role", "user"}, {"content", "And God said"}}});
  Tokenizer tok = Tokenizer::load(model);
  const std::vector<int64_t> prompt = tok.encode(serve::ChatTemplate::load(model)->render(messages), false);
  const std::vector<int64_t> gen = greedy_tokens(model, prompt, 8);
  const auto ref = runtime_logprobs(model, join(prompt, gen));
  TestServer server(options(model, 256));
  Http h = post(server.port(), "/v1/chat/completions",
                {{"messages", messages}, {"max_tokens", 8}, {"temperature", 0}, {"ignore_eos", true}, {"logprobs", true},
                 {"top_logprobs", 3}});
  ASSERT_EQ(h.status, 200) << h.body;
  const json c = h.parsed()["choices"][0];
  const json& content = c["logprobs"]["content"];
  ASSERT_EQ(content.size(), gen.size()) << c.dump();
  EXPECT_TRUE(c["logprobs"]["refusal"].is_null());
  std::string concat;
  for (size_t j = 0; j < gen.size(); ++j) {
    const json& e = content[j];
    const std::vector<double>& row = ref[prompt.size() + j - 1];
    EXPECT_NEAR(e["logprob"].get<double>(), row[gen[j]], 1e-4) << j;
    const std::string token = e["token"];
    concat += token;
    std::vector<int> bytes(token.begin(), token.end());
    for (int& b : bytes) b &= 0xff;
    EXPECT_EQ(e["bytes"], json(bytes)) << j;
    ASSERT_EQ(e["top_logprobs"].size(), 3u) << e.dump();
    const std::vector<double> want = top_values(row, 3);
    for (size_t k = 0; k < 3; ++k) {
      EXPECT_NEAR(e["top_logprobs"][k]["logprob"].get<double>(), want[k], 1e-4) << j << " " << k;
      EXPECT_TRUE(e["top_logprobs"][k]["token"].is_string());
      EXPECT_TRUE(e["top_logprobs"][k]["bytes"].is_array());
    }
    EXPECT_EQ(e["top_logprobs"][0]["token"], token);  // greedy: the chosen token is the most likely
  }
  EXPECT_EQ(concat, c["message"]["content"]);
  // logprobs true alone: no alternatives.
  h = post(server.port(), "/v1/chat/completions", {{"messages", messages}, {"max_tokens", 2}, {"temperature", 0}, {"logprobs", true}});
  ASSERT_EQ(h.status, 200) << h.body;
  EXPECT_TRUE(h.parsed()["choices"][0]["logprobs"]["content"][0]["top_logprobs"].empty());
  // n = 2 on chat too.
  h = post(server.port(), "/v1/chat/completions", {{"messages", messages}, {"max_tokens", 4}, {"temperature", 0}, {"n", 2}});
  ASSERT_EQ(h.status, 200) << h.body;
  ASSERT_EQ(h.parsed()["choices"].size(), 2u);
  EXPECT_EQ(h.parsed()["choices"][1]["index"], 1);
  EXPECT_EQ(h.parsed()["choices"][0]["message"], h.parsed()["choices"][1]["message"]);
}

TEST(ServeLogprobs, NChoicesAndSeeds) {
  TestServer server(options(teacher_dir(), 256));
  const int port = server.port();
  // Temperature 0: n identical choices, indexed, usage counting all of them.
  Http h = post(port, "/v1/completions", {{"prompt", "And God said"}, {"max_tokens", 8}, {"temperature", 0}, {"n", 2},
                                          {"ignore_eos", true}});
  ASSERT_EQ(h.status, 200) << h.body;
  json j = h.parsed();
  ASSERT_EQ(j["choices"].size(), 2u);
  EXPECT_EQ(j["choices"][0]["index"], 0);
  EXPECT_EQ(j["choices"][1]["index"], 1);
  EXPECT_EQ(j["choices"][0]["text"], j["choices"][1]["text"]);
  EXPECT_EQ(j["usage"]["completion_tokens"], 16);
  // Sampled: the same seed gives the same texts, choice by choice; choices differ from each other.
  json sampled = {{"prompt", "And God said"}, {"max_tokens", 24}, {"temperature", 1.0}, {"n", 3}, {"seed", 42},
                  {"ignore_eos", true}};
  json a = post(port, "/v1/completions", sampled).parsed();
  json b = post(port, "/v1/completions", sampled).parsed();
  ASSERT_EQ(a["choices"].size(), 3u);
  for (size_t i = 0; i < 3; ++i) EXPECT_EQ(a["choices"][i]["text"], b["choices"][i]["text"]) << i;
  EXPECT_NE(a["choices"][0]["text"], a["choices"][1]["text"]);
  EXPECT_NE(a["choices"][1]["text"], a["choices"][2]["text"]);
  // Choice 0 of n is the n = 1 answer with that seed; another seed gives another text.
  json one = sampled;
  one["n"] = 1;
  EXPECT_EQ(post(port, "/v1/completions", one).parsed()["choices"][0]["text"], a["choices"][0]["text"]);
  one["seed"] = 43;
  EXPECT_NE(post(port, "/v1/completions", one).parsed()["choices"][0]["text"], a["choices"][0]["text"]);
  // n with logprobs and echo: every choice gets the prompt's log-probabilities.
  h = post(port, "/v1/completions", {{"prompt", "And God said"}, {"max_tokens", 3}, {"n", 2}, {"seed", 5}, {"logprobs", 2},
                                     {"echo", true}});
  ASSERT_EQ(h.status, 200) << h.body;
  j = h.parsed();
  const size_t P = Tokenizer::load(teacher_dir()).encode("And God said", true).size();
  for (size_t i = 0; i < 2; ++i) {
    ASSERT_GE(j["choices"][i]["logprobs"]["tokens"].size(), P) << i;
    for (size_t k = 0; k < P; ++k)
      EXPECT_EQ(j["choices"][i]["logprobs"]["token_logprobs"][k], j["choices"][0]["logprobs"]["token_logprobs"][k]);
  }
  // Streamed, n = 2 and echo: each index's chunks add up to its non-streamed text.
  json streamed = {{"prompt", "And God said"}, {"max_tokens", 8}, {"temperature", 0.8}, {"n", 2}, {"seed", 9},
                   {"echo", true}, {"stream", true}, {"stream_options", {{"include_usage", true}}}};
  h = post(port, "/v1/completions", streamed);
  ASSERT_EQ(h.status, 200) << h.body;
  bool done = false;
  std::vector<json> events = sse_events(h.body, &done);
  EXPECT_TRUE(done);
  std::string texts[2];
  int finishes[2] = {0, 0};
  json usage;
  for (const json& e : events) {
    if (e.contains("usage") && !e["usage"].is_null()) usage = e["usage"];
    for (const json& c : e["choices"]) {
      const int64_t i = c["index"];
      ASSERT_TRUE(i == 0 || i == 1);
      texts[i] += c["text"].get<std::string>();
      finishes[i] += !c["finish_reason"].is_null();
    }
  }
  streamed.erase("stream");
  streamed.erase("stream_options");
  j = post(port, "/v1/completions", streamed).parsed();
  for (size_t i = 0; i < 2; ++i) {
    EXPECT_EQ(texts[i], j["choices"][i]["text"]) << i;
    EXPECT_EQ(finishes[i], 1) << i;
    EXPECT_EQ(texts[i].rfind("And God said", 0), 0u) << texts[i];
  }
  EXPECT_EQ(usage, j["usage"]);
}

TEST(ServeLogprobs, BadValuesGet400NamingTheFieldAndTheServerKeepsServing) {
  TempDir dir;
  const std::string model = templated_teacher(dir, "{{ messages[0]['content'] }}");
  TestServer server(options(model, 64));
  const int port = server.port();
  const std::string cmpl = "/v1/completions", chat = "/v1/chat/completions";
  const json p = {{"prompt", "And God said"}, {"max_tokens", 2}};
  const json m = {{"messages", {{{"role", "user"}, {"content", "And God said"}}}}, {"max_tokens", 2}};
  auto with = [](json j, const char* key, const json& v) {
    j[key] = v;
    return j;
  };
  expect_error_shape(post(port, cmpl, with(p, "logprobs", 21)), 400, "'logprobs' must be an integer in [0, 20], got 21", "logprobs");
  expect_error_shape(post(port, cmpl, with(p, "logprobs", -1)), 400, "'logprobs' must be an integer in [0, 20]", "logprobs");
  expect_error_shape(post(port, cmpl, with(p, "logprobs", 1.5)), 400, "'logprobs' must be an integer", "logprobs");
  expect_error_shape(post(port, cmpl, with(p, "logprobs", "2")), 400, "'logprobs' must be an integer", "logprobs");
  expect_error_shape(post(port, cmpl, with(p, "logprobs", true)), 400, "'logprobs' must be an integer", "logprobs");
  expect_error_shape(post(port, cmpl, with(p, "echo", 1)), 400, "'echo' must be a boolean", "echo");
  expect_error_shape(post(port, cmpl, with(p, "top_logprobs", 2)), 400, "use 'logprobs': N", "top_logprobs");
  expect_error_shape(post(port, cmpl, with(with(p, "logprobs", 2), "stream", true)), 400, "not supported with 'stream'",
                     "logprobs");
  expect_error_shape(post(port, cmpl, with(p, "n", 0)), 400, "'n' must be an integer in [1, 16], got 0", "n");
  expect_error_shape(post(port, cmpl, with(p, "n", 17)), 400, "'n' must be an integer in [1, 16], got 17", "n");
  expect_error_shape(post(port, cmpl, with(p, "n", 2.5)), 400, "'n' must be an integer", "n");
  expect_error_shape(post(port, cmpl, with(p, "seed", "x")), 400, "'seed' must be an integer", "seed");
  expect_error_shape(post(port, chat, with(m, "top_logprobs", 2)), 400, "'top_logprobs' requires 'logprobs': true",
                     "top_logprobs");
  expect_error_shape(post(port, chat, with(with(m, "logprobs", false), "top_logprobs", 2)), 400, "requires 'logprobs': true",
                     "top_logprobs");
  expect_error_shape(post(port, chat, with(with(m, "logprobs", true), "top_logprobs", 21)), 400,
                     "'top_logprobs' must be an integer in [0, 20]", "top_logprobs");
  expect_error_shape(post(port, chat, with(with(m, "logprobs", true), "top_logprobs", -3)), 400,
                     "'top_logprobs' must be an integer in [0, 20]", "top_logprobs");
  expect_error_shape(post(port, chat, with(m, "logprobs", 3)), 400, "'logprobs' must be a boolean", "logprobs");
  expect_error_shape(post(port, chat, with(m, "echo", true)), 400, "'echo' is not a parameter", "echo");
  expect_error_shape(post(port, chat, with(m, "max_tokens", 0)), 400, "in [1,", "max_tokens");
  expect_error_shape(post(port, chat, with(with(m, "logprobs", true), "stream", true)), 400, "not supported with 'stream'",
                     "logprobs");
  // The server still answers, with log-probabilities.
  Http h = post(port, cmpl, with(with(p, "logprobs", 20), "echo", true));
  ASSERT_EQ(h.status, 200) << h.body;
  EXPECT_GE(h.parsed()["choices"][0]["logprobs"]["top_logprobs"][1].size(), 20u);
  h = post(port, chat, with(with(with(m, "logprobs", true), "top_logprobs", 20), "ignore_eos", true));
  ASSERT_EQ(h.status, 200) << h.body;
  EXPECT_EQ(h.parsed()["choices"][0]["logprobs"]["content"][0]["top_logprobs"].size(), 20u);
  EXPECT_EQ(get(port, "/health").status, 200);
}

}  // namespace
}  // namespace rad::test
