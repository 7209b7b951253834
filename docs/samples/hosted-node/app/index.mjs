// A minimal hosted agent on @agenthost/agentserver (Node built-ins only, no other dependency).
//
// The package serves the container contract of docs/hosted-agents.md: GET /readiness, POST
// /responses (a Responses object, or its event stream when the request says "stream": true,
// or a background run), the routes of a stored response, and a clean stop on SIGTERM. This
// agent only says what to answer: it counts its session's turns in $HOME, which outlives idle
// stops and restarts.
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { serve } from "@agenthost/agentserver";

const AGENT = `${process.env.FOUNDRY_AGENT_NAME || "agent"} v${process.env.FOUNDRY_AGENT_VERSION || "?"}`;

/** Counts this session's turns in a file of its home. */
function nextTurn() {
  const file = path.join(os.homedir(), "turns.txt");
  const turns = fs.existsSync(file) ? Number(fs.readFileSync(file, "utf8")) + 1 : 1;
  fs.writeFileSync(file, String(turns));
  return turns;
}

await serve({
  responses: async (request, ctx) => {
    console.log(`session ${ctx.sessionId}: a turn for ${ctx.userId}`);
    const said = JSON.stringify(ctx.inputText);
    return `${AGENT}, turn ${nextTurn()} of session ${ctx.sessionId}: you said ${said}`;
  },
});
