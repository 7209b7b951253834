import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { buffer } from "node:stream/consumers";
import { setTimeout as sleep } from "node:timers/promises";
import type {
  AIProjectClient,
  AgentEndpointConfig,
  HostedAgentDefinition,
  VersionRefIndicator,
} from "@azure/ai-projects";
import { zipFixture } from "../helpers/agents.js";
import { projectOpenAI } from "../helpers/openaiClient.js";
import {
  expectRestError as refused,
  removeDir,
  sdk,
  startServer,
  type TestServer,
} from "../helpers/server.js";
import { sha256 } from "../helpers/zip.js";

/*
 * The official hosted-agent samples' flows through the official client, to their clean-up:
 * `deleteVersion(name, v, { force: true })` while the endpoint's traffic rules name the
 * version and its sessions run. Each must end without an error, and the agent's traffic rules
 * must no longer name the deleted version.
 */

let server: TestServer;
let client: AIProjectClient;
let unique = 0;
const newName = () => `samples-${process.pid}-${++unique}`;

before(async () => {
  server = await startServer({
    env: { AGENTHOST_WARM_POOL_SIZE: "1", AGENTHOST_SESSION_STOP_GRACE_SECONDS: "1" },
  });
  client = sdk(server, server.adminKey);
});

after(async () => {
  await server?.stop();
  removeDir(server.dataDir);
});

const definition = {
  kind: "hosted",
  cpu: "0.5",
  memory: "256Mi",
  protocol_versions: [{ protocol: "responses", version: "2.0.0" }],
  code_configuration: {
    runtime: "python_3_11",
    entry_point: ["python", "main.py"],
    dependency_resolution: "remote_build",
  },
} as unknown as HostedAgentDefinition;

/**
 * As the samples do it: upload the zip as a new version, then poll until it is active. (The
 * description differs per upload: the same zip and definition again would be the same version.)
 */
async function createVersionFromCode(agentName: string, description: string): Promise<string> {
  const codeZip = zipFixture("echo-python");
  const created = await client.agents.createVersionFromCode(agentName, sha256(codeZip), {
    metadata: { description, definition },
    code: { contents: codeZip, contentType: "application/zip", filename: "code.zip" },
  });
  for (let attempt = 0; attempt < 600; attempt++) {
    const details = await client.agents.getVersion(agentName, created.version);
    if (details.status === "active") return created.version;
    if (details.status === "failed") assert.fail(`provisioning failed: ${JSON.stringify(details)}`);
    await sleep(50);
  }
  assert.fail("the version never became active");
}

const routeTo = (...split: [string, number][]): AgentEndpointConfig => ({
  version_selector: {
    version_selection_rules: split.map(([agent_version, traffic_percentage]) => ({
      type: "FixedRatio",
      agent_version,
      traffic_percentage,
    })),
  },
  protocol_configuration: { responses: {} },
});

const versionRef = (agent_version: string): VersionRefIndicator => ({
  type: "version_ref",
  agent_version,
});

/** The agent as the service keeps it: its rules, read back with the official client. */
async function rulesOf(agentName: string) {
  const agent = await client.agents.get(agentName);
  const rules = agent.agent_endpoint?.version_selector?.version_selection_rules as
    { agent_version: string; traffic_percentage: number }[] | undefined;
  return rules?.map((r) => [r.agent_version, r.traffic_percentage]);
}

describe("the hosted samples' clean-up", () => {
  it("createHostedAgentFromCode: a routed version with a session, deleted with force", async () => {
    const name = newName();
    const first = await createVersionFromCode(name, "first"); // createHostedAgent: the agent exists
    const created = await createVersionFromCode(name, "temporary");
    await client.agents.updateAgent(name, { agentEndpoint: routeTo([created, 100]) });
    const download = await client.agents.downloadAgentCode(name, { agentVersion: created });
    const bytes = await buffer(download.readableStreamBody!);
    assert.equal(sha256(bytes), sha256(zipFixture("echo-python")));
    const session = await client.agents.createSession(name, versionRef(created));

    // Without force the rules (and the session) still refuse.
    await refused(client.agents.deleteVersion(name, created), 409, "agent_has_live_sessions");
    const deleted = await client.agents.deleteVersion(name, created, { force: true });
    assert.equal(deleted.deleted, true);
    await refused(client.agents.getVersion(name, created), 404, "not_found");
    await refused(client.agents.getSession(name, session.agent_session_id), 404, "not_found");
    // No rule with traffic is left: the selector is gone, the rest of the endpoint stays.
    const agent = await client.agents.get(name);
    assert.equal(agent.agent_endpoint?.version_selector, undefined);
    assert.deepEqual(agent.agent_endpoint?.protocol_configuration?.responses, {});
    assert.equal(agent.versions.latest.version, first);
    await client.agents.delete(name, { force: true });
    await refused(client.agents.get(name), 404, "not_found");
  });

  it("sessionsCrud: create, get, list, delete a session, then the version with force", async () => {
    const name = newName();
    const first = await createVersionFromCode(name, "first");
    const created = await createVersionFromCode(name, "temporary");
    await client.agents.updateAgent(name, { agentEndpoint: routeTo([first, 30], [created, 70]) });
    try {
      const session = await client.agents.createSession(name, versionRef(created));
      const fetched = await client.agents.getSession(name, session.agent_session_id);
      assert.equal(fetched.agent_session_id, session.agent_session_id);
      const listed: string[] = [];
      for await (const item of client.agents.listSessions(name)) listed.push(item.agent_session_id);
      assert.ok(listed.includes(session.agent_session_id));
      await client.agents.deleteSession(name, session.agent_session_id);
    } finally {
      await client.agents.deleteVersion(name, created, { force: true });
    }
    // The other version takes all the traffic.
    assert.deepEqual(await rulesOf(name), [[first, 100]]);
    await client.agents.delete(name, { force: true });
  });

  it("sessionsFilesUploadDownload: files of a session, then the version with force", async () => {
    const name = newName();
    await createVersionFromCode(name, "first");
    const created = await createVersionFromCode(name, "temporary");
    await client.agents.updateAgent(name, { agentEndpoint: routeTo([created, 100]) });
    try {
      const session = await client.agents.createSession(name, versionRef(created));
      const id = session.agent_session_id;
      try {
        await client.agents.uploadSessionFile(name, id, "/remote/data_file1.txt", Buffer.from("1"));
        await client.agents.uploadSessionFile(name, id, "/remote/data_file2.txt", Buffer.from("2"));
        const names: string[] = [];
        for await (const entry of client.agents.listSessionFiles(name, id, { path: "/remote" }))
          names.push(entry.name);
        assert.deepEqual(names.sort(), ["data_file1.txt", "data_file2.txt"]);
        const file = await client.agents.downloadSessionFile(name, id, "/remote/data_file1.txt");
        assert.equal((await buffer(file.readableStreamBody!)).toString(), "1");
        await client.agents.deleteSessionFile(name, id, "/remote/data_file1.txt");
        await client.agents.deleteSessionFile(name, id, "/remote/data_file2.txt");
      } finally {
        await client.agents.deleteSession(name, id);
      }
    } finally {
      await client.agents.deleteVersion(name, created, { force: true });
    }
    assert.equal((await client.agents.get(name)).agent_endpoint?.version_selector, undefined);
    await client.agents.delete(name, { force: true });
  });

  it("agentUserIdentityIsolation: the endpoint routed to the version, invoked, then force", async () => {
    const name = newName();
    await createVersionFromCode(name, "first");
    const created = await createVersionFromCode(name, "temporary");
    const originalAgentEndpoint = (await client.agents.get(name)).agent_endpoint;
    try {
      await client.agents.updateAgent(name, { agentEndpoint: routeTo([created, 100]) });
      const openai = projectOpenAI(client, server, name);
      const response = await openai.responses.create({ input: "1 + 1 = ?" } as never, {
        headers: { "x-ms-user-identity": "user-one" },
      });
      assert.equal(response.output_text, "echo: 1 + 1 = ?");
    } finally {
      // The sample restores the endpoint only when there was one: here there was none.
      if (originalAgentEndpoint)
        await client.agents.updateAgent(name, { agentEndpoint: originalAgentEndpoint });
      // The call left a live session of the version, and the rules name it.
      await client.agents.deleteVersion(name, created, { force: true });
    }
    assert.equal((await client.agents.get(name)).agent_endpoint?.version_selector, undefined);
    await client.agents.delete(name, { force: true });
  });
});
