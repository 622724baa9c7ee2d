#include "rad/serve/jinja.h"

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstdlib>
#include <functional>
#include <limits>
#include <map>
#include <vector>

#include "rad/core/error.h"

namespace rad::serve {
namespace {

using json = nlohmann::json;

// Undefined (a missing variable, key or attribute) is a discarded json value: falsy, prints as ""
// and is what `is defined` tells apart from none.
json undefined() { return json(json::value_t::discarded); }
bool is_undef(const json& v) { return v.is_discarded(); }

[[noreturn]] void template_error(const std::string& what) { fail("chat template: {}", what); }

// Every dump of a value the template or its input controls goes through here: strings need not be
// valid UTF-8 (a template's string literal, a message's content), and nlohmann's default dump
// throws type_error 316 on invalid bytes; these are replaced by U+FFFD instead (fuzz finding,
// tests/fuzz/regressions/chat_template/invalid_utf8_index_key.jinja).
std::string dump(const json& v) { return v.dump(-1, ' ', false, json::error_handler_t::replace); }

// A literal as written in a message: long ones (up to the whole template) are cut short.
std::string quote_literal(const std::string& text) {
  return text.size() <= 40 ? text : text.substr(0, 20) + "..." + text.substr(text.size() - 10);
}

const char* type_name(const json& v) {
  if (is_undef(v)) return "undefined";
  switch (v.type()) {
    case json::value_t::null: return "none";
    case json::value_t::boolean: return "boolean";
    case json::value_t::string: return "string";
    case json::value_t::array: return "list";
    case json::value_t::object: return "dict";
    case json::value_t::number_float: return "float";
    default: return "integer";
  }
}

bool truthy(const json& v) {
  if (is_undef(v) || v.is_null()) return false;
  if (v.is_boolean()) return v.get<bool>();
  if (v.is_number_integer() || v.is_number_unsigned()) return v.get<int64_t>() != 0;
  if (v.is_number_float()) return v.get<double>() != 0;
  if (v.is_string()) return !v.get_ref<const std::string&>().empty();
  return !v.empty();  // list, dict
}

std::string to_text(const json& v) {
  if (is_undef(v)) return "";
  if (v.is_string()) return v.get<std::string>();
  if (v.is_boolean()) return v.get<bool>() ? "True" : "False";
  if (v.is_null()) return "None";
  if (v.is_number()) return dump(v);
  template_error(fmt::format("cannot print a {} (use the tojson filter)", type_name(v)));
}

// JSON as Python's json.dumps writes it by default (", " and ": " separators), which is what
// Hugging Face's tojson filter produces. Object keys come out sorted (nlohmann's order), where
// Python keeps insertion order.
std::string python_json(const json& v) {
  std::string out;
  if (v.is_array()) {
    out = "[";
    for (size_t i = 0; i < v.size(); ++i) out += (i ? ", " : "") + python_json(v[i]);
    return out + "]";
  }
  if (v.is_object()) {
    out = "{";
    bool first = true;
    for (auto it = v.begin(); it != v.end(); ++it) {
      out += (first ? "" : ", ") + dump(json(it.key())) + ": " + python_json(it.value());
      first = false;
    }
    return out + "}";
  }
  return dump(v);
}

// ---------------------------------------------------------------- expressions

struct Expr;
using ExprPtr = std::shared_ptr<const Expr>;
struct Expr {
  enum Kind { kLiteral, kVar, kAttr, kIndex, kSlice, kCall, kFilter, kTest, kNot, kNeg, kBinary, kCond, kList };
  Kind kind;
  json value;              // kLiteral
  std::string name;        // kVar, kAttr, kCall (method or function), kFilter, kTest, kBinary (operator)
  std::vector<ExprPtr> a;  // operands / arguments (for kCall on an object, a[0] is the object)
  bool negated = false;    // kTest: `is not`
  bool method = false;     // kCall: obj.name(args)
};

std::shared_ptr<Expr> new_expr(Expr::Kind k) {
  auto e = std::make_shared<Expr>();
  e->kind = k;
  return e;
}

struct Token {
  enum Kind { kName, kString, kInt, kFloat, kOp, kEnd } kind;
  std::string text;
};

std::vector<Token> lex(const std::string& s, const std::string& where) {
  std::vector<Token> out;
  size_t i = 0;
  while (i < s.size()) {
    const char c = s[i];
    if (std::isspace(static_cast<unsigned char>(c))) {
      ++i;
    } else if (std::isalpha(static_cast<unsigned char>(c)) || c == '_') {
      size_t j = i;
      while (j < s.size() && (std::isalnum(static_cast<unsigned char>(s[j])) || s[j] == '_')) ++j;
      out.push_back({Token::kName, s.substr(i, j - i)});
      i = j;
    } else if (std::isdigit(static_cast<unsigned char>(c))) {
      size_t j = i;
      while (j < s.size() && std::isdigit(static_cast<unsigned char>(s[j]))) ++j;
      bool is_float = j + 1 < s.size() && s[j] == '.' && std::isdigit(static_cast<unsigned char>(s[j + 1]));
      if (is_float) {
        ++j;
        while (j < s.size() && std::isdigit(static_cast<unsigned char>(s[j]))) ++j;
      }
      out.push_back({is_float ? Token::kFloat : Token::kInt, s.substr(i, j - i)});
      i = j;
    } else if (c == '\'' || c == '"') {
      std::string text;
      size_t j = i + 1;
      for (; j < s.size() && s[j] != c; ++j) {
        if (s[j] == '\\' && j + 1 < s.size()) {
          const char e = s[++j];
          text += e == 'n' ? '\n' : e == 't' ? '\t' : e == 'r' ? '\r' : e;  // \\ \' \" and others: the character
        } else {
          text += s[j];
        }
      }
      if (j >= s.size()) template_error(fmt::format("unterminated string literal in '{}'", where));
      out.push_back({Token::kString, text});
      i = j + 1;
    } else {
      static const char* two[] = {"==", "!=", "<=", ">=", "//", "**"};
      std::string op(1, c);
      for (const char* t : two)
        if (s.compare(i, 2, t) == 0) op = t;
      if (op == "**") template_error(fmt::format("unsupported operator '**' in '{}'", where));
      if (op.size() == 1 && std::string("()[].,|~+-*/%<>=:{}").find(c) == std::string::npos)
        template_error(fmt::format("unexpected character '{}' in '{}'", c, where));
      out.push_back({Token::kOp, op});
      i += op.size();
    }
  }
  out.push_back({Token::kEnd, ""});
  return out;
}

// Recursive descent in Jinja2's precedence order: conditional < or < and < not < comparison <
// + - < ~ < * / // % < unary minus < postfix (attribute, index, call, filter, test).
class ExprParser {
 public:
  ExprParser(std::vector<Token> tokens, std::string where) : t_(std::move(tokens)), where_(std::move(where)) {}

  ExprPtr parse_all() {
    ExprPtr e = expression();
    expect_end();
    return e;
  }
  ExprPtr expression() {
    Nest nest(*this);
    return conditional();
  }

  // Bounds on one expression, so that parsing, evaluating and freeing it recurse a bounded depth
  // (fuzz finding: 1,000 nested '[' overflowed the parser's stack): nesting of parentheses,
  // brackets, calls, 'not', '-' and 'if ... else' chains, and nodes in all (a chain like
  // a.b.c... or 1+1+1... is a tree as deep as it is long). Real chat templates stay far below.
  static constexpr int kMaxDepth = 100;
  static constexpr int kMaxNodes = 1000;
  bool at_name(const char* n) const { return peek().kind == Token::kName && peek().text == n; }
  bool at_op(const char* o) const { return peek().kind == Token::kOp && peek().text == o; }
  const Token& peek(size_t k = 0) const { return t_[std::min(p_ + k, t_.size() - 1)]; }
  Token next() { return t_[std::min(p_++, t_.size() - 1)]; }
  std::string name() {
    if (peek().kind != Token::kName) error("a name");
    return next().text;
  }
  void expect_op(const char* o) {
    if (!at_op(o)) error(fmt::format("'{}'", o));
    ++p_;
  }
  void expect_name(const char* n) {
    if (!at_name(n)) error(fmt::format("'{}'", n));
    ++p_;
  }
  void expect_end() {
    if (peek().kind != Token::kEnd) error("the end of the tag");
  }
  [[noreturn]] void error(const std::string& expected) const {
    template_error(fmt::format("expected {} but found '{}' in '{}'", expected,
                               peek().kind == Token::kEnd ? std::string("end of tag") : peek().text, where_));
  }

 private:
  struct Nest {
    explicit Nest(ExprParser& p) : p_(p) {
      if (++p_.depth_ > kMaxDepth)
        template_error(fmt::format("expression nested more than {} levels deep in '{}'", kMaxDepth, quote_literal(p_.where_)));
    }
    ~Nest() { --p_.depth_; }
    ExprParser& p_;
  };
  std::shared_ptr<Expr> make(Expr::Kind k) {
    if (++nodes_ > kMaxNodes)
      template_error(fmt::format("expression of more than {} parts in '{}'", kMaxNodes, quote_literal(where_)));
    return new_expr(k);
  }
  ExprPtr binary(const std::string& op, ExprPtr l, ExprPtr r) {
    auto e = make(Expr::kBinary);
    e->name = op;
    e->a = {std::move(l), std::move(r)};
    return e;
  }
  ExprPtr conditional() {
    ExprPtr e = or_expr();
    if (at_name("if")) {
      ++p_;
      auto c = make(Expr::kCond);
      ExprPtr cond = or_expr();
      auto undef = make(Expr::kLiteral);
      undef->value = undefined();
      ExprPtr otherwise = undef;
      if (at_name("else")) {
        ++p_;
        Nest nest(*this);
        otherwise = conditional();
      }
      c->a = {cond, e, otherwise};
      return c;
    }
    return e;
  }
  ExprPtr or_expr() {
    ExprPtr e = and_expr();
    while (at_name("or")) ++p_, e = binary("or", e, and_expr());
    return e;
  }
  ExprPtr and_expr() {
    ExprPtr e = not_expr();
    while (at_name("and")) ++p_, e = binary("and", e, not_expr());
    return e;
  }
  ExprPtr not_expr() {
    if (at_name("not")) {
      ++p_;
      Nest nest(*this);
      auto e = make(Expr::kNot);
      e->a = {not_expr()};
      return e;
    }
    return compare();
  }
  ExprPtr compare() {
    ExprPtr e = add();
    for (;;) {
      if (peek().kind == Token::kOp && (peek().text == "==" || peek().text == "!=" || peek().text == "<" ||
                                        peek().text == ">" || peek().text == "<=" || peek().text == ">=")) {
        std::string op = next().text;
        e = binary(op, e, add());
      } else if (at_name("in")) {
        ++p_;
        e = binary("in", e, add());
      } else if (at_name("not") && peek(1).kind == Token::kName && peek(1).text == "in") {
        p_ += 2;
        e = binary("not in", e, add());
      } else {
        return e;
      }
    }
  }
  ExprPtr add() {
    ExprPtr e = concat();
    while (at_op("+") || at_op("-")) {
      std::string op = next().text;
      e = binary(op, e, concat());
    }
    return e;
  }
  ExprPtr concat() {
    ExprPtr e = mul();
    while (at_op("~")) ++p_, e = binary("~", e, mul());
    return e;
  }
  ExprPtr mul() {
    ExprPtr e = unary();
    while (at_op("*") || at_op("/") || at_op("//") || at_op("%")) {
      std::string op = next().text;
      e = binary(op, e, unary());
    }
    return e;
  }
  ExprPtr unary() {
    if (at_op("-")) {
      ++p_;
      Nest nest(*this);
      auto e = make(Expr::kNeg);
      e->a = {unary()};
      return e;
    }
    return postfix(primary());
  }
  std::vector<ExprPtr> call_args() {  // after '('
    std::vector<ExprPtr> args;
    while (!at_op(")")) {
      if (peek().kind == Token::kName && peek(1).kind == Token::kOp && peek(1).text == "=")
        template_error(fmt::format("keyword arguments are not supported ('{}=') in '{}'", peek().text, where_));
      args.push_back(expression());
      if (!at_op(",")) break;
      ++p_;
    }
    expect_op(")");
    return args;
  }
  ExprPtr postfix(ExprPtr e) {
    for (;;) {
      if (at_op(".")) {
        ++p_;
        std::string n = name();
        if (at_op("(")) {
          ++p_;
          auto c = make(Expr::kCall);
          c->name = n;
          c->method = true;
          c->a = {e};
          for (auto& arg : call_args()) c->a.push_back(arg);
          e = c;
        } else {
          auto a = make(Expr::kAttr);
          a->name = n;
          a->a = {e};
          e = a;
        }
      } else if (at_op("[")) {
        ++p_;
        ExprPtr from = at_op(":") ? nullptr : expression();
        if (at_op(":")) {  // a slice [a:b] (no step)
          ++p_;
          ExprPtr to = at_op("]") ? nullptr : expression();
          expect_op("]");
          auto s = make(Expr::kSlice);
          s->a = {e, from, to};
          e = s;
        } else {
          expect_op("]");
          auto ix = make(Expr::kIndex);
          ix->a = {e, from};
          e = ix;
        }
      } else if (at_op("(")) {
        if (e->kind != Expr::kVar) template_error(fmt::format("only named functions can be called in '{}'", where_));
        ++p_;
        auto c = make(Expr::kCall);
        c->name = e->name;
        c->a = call_args();
        e = c;
      } else if (at_op("|")) {
        ++p_;
        auto f = make(Expr::kFilter);
        f->name = name();
        f->a = {e};
        if (at_op("(")) {
          ++p_;
          for (auto& arg : call_args()) f->a.push_back(arg);
        }
        e = f;
      } else if (at_name("is")) {
        ++p_;
        auto t = make(Expr::kTest);
        if (at_name("not")) ++p_, t->negated = true;
        // `none`, `true`, `false` are tests here, not literals.
        t->name = name();
        t->a = {e};
        e = t;
      } else {
        return e;
      }
    }
  }
  ExprPtr primary() {
    Token t = next();
    auto lit = [this](json v) {
      auto e = make(Expr::kLiteral);
      e->value = std::move(v);
      return e;
    };
    switch (t.kind) {
      case Token::kString: {
        std::string s = t.text;
        while (peek().kind == Token::kString) s += next().text;  // adjacent literals concatenate
        return lit(s);
      }
      case Token::kInt: {
        int64_t v = 0;
        const char* end = t.text.data() + t.text.size();
        auto [ptr, ec] = std::from_chars(t.text.data(), end, v);
        if (ec == std::errc::result_out_of_range)
          template_error(fmt::format("integer literal {} is out of range (beyond 64-bit integers)", quote_literal(t.text)));
        if (ec != std::errc() || ptr != end) template_error(fmt::format("invalid integer literal {}", quote_literal(t.text)));
        return lit(v);
      }
      case Token::kFloat: {
        errno = 0;
        const double v = std::strtod(t.text.c_str(), nullptr);  // the lexer passes only digits '.' digits
        if (errno == ERANGE && std::isinf(v))
          template_error(fmt::format("float literal {} is out of range", quote_literal(t.text)));
        return lit(v);  // an underflow is 0 or a denormal, as in Python
      }
      case Token::kName: {
        if (t.text == "true" || t.text == "True") return lit(true);
        if (t.text == "false" || t.text == "False") return lit(false);
        if (t.text == "none" || t.text == "None") return lit(nullptr);
        auto v = make(Expr::kVar);
        v->name = t.text;
        return v;
      }
      case Token::kOp:
        if (t.text == "(") {
          ExprPtr e = expression();
          if (at_op(",")) template_error(fmt::format("tuples are not supported in '{}'", where_));
          expect_op(")");
          return e;
        }
        if (t.text == "[") {
          auto l = make(Expr::kList);
          while (!at_op("]")) {
            l->a.push_back(expression());
            if (!at_op(",")) break;
            ++p_;
          }
          expect_op("]");
          return l;
        }
        if (t.text == "{") template_error(fmt::format("dict literals are not supported in '{}'", where_));
        break;
      default: break;
    }
    --p_;
    error("an expression");
  }

  std::vector<Token> t_;
  size_t p_ = 0;
  std::string where_;
  int depth_ = 0;
  int nodes_ = 0;
};

// ---------------------------------------------------------------- statements

}  // namespace

struct JinjaTemplate::Node {
  enum Kind { kBlock, kText, kOutput, kFor, kIf, kSet } kind;
  std::string text;                        // kText
  ExprPtr expr;                            // kOutput, kSet value, kFor iterable
  std::vector<std::string> names;          // kFor loop variables, kSet target
  std::vector<std::shared_ptr<const Node>> children;  // kBlock; kFor: {body, else}; kIf: bodies
  std::vector<ExprPtr> conditions;         // kIf: one per branch (null for else)
};

namespace {

using Node = JinjaTemplate::Node;
using NodePtr = std::shared_ptr<const Node>;

struct Segment {
  enum Kind { kText, kExpr, kStmt } kind;
  std::string body;  // text, or the tag's inside
};

bool is_blank(char c) { return c == ' ' || c == '\t'; }

// Splits the source into text and tags, applying `-` whitespace control and Hugging Face's
// environment (trim_blocks: drop the newline after a block tag; lstrip_blocks: drop the spaces and
// tabs before a block tag at the start of a line).
std::vector<Segment> split(const std::string& src) {
  std::vector<Segment> out;
  size_t pos = 0;
  bool strip_next = false, trim_newline = false;
  auto push_text = [&](std::string text) {
    if (strip_next) {
      size_t k = 0;
      while (k < text.size() && std::isspace(static_cast<unsigned char>(text[k]))) ++k;
      text.erase(0, k);
    } else if (trim_newline && !text.empty() && text[0] == '\n') {
      text.erase(0, 1);
    }
    strip_next = trim_newline = false;
    out.push_back({Segment::kText, std::move(text)});
  };
  while (pos <= src.size()) {
    size_t open = src.find('{', pos);
    while (open != std::string::npos && open + 1 < src.size() && src[open + 1] != '{' && src[open + 1] != '%' &&
           src[open + 1] != '#')
      open = src.find('{', open + 1);
    if (open == std::string::npos || open + 1 >= src.size()) {
      push_text(src.substr(pos));
      break;
    }
    const char kind = src[open + 1];
    push_text(src.substr(pos, open - pos));
    std::string& before = out.back().body;
    const bool minus_left = open + 2 < src.size() && src[open + 2] == '-';
    if (minus_left) {
      while (!before.empty() && std::isspace(static_cast<unsigned char>(before.back()))) before.pop_back();
    } else if (kind != '{') {  // lstrip_blocks
      // Only when the tag starts its line in the source: blanks after a newline (even one that
      // trim_blocks removed) or at the template's start; blanks after another tag stay.
      size_t k = open;
      while (k > pos && is_blank(src[k - 1])) --k;
      if (k == 0 || src[k - 1] == '\n') before.resize(before.size() - std::min(before.size(), open - k));
    }
    const std::string close = kind == '{' ? "}}" : kind == '%' ? "%}" : "#}";
    size_t i = open + 2 + (minus_left ? 1 : 0);
    size_t end = std::string::npos;
    char quote = 0;
    for (; i + 1 < src.size(); ++i) {
      const char c = src[i];
      if (kind != '#' && quote) {
        if (c == '\\') ++i;
        else if (c == quote) quote = 0;
      } else if (kind != '#' && (c == '\'' || c == '"')) {
        quote = c;
      } else if (src.compare(i, 2, close) == 0) {
        end = i;
        break;
      }
    }
    if (end == std::string::npos)
      template_error(fmt::format("unclosed tag '{}' (expected '{}')", src.substr(open, std::min<size_t>(40, src.size() - open)), close));
    size_t body_end = end;
    const bool minus_right = body_end > open + 2 && src[body_end - 1] == '-';
    if (minus_right) --body_end;
    const size_t body_start = open + 2 + (minus_left ? 1 : 0);
    std::string body = body_start <= body_end ? src.substr(body_start, body_end - body_start) : "";
    if (kind == '{') out.push_back({Segment::kExpr, body});
    else if (kind == '%') out.push_back({Segment::kStmt, body});
    strip_next = minus_right;
    trim_newline = !minus_right && kind != '{';  // trim_blocks
    pos = end + 2;
    if (pos == src.size()) {
      push_text("");
      break;
    }
  }
  return out;
}

class TemplateParser {
 public:
  explicit TemplateParser(std::vector<Segment> segs) : s_(std::move(segs)) {}

  NodePtr parse() {
    std::string stop;
    NodePtr root = block({}, &stop);
    return root;
  }

 private:
  // Parses nodes until a statement whose keyword is in `ends` (returned in *stop, with the rest of
  // its tag in *rest) or the end of input (stop = "").
  // Statement nesting is bounded like expressions' (parsing and rendering recurse per level).
  static constexpr int kMaxBlockDepth = 100;
  int depth_ = 0;

  NodePtr block(const std::vector<std::string>& ends, std::string* stop, std::string* rest = nullptr) {
    if (depth_ >= kMaxBlockDepth) template_error(fmt::format("statements nested more than {} levels deep", kMaxBlockDepth));
    ++depth_;
    struct Leave {
      int& d;
      ~Leave() { --d; }
    } leave{depth_};
    auto b = std::make_shared<Node>();
    b->kind = Node::kBlock;
    while (i_ < s_.size()) {
      const Segment& seg = s_[i_++];
      if (seg.kind == Segment::kText) {
        if (seg.body.empty()) continue;
        auto t = std::make_shared<Node>();
        t->kind = Node::kText;
        t->text = seg.body;
        b->children.push_back(t);
      } else if (seg.kind == Segment::kExpr) {
        auto o = std::make_shared<Node>();
        o->kind = Node::kOutput;
        o->expr = ExprParser(lex(seg.body, "{{" + seg.body + "}}"), "{{" + seg.body + "}}").parse_all();
        b->children.push_back(o);
      } else {
        const std::string where = "{%" + seg.body + "%}";
        std::vector<Token> toks = lex(seg.body, where);
        if (toks[0].kind != Token::kName) template_error(fmt::format("expected a statement in '{}'", where));
        const std::string kw = toks[0].text;
        if (std::find(ends.begin(), ends.end(), kw) != ends.end()) {
          *stop = kw;
          if (rest) *rest = seg.body;
          return b;
        }
        if (kw == "for") b->children.push_back(for_node(toks, where));
        else if (kw == "if") b->children.push_back(if_node(toks, where));
        else if (kw == "set") b->children.push_back(set_node(toks, where));
        else if (kw == "endfor" || kw == "endif" || kw == "elif" || kw == "else")
          template_error(fmt::format("'{}' without a matching opening tag", where));
        else
          template_error(fmt::format("unsupported statement '{}' in '{}' (supported: for, if/elif/else, set)", kw, where));
      }
    }
    if (!ends.empty()) template_error(fmt::format("missing '{{% {} %}}' at the end of the template", ends.back()));
    *stop = "";
    return b;
  }

  NodePtr for_node(const std::vector<Token>& toks, const std::string& where) {
    ExprParser p(toks, where);
    p.next();  // for
    auto n = std::make_shared<Node>();
    n->kind = Node::kFor;
    n->names.push_back(p.name());
    if (p.at_op(",")) {
      p.next();
      n->names.push_back(p.name());
    }
    p.expect_name("in");
    n->expr = p.expression();
    if (p.at_name("recursive")) template_error(fmt::format("recursive loops are not supported in '{}'", where));
    p.expect_end();
    std::string stop;
    n->children.push_back(block({"else", "endfor"}, &stop));
    if (stop == "else") {
      n->children.push_back(block({"endfor"}, &stop));
    }
    return n;
  }

  NodePtr if_node(const std::vector<Token>& toks, const std::string& where) {
    auto n = std::make_shared<Node>();
    n->kind = Node::kIf;
    std::vector<Token> cond_toks = toks;
    std::string cond_where = where;
    for (;;) {
      ExprParser p(cond_toks, cond_where);
      p.next();  // if / elif
      n->conditions.push_back(p.expression());
      p.expect_end();
      std::string stop, rest;
      n->children.push_back(block({"elif", "else", "endif"}, &stop, &rest));
      if (stop == "endif") return n;
      if (stop == "else") {
        n->conditions.push_back(nullptr);
        n->children.push_back(block({"endif"}, &stop));
        return n;
      }
      cond_where = "{%" + rest + "%}";
      cond_toks = lex(rest, cond_where);
    }
  }

  NodePtr set_node(const std::vector<Token>& toks, const std::string& where) {
    ExprParser p(toks, where);
    p.next();  // set
    auto n = std::make_shared<Node>();
    n->kind = Node::kSet;
    n->names.push_back(p.name());
    if (p.at_op(".")) template_error(fmt::format("assigning to attributes (namespace) is not supported in '{}'", where));
    if (!p.at_op("=")) template_error(fmt::format("block assignments ('{{% set x %}}...') are not supported in '{}'", where));
    p.next();
    n->expr = p.expression();
    p.expect_end();
    return n;
  }

  std::vector<Segment> s_;
  size_t i_ = 0;
};

// ---------------------------------------------------------------- evaluation

class Renderer {
 public:
  explicit Renderer(const json& context) { scopes_.push_back(context.is_object() ? context : json::object()); }

  void run(const Node& n, std::string& out) {
    switch (n.kind) {
      case Node::kBlock:
        for (const auto& c : n.children) run(*c, out);
        break;
      case Node::kText: out += n.text; break;
      case Node::kOutput: out += to_text(eval(*n.expr)); break;
      case Node::kSet: scopes_.back()[n.names[0]] = eval(*n.expr); break;
      case Node::kIf:
        for (size_t b = 0; b < n.children.size(); ++b)
          if (!n.conditions[b] || truthy(eval(*n.conditions[b]))) {
            run(*n.children[b], out);
            break;
          }
        break;
      case Node::kFor: {
        json items = eval(*n.expr);
        if (is_undef(items) || items.is_null()) items = json::array();
        if (items.is_object()) {  // iterating a dict gives its keys
          json keys = json::array();
          for (auto it = items.begin(); it != items.end(); ++it) keys.push_back(it.key());
          items = keys;
        }
        if (items.is_string()) {
          json chars = json::array();
          for (char c : items.get<std::string>()) chars.push_back(std::string(1, c));
          items = chars;
        }
        if (!items.is_array())
          template_error(fmt::format("cannot loop over a {}", type_name(items)));
        if (items.empty()) {
          if (n.children.size() > 1) run(*n.children[1], out);
          break;
        }
        const int64_t len = static_cast<int64_t>(items.size());
        for (int64_t i = 0; i < len; ++i) {
          json scope = json::object();
          if (n.names.size() == 2) {
            if (!items[i].is_array() || items[i].size() != 2)
              template_error(fmt::format("cannot unpack a {} into '{}, {}'", type_name(items[i]), n.names[0], n.names[1]));
            scope[n.names[0]] = items[i][0];
            scope[n.names[1]] = items[i][1];
          } else {
            scope[n.names[0]] = items[i];
          }
          scope["loop"] = {{"index", i + 1},    {"index0", i},         {"first", i == 0},
                           {"last", i == len - 1}, {"length", len},     {"revindex", len - i},
                           {"revindex0", len - i - 1}};
          if (i > 0) scope["loop"]["previtem"] = items[i - 1];
          if (i + 1 < len) scope["loop"]["nextitem"] = items[i + 1];
          scopes_.push_back(std::move(scope));
          run(*n.children[0], out);
          scopes_.pop_back();
        }
        break;
      }
    }
  }

 private:
  json lookup(const std::string& name) const {
    for (auto it = scopes_.rbegin(); it != scopes_.rend(); ++it) {
      auto f = it->find(name);
      if (f != it->end()) return *f;
    }
    return undefined();
  }

  static json index(const json& obj, const json& key) {
    if (obj.is_object()) {
      if (!key.is_string()) return undefined();
      auto f = obj.find(key.get<std::string>());
      return f == obj.end() ? undefined() : *f;
    }
    if ((obj.is_array() || obj.is_string()) && key.is_number_integer()) {
      const int64_t n = obj.is_array() ? static_cast<int64_t>(obj.size()) : static_cast<int64_t>(obj.get_ref<const std::string&>().size());
      int64_t i = key.get<int64_t>();
      if (i < 0) i += n;
      if (i < 0 || i >= n) return undefined();
      return obj.is_array() ? obj[i] : json(std::string(1, obj.get_ref<const std::string&>()[i]));
    }
    if (is_undef(obj)) template_error(fmt::format("cannot index an undefined value with {}", dump(key)));
    return undefined();
  }

  static int64_t as_int(const json& v, const char* what) {
    if (!v.is_number_integer()) template_error(fmt::format("{} must be an integer, got a {}", what, type_name(v)));
    return v.get<int64_t>();
  }
  static const std::string& as_str(const json& v, const char* what) {
    if (!v.is_string()) template_error(fmt::format("{} must be a string, got a {}", what, type_name(v)));
    return v.get_ref<const std::string&>();
  }

  static std::string strip(const std::string& s, const std::string& chars, bool left, bool right) {
    auto in = [&](char c) { return chars.empty() ? std::isspace(static_cast<unsigned char>(c)) != 0 : chars.find(c) != std::string::npos; };
    size_t a = 0, b = s.size();
    if (left)
      while (a < b && in(s[a])) ++a;
    if (right)
      while (b > a && in(s[b - 1])) --b;
    return s.substr(a, b - a);
  }
  static std::string replace_all(std::string s, const std::string& from, const std::string& to) {
    if (from.empty()) return s;
    for (size_t at = 0; (at = s.find(from, at)) != std::string::npos; at += to.size()) s.replace(at, from.size(), to);
    return s;
  }
  static std::string title(std::string s) {
    bool start = true;
    for (char& c : s) {
      c = start ? static_cast<char>(std::toupper(static_cast<unsigned char>(c))) : static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
      start = !std::isalnum(static_cast<unsigned char>(c));
    }
    return s;
  }
  static std::string lower(std::string s) {
    for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    return s;
  }
  static std::string upper(std::string s) {
    for (char& c : s) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    return s;
  }
  static json items_of(const json& d) {
    json out = json::array();
    for (auto it = d.begin(); it != d.end(); ++it) out.push_back(json::array({it.key(), it.value()}));
    return out;
  }

  json method(const json& obj, const std::string& m, const std::vector<json>& args) {
    auto arg_str = [&](size_t i, const char* what) -> std::string { return i < args.size() ? as_str(args[i], what) : ""; };
    if (obj.is_string()) {
      const std::string& s = obj.get_ref<const std::string&>();
      if (m == "strip") return strip(s, arg_str(0, "strip()'s argument"), true, true);
      if (m == "lstrip") return strip(s, arg_str(0, "lstrip()'s argument"), true, false);
      if (m == "rstrip") return strip(s, arg_str(0, "rstrip()'s argument"), false, true);
      if (m == "upper") return upper(s);
      if (m == "lower") return lower(s);
      if (m == "title") return title(s);
      if (m == "startswith" || m == "endswith") {
        const std::string& x = args.empty() ? as_str(json(), "startswith()'s argument") : as_str(args[0], "the argument");
        if (x.size() > s.size()) return false;
        return m == "startswith" ? s.compare(0, x.size(), x) == 0 : s.compare(s.size() - x.size(), x.size(), x) == 0;
      }
      if (m == "replace") {
        if (args.size() != 2) template_error("replace() takes two arguments");
        return replace_all(s, as_str(args[0], "replace()'s argument"), as_str(args[1], "replace()'s argument"));
      }
      if (m == "split") {
        json out = json::array();
        const std::string sep = arg_str(0, "split()'s argument");
        if (sep.empty()) {
          size_t i = 0;
          while (i < s.size()) {
            while (i < s.size() && std::isspace(static_cast<unsigned char>(s[i]))) ++i;
            size_t j = i;
            while (j < s.size() && !std::isspace(static_cast<unsigned char>(s[j]))) ++j;
            if (j > i) out.push_back(s.substr(i, j - i));
            i = j;
          }
        } else {
          size_t from = 0;
          for (size_t at; (at = s.find(sep, from)) != std::string::npos; from = at + sep.size()) out.push_back(s.substr(from, at - from));
          out.push_back(s.substr(from));
        }
        return out;
      }
    } else if (obj.is_object()) {
      if (m == "items") return items_of(obj);
      if (m == "keys" || m == "values") {
        json out = json::array();
        for (auto it = obj.begin(); it != obj.end(); ++it) out.push_back(m == "keys" ? json(it.key()) : it.value());
        return out;
      }
      if (m == "get") {
        if (args.empty()) template_error("get() needs a key");
        json v = index(obj, args[0]);
        return is_undef(v) ? (args.size() > 1 ? args[1] : json(nullptr)) : v;
      }
    }
    template_error(fmt::format("unsupported method '{}()' on a {}", m, type_name(obj)));
  }

  json filter(const std::string& f, const json& v, const std::vector<json>& args) {
    if (f == "trim") return strip(as_str(v, "the value of 'trim'"), "", true, true);
    if (f == "length" || f == "count") {
      if (v.is_string()) return static_cast<int64_t>(v.get_ref<const std::string&>().size());
      if (v.is_array() || v.is_object()) return static_cast<int64_t>(v.size());
      template_error(fmt::format("'{}' of a {}", f, type_name(v)));
    }
    if (f == "lower") return lower(as_str(v, "the value of 'lower'"));
    if (f == "upper") return upper(as_str(v, "the value of 'upper'"));
    if (f == "title") return title(as_str(v, "the value of 'title'"));
    if (f == "capitalize") {
      std::string s = lower(as_str(v, "the value of 'capitalize'"));
      if (!s.empty()) s[0] = static_cast<char>(std::toupper(static_cast<unsigned char>(s[0])));
      return s;
    }
    if (f == "string") return v.is_string() ? v : json(to_text(v));
    if (f == "int") {
      if (v.is_number_integer()) return v;
      if (v.is_number()) {
        const double d = std::trunc(v.get<double>());
        // [-2^63, 2^63): the doubles that convert to int64 (a cast of any other is undefined).
        if (!(d >= -9223372036854775808.0 && d < 9223372036854775808.0))
          template_error(fmt::format("'int' of {} is out of the 64-bit integer range", dump(v)));
        return static_cast<int64_t>(d);
      }
      if (v.is_string()) {
        try {
          return std::stoll(v.get<std::string>());
        } catch (const std::exception&) {
          return 0;
        }
      }
      return 0;
    }
    if (f == "first" || f == "last") {
      if (!v.is_array() && !v.is_string()) template_error(fmt::format("'{}' of a {}", f, type_name(v)));
      if (v.empty() || (v.is_string() && v.get_ref<const std::string&>().empty())) return undefined();
      return index(v, f == "first" ? 0 : -1);
    }
    if (f == "join") {
      if (!v.is_array()) template_error(fmt::format("'join' of a {}", type_name(v)));
      const std::string sep = args.empty() ? "" : as_str(args[0], "join's separator");
      std::string out;
      for (size_t i = 0; i < v.size(); ++i) out += (i ? sep : "") + to_text(v[i]);
      return out;
    }
    if (f == "default" || f == "d") {
      const bool use_default = is_undef(v) || (args.size() > 1 && truthy(args[1]) && !truthy(v));
      return use_default ? (args.empty() ? json("") : args[0]) : v;
    }
    if (f == "tojson") {
      if (is_undef(v)) template_error("tojson of an undefined value");
      return python_json(v);
    }
    if (f == "list") {
      if (v.is_array()) return v;
      if (v.is_object()) return method(v, "keys", {});
      if (v.is_string()) {
        json out = json::array();
        for (char c : v.get<std::string>()) out.push_back(std::string(1, c));
        return out;
      }
      template_error(fmt::format("'list' of a {}", type_name(v)));
    }
    if (f == "items") {
      if (!v.is_object()) template_error(fmt::format("'items' of a {}", type_name(v)));
      return items_of(v);
    }
    if (f == "replace") {
      if (args.size() != 2) template_error("the 'replace' filter takes two arguments");
      return replace_all(as_str(v, "the value of 'replace'"), as_str(args[0], "replace's argument"),
                         as_str(args[1], "replace's argument"));
    }
    template_error(fmt::format("unsupported filter '{}'", f));
  }

  bool test(const std::string& t, const json& v, const std::vector<json>& args) {
    if (t == "defined") return !is_undef(v);
    if (t == "undefined") return is_undef(v);
    if (t == "none") return v.is_null();
    if (t == "string") return v.is_string();
    if (t == "number") return v.is_number();
    if (t == "integer") return v.is_number_integer();
    if (t == "float") return v.is_number_float();
    if (t == "mapping") return v.is_object();
    if (t == "sequence" || t == "iterable") return v.is_array() || v.is_string() || v.is_object();
    if (t == "boolean") return v.is_boolean();
    if (t == "true") return v.is_boolean() && v.get<bool>();
    if (t == "false") return v.is_boolean() && !v.get<bool>();
    if (t == "even" || t == "odd") return (as_int(v, "the value of 'even'/'odd'") % 2 == 0) == (t == "even");
    template_error(fmt::format("unsupported test 'is {}'", t));
  }

  static bool less(const json& a, const json& b, const std::string& op) {
    if (a.is_number() && b.is_number()) return a.get<double>() < b.get<double>();
    if (a.is_string() && b.is_string()) return a.get_ref<const std::string&>() < b.get_ref<const std::string&>();
    template_error(fmt::format("cannot compare a {} with a {} ('{}')", type_name(a), type_name(b), op));
  }

  static bool contains(const json& hay, const json& needle) {
    if (hay.is_string()) return as_str(needle, "the left side of 'in' on a string").size() == 0 ||
                                hay.get_ref<const std::string&>().find(needle.get_ref<const std::string&>()) != std::string::npos;
    if (hay.is_array()) return std::find(hay.begin(), hay.end(), needle) != hay.end();
    if (hay.is_object()) return needle.is_string() && hay.contains(needle.get<std::string>());
    if (is_undef(hay) || hay.is_null()) return false;
    template_error(fmt::format("'in' on a {}", type_name(hay)));
  }

  json arith(const std::string& op, const json& a, const json& b) {
    if (op == "+") {
      if (a.is_string() && b.is_string()) return a.get<std::string>() + b.get<std::string>();
      if (a.is_array() && b.is_array()) {
        json out = a;
        for (const auto& x : b) out.push_back(x);
        return out;
      }
    }
    if (!a.is_number() || !b.is_number())
      template_error(fmt::format("cannot apply '{}' to a {} and a {} (use '~' to join as text)", op, type_name(a), type_name(b)));
    const bool ints = a.is_number_integer() && b.is_number_integer();
    if (op == "/") {
      if (b.get<double>() == 0) template_error("division by zero");
      return a.get<double>() / b.get<double>();
    }
    if (ints) {
      const int64_t x = a.get<int64_t>(), y = b.get<int64_t>();
      if ((op == "//" || op == "%") && y == 0) template_error("division by zero");
      int64_t r = 0;
      if (op == "+" || op == "-" || op == "*") {
        const bool overflow = op == "+" ? __builtin_add_overflow(x, y, &r)
                              : op == "-" ? __builtin_sub_overflow(x, y, &r)
                                          : __builtin_mul_overflow(x, y, &r);
        if (overflow) template_error(fmt::format("integer overflow in {} {} {}", x, op, y));
        return r;
      }
      // Python's floor division and modulo (the result takes the divisor's sign), in integers.
      if (op == "//") {
        if (x == std::numeric_limits<int64_t>::min() && y == -1)
          template_error(fmt::format("integer overflow in {} // {}", x, y));
        int64_t q = x / y;
        if (x % y != 0 && ((x < 0) != (y < 0))) --q;
        return q;
      }
      if (op == "%") {
        if (y == -1) return 0;  // also for INT64_MIN, where x % -1 overflows
        r = x % y;
        if (r != 0 && ((r < 0) != (y < 0))) r += y;
        return r;
      }
    }
    const double x = a.get<double>(), y = b.get<double>();
    if (op == "+") return x + y;
    if (op == "-") return x - y;
    if (op == "*") return x * y;
    if (y == 0) template_error("division by zero");
    if (op == "//") return std::floor(x / y);
    return x - y * std::floor(x / y);
  }

  json eval(const Expr& e) {
    switch (e.kind) {
      case Expr::kLiteral: return e.value;
      case Expr::kVar: return lookup(e.name);
      case Expr::kList: {
        json out = json::array();
        for (const auto& x : e.a) out.push_back(eval(*x));
        return out;
      }
      case Expr::kAttr: {
        json obj = eval(*e.a[0]);
        if (is_undef(obj)) template_error(fmt::format("'.{}' of an undefined value", e.name));
        return index(obj, e.name);
      }
      case Expr::kIndex: return index(eval(*e.a[0]), eval(*e.a[1]));
      case Expr::kSlice: {
        json obj = eval(*e.a[0]);
        const bool str = obj.is_string();
        if (!str && !obj.is_array()) template_error(fmt::format("cannot slice a {}", type_name(obj)));
        const int64_t n = str ? static_cast<int64_t>(obj.get_ref<const std::string&>().size()) : static_cast<int64_t>(obj.size());
        auto bound = [&](const ExprPtr& x, int64_t dflt) {
          if (!x) return dflt;
          int64_t i = as_int(eval(*x), "a slice bound");
          if (i < 0) i += n;
          return std::clamp<int64_t>(i, 0, n);
        };
        const int64_t from = bound(e.a[1], 0), to = std::max(from, bound(e.a[2], n));
        if (str) return obj.get_ref<const std::string&>().substr(from, to - from);
        return json(std::vector<json>(obj.begin() + from, obj.begin() + to));
      }
      case Expr::kCall: {
        std::vector<json> args;
        for (size_t i = e.method ? 1 : 0; i < e.a.size(); ++i) args.push_back(eval(*e.a[i]));
        if (e.method) return method(eval(*e.a[0]), e.name, args);
        if (e.name == "raise_exception")
          fail("chat template raised an error: {}", args.empty() ? std::string() : to_text(args[0]));
        template_error(fmt::format("unsupported function '{}()'", e.name));
      }
      case Expr::kFilter: {
        std::vector<json> args;
        for (size_t i = 1; i < e.a.size(); ++i) args.push_back(eval(*e.a[i]));
        return filter(e.name, eval(*e.a[0]), args);
      }
      case Expr::kTest: {
        std::vector<json> args;
        return test(e.name, eval(*e.a[0]), args) != e.negated;
      }
      case Expr::kNot: return !truthy(eval(*e.a[0]));
      case Expr::kNeg: {
        json v = eval(*e.a[0]);
        if (v.is_number_integer()) {
          const int64_t x = v.get<int64_t>();
          if (x == std::numeric_limits<int64_t>::min()) template_error(fmt::format("integer overflow in -({})", x));
          return -x;
        }
        if (v.is_number()) return -v.get<double>();
        template_error(fmt::format("cannot negate a {}", type_name(v)));
      }
      case Expr::kCond: return truthy(eval(*e.a[0])) ? eval(*e.a[1]) : eval(*e.a[2]);
      case Expr::kBinary: {
        const std::string& op = e.name;
        if (op == "and") {
          json l = eval(*e.a[0]);
          return truthy(l) ? eval(*e.a[1]) : l;
        }
        if (op == "or") {
          json l = eval(*e.a[0]);
          return truthy(l) ? l : eval(*e.a[1]);
        }
        json l = eval(*e.a[0]), r = eval(*e.a[1]);
        if (op == "~") return to_text(l) + to_text(r);
        if (op == "==" || op == "!=") {
          bool eq;
          if (is_undef(l) || is_undef(r)) eq = is_undef(l) && is_undef(r);
          else if (l.is_number() && r.is_number()) eq = l.get<double>() == r.get<double>();
          else eq = l == r;
          return eq == (op == "==");
        }
        if (op == "<") return less(l, r, op);
        if (op == ">") return less(r, l, op);
        if (op == "<=") return !less(r, l, op);
        if (op == ">=") return !less(l, r, op);
        if (op == "in") return contains(r, l);
        if (op == "not in") return !contains(r, l);
        return arith(op, l, r);
      }
    }
    template_error("internal: unknown expression");
  }

  std::vector<json> scopes_;
};

}  // namespace

JinjaTemplate JinjaTemplate::parse(const std::string& source) {
  JinjaTemplate t;
  t.root_ = TemplateParser(split(source)).parse();
  return t;
}

std::string JinjaTemplate::render(const nlohmann::json& context) const {
  std::string out;
  Renderer r(context);
  r.run(*root_, out);
  return out;
}

}  // namespace rad::serve
