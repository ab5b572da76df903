// The official `openai` npm client against coenc serve, as a user's program would talk to it. Used by
// tests/e2e/test_serve_cli.cpp: prints one JSON object with what each call returned.
//   node openai_client.mjs OPENAI_MODULE_DIR BASE_URL DOCUMENT_FILE QUESTION
import { readFileSync } from "node:fs";
import { pathToFileURL } from "node:url";
import path from "node:path";

const [moduleDir, baseURL, documentFile, question] = process.argv.slice(2);
const { default: OpenAI } = await import(pathToFileURL(path.join(moduleDir, "index.mjs")).href);
const client = new OpenAI({ baseURL, apiKey: "unused", maxRetries: 0 });
const document = readFileSync(documentFile, "utf8");
const out = {};

out.models = (await client.models.list()).data.map((m) => m.id);

const messages = [{ role: "user", content: [{ type: "document", text: document }, { type: "text", text: question }] }];
const plain = await client.chat.completions.create({ model: "any", messages, max_tokens: 8, temperature: 0 });
out.answer = plain.choices[0].message.content;
out.finish_reason = plain.choices[0].finish_reason;
out.usage = plain.usage;

const stream = await client.chat.completions.create({
  model: "any", messages, max_tokens: 8, temperature: 0, stream: true, stream_options: { include_usage: true },
});
let streamed = "";
out.stream_chunks = 0;
for await (const chunk of stream) {
  out.stream_chunks++;
  if (chunk.choices.length) streamed += chunk.choices[0].delta.content ?? "";
  if (chunk.usage) out.stream_usage = chunk.usage;
}
out.streamed = streamed;

const compressed = await client.post("/compress", { body: { text: document } });
out.compressed = compressed;
const byId = await client.chat.completions.create({
  model: "any", max_tokens: 8, temperature: 0,
  messages: [{ role: "user", content: [{ type: "document", id: compressed.id }, { type: "text", text: question }] }],
});
out.answer_by_id = byId.choices[0].message.content;

try {
  await client.chat.completions.create({
    model: "any", max_tokens: 8,
    messages: [{ role: "user", content: [{ type: "document", id: "doc-0000" }, { type: "text", text: question }] }],
  });
  out.unknown_id = "no error";
} catch (e) {
  out.unknown_id = { status: e.status, code: e.code, type: e.type };
}
console.log(JSON.stringify(out));
