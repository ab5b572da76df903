#!/usr/bin/env node
// Load test of `coenc serve` with the official `openai` npm client (docs/server.md, "Load test"): CLIENTS
// concurrent streaming chat requests, each asking QUESTION about its own document (consecutive slices of FILE),
// in two rounds: cold (the server compresses every document) and cached (the same documents again: the context
// tower is skipped). Per round: requests answered and failed, time to first token and time between streamed
// chunks (p50 / p99), tokens generated and aggregate tokens/s, the document cache's hits and misses and the mean
// batch of the decode steps (from /metrics); with --pid, the server's peak resident memory (from /proc).
//
//   node scripts/serve_load_test.mjs --doc FILE [--url http://127.0.0.1:8080] [--clients 32] [--doc-chars 4000]
//        [--max-tokens 32] [--question TEXT] [--pid PID] [--openai DIR] [--json]
//
// The server must be running (e.g. `coenc serve -m models/default-coenc --parallel 32 -q`). The openai client
// comes from tests/data/npm/node_modules/openai (scripts/fetch_test_vocabs.sh) unless --openai names another.
// Exit status: 0 when every request was answered, 1 when any failed, 2 for bad usage.
import { readFileSync, existsSync } from "node:fs";
import { pathToFileURL, fileURLToPath } from "node:url";
import path from "node:path";

const usage =
  "usage: node scripts/serve_load_test.mjs --doc FILE [--url URL] [--clients N] [--doc-chars N] [--max-tokens N] " +
  "[--question TEXT] [--pid PID] [--openai DIR] [--json]";
const opts = {
  url: "http://127.0.0.1:8080", clients: 32, "doc-chars": 4000, "max-tokens": 32,
  question: "What is this text about?", pid: 0, doc: "", json: false,
  openai: path.join(path.dirname(fileURLToPath(import.meta.url)), "..", "tests/data/npm/node_modules/openai"),
};
function die(message) {
  console.error(`serve_load_test: ${message}`);
  process.exit(2);
}
const argv = process.argv.slice(2);
for (let i = 0; i < argv.length; ++i) {
  const key = argv[i].replace(/^--/, "");
  if (!argv[i].startsWith("--") || !(key in opts)) die(`unknown argument '${argv[i]}'\n${usage}`);
  if (key === "json") { opts.json = true; continue; }
  if (i + 1 >= argv.length) die(`--${key} needs a value`);
  const value = argv[++i];
  if (typeof opts[key] === "number") {
    if (!/^[0-9]+$/.test(value) || (Number(value) < 1 && key !== "pid")) die(`--${key} must be a positive integer, got '${value}'`);
    opts[key] = Number(value);
  } else {
    opts[key] = value;
  }
}
if (!opts.doc) die(`--doc is required\n${usage}`);
if (!existsSync(path.join(opts.openai, "index.mjs")))
  die(`the openai client is not in ${opts.openai} (run scripts/fetch_test_vocabs.sh, or give --openai DIR)`);

let text;
try {
  text = readFileSync(opts.doc, "utf8");
} catch (e) {
  die(`cannot read --doc ${opts.doc}: ${e.code ?? e.message}`);
}
const needed = opts.clients * opts["doc-chars"];
if ([...text].length < needed)
  die(`${opts.doc} has ${[...text].length} characters; ${opts.clients} clients x ${opts["doc-chars"]} need ` +
      `${needed} (lower --clients or --doc-chars)`);
// Slices by code point, so that no document starts or ends inside a character.
const chars = [...text];
const documents = Array.from({ length: opts.clients },
  (_, i) => chars.slice(i * opts["doc-chars"], (i + 1) * opts["doc-chars"]).join(""));

const { default: OpenAI } = await import(pathToFileURL(path.join(opts.openai, "index.mjs")).href);
const base = opts.url.replace(/\/+$/, "");
const client = new OpenAI({ baseURL: `${base}/v1`, apiKey: process.env.OPENAI_API_KEY ?? "unused", maxRetries: 0,
                            timeout: 3600 * 1000 });

async function metrics() {
  const reply = await fetch(`${base}/metrics`, {
    headers: process.env.OPENAI_API_KEY ? { Authorization: `Bearer ${process.env.OPENAI_API_KEY}` } : {},
  });
  if (!reply.ok) throw new Error(`GET /metrics answered ${reply.status}`);
  const out = {};
  for (const line of (await reply.text()).split("\n")) {
    const m = /^(coenc_[a-z_]+) ([0-9.e+-]+)$/.exec(line);
    if (m) out[m[1]] = Number(m[2]);
  }
  return out;
}

// Peak resident memory of the server: VmRSS sampled while the rounds run, and the kernel's VmHWM at the end.
let peakRssKib = 0;
function readStatus(field) {
  try {
    const m = new RegExp(`^${field}:\\s+([0-9]+) kB`, "m").exec(readFileSync(`/proc/${opts.pid}/status`, "utf8"));
    return m ? Number(m[1]) : 0;
  } catch {
    return 0;
  }
}
const sampler = opts.pid ? setInterval(() => { peakRssKib = Math.max(peakRssKib, readStatus("VmRSS")); }, 50) : null;

async function ask(document) {
  const start = performance.now();
  let first = null, last = null, completion = 0;
  const gaps = [];
  const stream = await client.chat.completions.create({
    model: "any", max_tokens: opts["max-tokens"], temperature: 0, stream: true,
    stream_options: { include_usage: true },
    messages: [{ role: "user", content: [{ type: "document", text: document }, { type: "text", text: opts.question }] }],
  });
  for await (const chunk of stream) {
    const now = performance.now();
    if (chunk.choices.length && chunk.choices[0].delta?.content) {
      if (first === null) first = now;
      else gaps.push(now - last);
      last = now;
    }
    if (chunk.usage) completion = chunk.usage.completion_tokens;
  }
  const end = performance.now();
  return { ttft: (first ?? end) - start, gaps, completion };
}

function percentile(values, p) {
  if (!values.length) return null;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)];
}

async function round() {
  const before = await metrics();
  const start = performance.now();
  const results = await Promise.allSettled(documents.map((d) => ask(d)));
  const seconds = (performance.now() - start) / 1000;
  const after = await metrics();
  const done = results.filter((r) => r.status === "fulfilled").map((r) => r.value);
  const failed = results.filter((r) => r.status === "rejected").map((r) => String(r.reason?.message ?? r.reason));
  const delta = (name) => (after[name] ?? 0) - (before[name] ?? 0);
  const tokens = done.reduce((s, r) => s + r.completion, 0);
  const ttft = done.map((r) => r.ttft), gaps = done.flatMap((r) => r.gaps);
  const round3 = (x) => (x === null ? null : Math.round(x * 1000) / 1000);
  return {
    answered: done.length, failed: failed.length, errors: [...new Set(failed)].slice(0, 3),
    seconds: round3(seconds), completion_tokens: tokens, tokens_per_s: round3(tokens / seconds),
    ttft_p50_ms: round3(percentile(ttft, 50)), ttft_p99_ms: round3(percentile(ttft, 99)),
    chunk_gap_p50_ms: round3(percentile(gaps, 50)), chunk_gap_p99_ms: round3(percentile(gaps, 99)),
    cache_hits: delta("coenc_document_cache_hits_total"), cache_misses: delta("coenc_document_cache_misses_total"),
    decode_steps: delta("coenc_decode_steps_total"), decode_step_rows: delta("coenc_decode_step_rows_total"),
  };
}

try {
  await metrics();
} catch (e) {
  die(`no coenc serve answers at ${base} (${e.cause?.code ?? e.message}): start one, or give --url`);
}
const cold = await round();
const cached = await round();
if (sampler) clearInterval(sampler);
const report = {
  url: base, clients: opts.clients, doc_chars: opts["doc-chars"], max_tokens: opts["max-tokens"],
  rounds: { cold, cached },
  peak_rss_mib: opts.pid ? Math.round(Math.max(peakRssKib, readStatus("VmHWM")) / 102.4) / 10 : null,
};
if (opts.json) {
  console.log(JSON.stringify(report));
} else {
  const ms = (x) => (x === null ? "-" : x.toFixed(1));
  const row = (name, r) =>
    `| ${name} | ${r.answered} / ${r.failed} | ${ms(r.ttft_p50_ms)} / ${ms(r.ttft_p99_ms)} | ` +
    `${ms(r.chunk_gap_p50_ms)} / ${ms(r.chunk_gap_p99_ms)} | ${r.completion_tokens} in ${r.seconds.toFixed(2)} s = ` +
    `${r.tokens_per_s.toFixed(1)} | ` +
    `${r.cache_hits} / ${r.cache_misses} | ${r.decode_steps ? (r.decode_step_rows / r.decode_steps).toFixed(1) : "-"} |`;
  console.log(`${opts.clients} streaming clients, one ${opts["doc-chars"]}-character document each, ` +
              `max_tokens ${opts["max-tokens"]}` + (opts.pid ? `; server peak RSS ${report.peak_rss_mib} MiB` : ""));
  console.log("| round | answered / failed | time to first token p50 / p99 (ms) | between chunks p50 / p99 (ms) | " +
              "tokens, tokens/s | cache hits / misses | mean batch |");
  console.log("|---|---|---|---|---|---|---|");
  console.log(row("cold", cold));
  console.log(row("cached", cached));
  for (const e of [...cold.errors, ...cached.errors]) console.log(`error: ${e}`);
}
process.exit(cold.failed || cached.failed ? 1 : 0);
