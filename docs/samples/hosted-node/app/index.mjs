// A minimal hosted agent (Node.js built-ins only).
//
// It serves the container contract of docs/hosted-agents.md: GET /readiness, and POST
// /responses answered with an OpenAI Responses object (or its event stream when the request
// says "stream": true). It remembers how many turns its session had in $HOME, which outlives
// idle stops and restarts, and stops cleanly on SIGTERM.
import crypto from "node:crypto";
import fs from "node:fs";
import http from "node:http";
import os from "node:os";
import path from "node:path";

const PORT = Number(process.env.PORT || 8088);
const AGENT = `${process.env.FOUNDRY_AGENT_NAME || "agent"} v${process.env.FOUNDRY_AGENT_VERSION || "?"}`;

/** The caller's text: "input" as a string, or the text parts of its messages. */
function inputText(body) {
  const value = body.input ?? "";
  if (typeof value === "string") return value;
  return value
    .flatMap((item) => {
      const content = item?.content ?? "";
      return typeof content === "string" ? [content] : content.map((p) => p?.text ?? "");
    })
    .join("\n");
}

/** Counts this session's turns in a file of its home. */
function nextTurn() {
  const file = path.join(os.homedir(), "turns.txt");
  let turns = 1;
  try {
    turns = Number(fs.readFileSync(file, "utf8")) + 1;
  } catch {
    // the session's first turn
  }
  fs.writeFileSync(file, String(turns));
  return turns;
}

function response(text, status) {
  const message = {
    id: `msg_${crypto.randomUUID().replaceAll("-", "")}`,
    type: "message",
    role: "assistant",
    status: "completed",
    content: [{ type: "output_text", text, annotations: [] }],
  };
  return {
    id: `resp_${crypto.randomUUID().replaceAll("-", "")}`,
    object: "response",
    created_at: Math.floor(Date.now() / 1000),
    status,
    model: AGENT,
    output: status === "completed" ? [message] : [],
  };
}

function reply(res, status, data, contentType = "application/json") {
  const raw = Buffer.from(contentType === "application/json" ? JSON.stringify(data) : data);
  res.writeHead(status, { "Content-Type": contentType, "Content-Length": raw.length });
  res.end(raw);
}

const server = http.createServer(async (req, res) => {
  const chunks = [];
  for await (const chunk of req) chunks.push(chunk);
  if (req.method === "GET" && req.url === "/readiness") return reply(res, 200, { status: "ready" });
  if (req.method !== "POST" || req.url !== "/responses")
    return reply(res, 404, { error: { message: "not found" } });
  let request;
  try {
    request = JSON.parse(Buffer.concat(chunks).toString("utf8"));
  } catch {
    return reply(res, 400, { error: { message: "the body is not JSON" } });
  }
  const session = req.headers["x-agent-session-id"] ?? "";
  const said = JSON.stringify(inputText(request));
  const text = `${AGENT}, turn ${nextTurn()} of session ${session}: you said ${said}`;
  console.log(`session ${session}: a turn for ${req.headers["x-agent-user-id"]}`);
  const done = response(text, "completed");
  if (!request.stream) return reply(res, 200, done);
  // Server-sent events, as the OpenAI Responses API streams them.
  const item = done.output[0];
  const part = { output_index: 0, content_index: 0, item_id: item.id };
  const events = [
    ["response.created", { response: { ...response("", "in_progress"), id: done.id } }],
    ["response.output_item.added", { output_index: 0, item: { ...item, content: [] } }],
    ["response.output_text.delta", { ...part, delta: text }],
    ["response.output_text.done", { ...part, text }],
    ["response.output_item.done", { output_index: 0, item }],
    ["response.completed", { response: done }],
  ];
  const frames = events.map(
    ([type, data], i) =>
      `event: ${type}\ndata: ${JSON.stringify({ type, sequence_number: i, ...data })}\n\n`,
  );
  reply(res, 200, frames.join(""), "text/event-stream");
});

process.on("SIGTERM", () => {
  console.log("SIGTERM: finishing the requests in flight");
  server.close(() => process.exit(0));
  server.closeIdleConnections();
});

server.listen(PORT, "0.0.0.0", () => console.log(`${AGENT} listening on port ${PORT}`));
