// The official OpenAI SDK, unchanged, against the gateway: baseURL is the
// gateway's /v1 and the API key is the user's ID token. Prints one JSON
// line of findings for sdk_test.go to check.
import OpenAI from "openai";

const client = new OpenAI({ baseURL: process.env.SAS_BASE_URL, apiKey: process.env.SAS_TOKEN, maxRetries: 0 });
const out = {};

const models = await client.models.list();
out.models = models.data.map((m) => m.id);

const done = await client.chat.completions.create({
  model: "gpt-4o-mini",
  messages: [{ role: "user", content: "hello from node" }],
});
out.text = done.choices[0].message.content;
out.usage = done.usage.total_tokens;

const stream = await client.chat.completions.create({
  model: "gpt-4o-mini",
  messages: [{ role: "user", content: "stream please" }],
  stream: true,
});
out.chunks = 0;
out.streamed = "";
for await (const chunk of stream) {
  out.chunks++;
  out.streamed += chunk.choices[0]?.delta?.content ?? "";
}

// The Responses API, plain and streamed (typed events).
const response = await client.responses.create({
  model: "gpt-4o-mini",
  instructions: "Be brief.",
  input: [{ role: "user", content: [{ type: "input_text", text: "hello from node responses" }] }],
});
out.responseText = response.output_text;
out.responseUsage = response.usage.total_tokens;
const events = await client.responses.create({
  model: "gpt-4o-mini",
  instructions: "Be brief.",
  input: [{ role: "user", content: [{ type: "input_text", text: "hello from node responses" }] }],
  stream: true,
});
out.responseEvents = [];
out.responseStreamed = "";
for await (const event of events) {
  out.responseEvents.push(event.type);
  if (event.type === "response.output_text.delta") out.responseStreamed += event.delta;
}

// A server prompt template, streamed, read by the SDK's own SSE parser
// (what the Electron helper runTemplate does).
const run = await client.post("/templates/loop-idea", {
  body: { variables: { bars: 8, key: "Am", style: "lo-fi from node" }, stream: true },
  stream: true,
});
out.templateEvents = [];
out.templateStreamed = "";
for await (const event of run) {
  out.templateEvents.push(event.type);
  if (event.type === "response.output_text.delta") out.templateStreamed += event.delta;
}

try {
  for (let i = 0; i < 20; i++) {
    await client.chat.completions.create({ model: "gpt-4o-mini", messages: [{ role: "user", content: "again" }] });
  }
  out.rateLimit = "never limited";
} catch (err) {
  out.rateLimit = err instanceof OpenAI.RateLimitError ? "RateLimitError" : `${err.constructor.name}: ${err.message}`;
  out.rateLimitStatus = err.status;
}
console.log(JSON.stringify(out));
