import { cpus, totalmem } from "node:os";
import { agentsHttpBench } from "./agentsHttp.js";
import { codeUploadBench } from "./codeUpload.js";
import { consoleAgentsBench } from "./consoleAgents.js";
import { consoleFollowBench } from "./consoleFollow.js";
import { gatewayBench } from "./gateway.js";
import { logFloodBench } from "./logFlood.js";
import { homeVolumeBench } from "./homeVolume.js";
import { invocationsBench } from "./invocations.js";
import { pagingDeepBench } from "./pagingDeep.js";
import { protocolsBench } from "./protocols.js";
import { renderSection, type Section } from "./report.js";
import { sessionFilesBench } from "./sessionFiles.js";
import { sessionStartBench } from "./sessionStart.js";

/*
 * `npm run bench` runs every benchmark in turn and prints one markdown report for
 * BENCHMARKS.md. `npm run bench -- paging` runs only the benchmarks whose name contains "paging".
 */

/** A benchmark reports one section, or several when it measures several things. */
const benches: { name: string; run: () => Promise<Section | Section[]> }[] = [
  { name: "agents-http", run: agentsHttpBench },
  { name: "paging-deep", run: pagingDeepBench },
  { name: "code-upload", run: codeUploadBench },
  { name: "session-start", run: sessionStartBench },
  { name: "home-volume", run: homeVolumeBench },
  { name: "session-files", run: sessionFilesBench },
  { name: "log-flood", run: logFloodBench },
  { name: "gateway", run: gatewayBench },
  { name: "console-agents", run: consoleAgentsBench },
  { name: "invocations", run: invocationsBench },
  { name: "console-follow", run: consoleFollowBench },
  { name: "protocols", run: protocolsBench },
];

const filter = process.argv[2];
const selected = benches.filter((b) => filter === undefined || b.name.includes(filter));
if (selected.length === 0) throw new Error(`no benchmark matches '${filter}'`);

const machine = `${cpus().length} vCPU (${cpus()[0]?.model.trim() ?? "unknown"}), ${Math.round(totalmem() / 2 ** 30)} GiB, Node ${process.version}`;
process.stdout.write(`# agenthost benchmarks\n\n${new Date().toISOString()} — ${machine}\n\n`);
for (const bench of selected) {
  process.stderr.write(`running ${bench.name}…\n`);
  for (const section of [await bench.run()].flat()) {
    process.stdout.write(renderSection(section) + "\n");
  }
}
