// A Jinja subset, enough for the chat templates that checkpoints ship in tokenizer_config.json.
//
// Why our own: Hugging Face stores chat templates as Jinja2 source, and no Debian package renders
// Jinja from C++ (the C++ ports, e.g. minja or inja, are not packaged, and inja's syntax differs).
// The templates of the models we serve (SmolLM2's ChatML, Llama-3, Qwen2, Mistral) use a small,
// stable part of the language, so a few hundred lines cover them, and anything outside that part
// is a parse or render error naming the construct instead of a wrong prompt.
//
// Supported: text, {{ expr }}, {% for x in xs %} (also `for k, v in d.items()`, `{% else %}`,
// loop.index/index0/first/last/length/revindex/revindex0), {% if %}/{% elif %}/{% else %},
// {% set name = expr %}, {# comments #}, whitespace control (`{%-`, `-%}`, `{{-`, `-}}`) and the
// environment Hugging Face renders with (trim_blocks and lstrip_blocks on). Expressions: string,
// integer, float, true/false/none literals, list literals, names, `x.attr`, `x['key']`, `x[i]`
// (negative too), `x[a:b]` slices, + - * / // %, `~`, comparisons, `in` / `not in`,
// and/or/not, `a if c else b`, filters (trim, length, count, lower, upper, capitalize, title,
// string, int, first, last, join, default/d, tojson, list, replace, items), tests (`is [not]`
// defined, undefined, none, string, number, integer, mapping, sequence, iterable, boolean, true,
// false, even, odd), string methods (strip, lstrip, rstrip, upper, lower, startswith, endswith,
// split, replace, title), dict methods (items, keys, values, get) and raise_exception(message).
#pragma once

#include <nlohmann/json.hpp>

#include <memory>
#include <string>

namespace rad::serve {

class JinjaTemplate {
 public:
  // Throws rad::Error naming the unsupported or malformed construct.
  static JinjaTemplate parse(const std::string& source);
  // Renders with `context` (a JSON object of variables). Throws rad::Error on type errors, unknown
  // filters/functions and raise_exception("...") (the message is the template's).
  std::string render(const nlohmann::json& context) const;

  struct Node;

 private:
  std::shared_ptr<const Node> root_;
};

}  // namespace rad::serve
