// Deploys a sample hosted agent through the official client and asks it twice in one session.
//
//   NODE_EXTRA_CA_CERTS=./data/tls/ca.pem AGENTHOST_KEY=ahk_… \
//     node docs/samples/deploy.mjs my-agent docs/samples/hosted-python
//
// It reads agent.zip (made by `zip`, docs/hosted-agents.md) and definition.json from the
// sample's directory. AGENTHOST_ENDPOINT defaults to https://localhost:8443/api/projects/default.
// Needs `npm install @azure/ai-projects openai` where it runs (the repository has both).
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { AIProjectClient } from "@azure/ai-projects";

const [agentName, sampleDir] = process.argv.slice(2);
if (!agentName || !sampleDir) throw new Error("usage: deploy.mjs AGENT_NAME SAMPLE_DIR");
const endpoint = process.env.AGENTHOST_ENDPOINT ?? "https://localhost:8443/api/projects/default";
const credential = {
  getToken: async () => ({
    token: process.env.AGENTHOST_KEY,
    expiresOnTimestamp: Date.now() + 3600_000,
  }),
};
const project = new AIProjectClient(endpoint, credential);

const zip = readFileSync(path.join(sampleDir, "agent.zip"));
const definition = JSON.parse(readFileSync(path.join(sampleDir, "definition.json"), "utf8"));
const sha256 = createHash("sha256").update(zip).digest("hex");
let version = await project.agents.createVersionFromCode(agentName, sha256, {
  metadata: { definition },
  code: zip,
});
// The version builds in the background: `creating`, then `active` (or `failed`).
while (version.status === "creating") {
  await sleep(500);
  version = await project.agents.getVersion(agentName, version.version);
}
if (version.status !== "active") throw new Error(`build ${version.status}`);
console.log(`version ${version.version} is active`);

// The agent's own endpoint: /agents/{name}/endpoint/protocols/openai.
const openai = project.getOpenAIClient({ azureConfig: { agentName, allowPreview: true } });
const first = await openai.responses.create({ input: "Hello" }).withResponse();
const session = first.response.headers.get("x-agent-session-id");
console.log(first.data.output_text);
// The same session again: its home (and so its turn count) is kept.
const second = await openai.responses.create({ input: "Again", agent_session_id: session });
console.log(second.output_text);
