#!/usr/bin/env node
// The official `openai` JavaScript client (pinned in package.json; `npm ci --prefix tests/js`)
// against `radistill serve`: plain and streamed completions and chat completions agree, usage adds
// up, /v1/models lists the model, log-probabilities come back in both formats (completions'
// logprobs + echo with max_tokens 0, as lm-evaluation-harness scores a text; chat's logprobs +
// top_logprobs), n = 2 gives two choices, a bad parameter surfaces as the client's 400 error, and
// the server exits cleanly on SIGTERM. Run by ctest (serve_openai_js_client).
//
// usage: node openai_client_test.mjs RADISTILL_BINARY MODEL_DIR
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";

const [bin, modelArg] = process.argv.slice(2);
const modelDir = modelArg && path.resolve(modelArg);
if (!bin || !modelArg) {
  console.error("usage: node openai_client_test.mjs RADISTILL_BINARY MODEL_DIR");
  process.exit(2);
}
let OpenAI;
try {
  OpenAI = (await import("openai")).default;
} catch (e) {
  console.error(`cannot load the openai package (${e.message}); run: npm ci --prefix tests/js`);
  process.exit(1);
}

// The model with a chat template: links to MODEL_DIR's files, plus a ChatML tokenizer_config.json.
const dir = fs.mkdtempSync(path.join(os.tmpdir(), "radistill-js-"));
const model = path.join(dir, "chat-model");
fs.mkdirSync(model);
for (const f of ["config.json", "model.safetensors", "tokenizer.json"]) fs.symlinkSync(path.join(modelDir, f), path.join(model, f));
const tokConfig = JSON.parse(fs.readFileSync(path.join(modelDir, "tokenizer_config.json"), "utf8"));
tokConfig.chat_template =
  "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}" +
  "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";
fs.writeFileSync(path.join(model, "tokenizer_config.json"), JSON.stringify(tokConfig));

const server = spawn(bin, ["--threads", "1", "serve", model, "--port", "0", "--ctx", "256"], {
  stdio: ["ignore", "pipe", "inherit"],
});
const exited = new Promise((resolve) => server.on("exit", (code, signal) => resolve({ code, signal })));
const port = await new Promise((resolve, reject) => {
  let out = "";
  const timer = setTimeout(() => reject(new Error(`no "listening on" from the server in 60 s: ${out}`)), 60000);
  server.stdout.on("data", (d) => {
    out += d;
    const m = out.match(/listening on http:\/\/127\.0\.0\.1:(\d+)/);
    if (m) {
      clearTimeout(timer);
      resolve(Number(m[1]));
    }
  });
  server.on("exit", (code) => reject(new Error(`the server exited (${code}) before listening: ${out}`)));
});

let failed = false;
try {
  const client = new OpenAI({ baseURL: `http://127.0.0.1:${port}/v1`, apiKey: "unused", timeout: 60000, maxRetries: 0 });
  const id = "chat-model";

  const models = await client.models.list();
  assert.equal(models.data[0].id, id);

  const params = { model: id, prompt: "And God said", max_tokens: 8, temperature: 0 };
  const plain = await client.completions.create(params);
  assert.equal(plain.object, "text_completion");
  assert.equal(typeof plain.choices[0].text, "string");
  assert.ok(plain.choices[0].text.length > 0, "an empty completion");
  assert.equal(plain.usage.total_tokens, plain.usage.prompt_tokens + plain.usage.completion_tokens);
  assert.ok(["stop", "length"].includes(plain.choices[0].finish_reason));

  let streamed = "";
  let finish = null;
  for await (const chunk of await client.completions.create({ ...params, stream: true })) {
    streamed += chunk.choices[0]?.text ?? "";
    finish = chunk.choices[0]?.finish_reason ?? finish;
  }
  assert.equal(streamed, plain.choices[0].text);
  assert.equal(finish, plain.choices[0].finish_reason);

  const chatParams = { model: id, messages: [{ role: "user", content: "And God said" }], max_tokens: 8, temperature: 0 };
  const chat = await client.chat.completions.create(chatParams);
  assert.equal(chat.object, "chat.completion");
  assert.equal(chat.choices[0].message.role, "assistant");
  assert.equal(typeof chat.choices[0].message.content, "string");
  assert.equal(chat.usage.total_tokens, chat.usage.prompt_tokens + chat.usage.completion_tokens);

  let chatStreamed = "";
  let role = null;
  let usage = null;
  const stream = await client.chat.completions.create({ ...chatParams, stream: true, stream_options: { include_usage: true } });
  for await (const chunk of stream) {
    role = chunk.choices[0]?.delta?.role ?? role;
    chatStreamed += chunk.choices[0]?.delta?.content ?? "";
    usage = chunk.usage ?? usage;
  }
  assert.equal(role, "assistant");
  assert.equal(chatStreamed, chat.choices[0].message.content);
  assert.deepEqual(usage, chat.usage);

  // The prompt's log-probabilities: every prompt token, the first one null, the rest negative.
  const scored = await client.completions.create({ ...params, max_tokens: 0, echo: true, logprobs: 1 });
  assert.equal(scored.choices[0].text, params.prompt);
  const lp = scored.choices[0].logprobs;
  assert.equal(lp.tokens.length, scored.usage.prompt_tokens);
  assert.equal(lp.token_logprobs.length, lp.tokens.length);
  assert.equal(lp.token_logprobs[0], null);
  assert.equal(lp.top_logprobs[0], null);
  for (let i = 1; i < lp.tokens.length; ++i) {
    assert.ok(lp.token_logprobs[i] < 0, `token ${i}: ${lp.token_logprobs[i]}`);
    assert.equal(lp.top_logprobs[i][lp.tokens[i]], lp.token_logprobs[i]);
    assert.ok(lp.text_offset[i] >= lp.text_offset[i - 1]);
  }
  assert.equal(scored.usage.completion_tokens, 0);

  const chatLp = await client.chat.completions.create({ ...chatParams, logprobs: true, top_logprobs: 2, n: 2 });
  assert.equal(chatLp.choices.length, 2);
  assert.equal(chatLp.choices[1].message.content, chatLp.choices[0].message.content);  // temperature 0
  const content = chatLp.choices[0].logprobs.content;
  assert.ok(content.length > 0);
  assert.equal(content.map((t) => t.token).join(""), chatLp.choices[0].message.content);
  for (const t of content) {
    assert.equal(t.top_logprobs.length, 2);
    assert.equal(t.top_logprobs[0].token, t.token);  // greedy: the chosen token is the most likely
    assert.ok(t.logprob <= 0 && Array.isArray(t.bytes));
  }

  await assert.rejects(client.completions.create({ ...params, logprobs: 21 }), (e) => {
    assert.equal(e.status, 400);
    assert.match(e.message, /'logprobs' must be an integer in \[0, 20\]/);
    return true;
  });
  await assert.rejects(client.completions.create({ ...params, temperature: 5 }), (e) => {
    assert.equal(e.status, 400);
    assert.match(e.message, /'temperature' must be in \[0, 2\]/);
    return true;
  });
  console.log(`ok: completion ${JSON.stringify(plain.choices[0].text)}, chat ${JSON.stringify(chat.choices[0].message.content)}`);
} catch (e) {
  failed = true;
  console.error("FAILED:", e);
} finally {
  server.kill("SIGTERM");
  const { code, signal } = await exited;
  fs.rmSync(dir, { recursive: true, force: true });
  if (code !== 0) {
    console.error(`the server did not exit cleanly on SIGTERM: code ${code}, signal ${signal}`);
    failed = true;
  }
}
process.exit(failed ? 1 : 0);
