import { spawnSync } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { createReadStream, readFileSync, writeFileSync } from "node:fs";
import { request } from "node:https";
import path from "node:path";
import { pathToFileURL } from "node:url";
import { makeZip } from "../test/helpers/zip.js";
import {
  benchAdminKey,
  measureRss,
  removeDir,
  rss,
  startAgenthost,
  tempDir,
  type ChildServer,
} from "./processes.js";
import { envInt, fixed, verdict, type Section } from "./report.js";

/*
 * Code zip upload (multipart, streamed) and download of a 200 MB zip through the service,
 * beside a raw `cp` of the same file on the same disk in the same run, and the server's peak
 * RSS growth while doing it.
 *
 *   node --import tsx bench/codeUpload.ts      (BENCH_ZIP_MB, BENCH_ROUNDS)
 */

const targets = { share: 0.5, rssMb: 64 };

function upload(server: ChildServer, name: string, zipFile: string, sha: string, size: number) {
  const boundary = "----agenthostBench";
  const metadata = JSON.stringify({
    definition: {
      kind: "hosted",
      cpu: "1",
      memory: "1Gi",
      code_configuration: { runtime: "python_3_11", entry_point: ["python", "main.py"] },
    },
  });
  const head = Buffer.from(
    `--${boundary}\r\ncontent-disposition: form-data; name="metadata"\r\ncontent-type: application/json\r\n\r\n${metadata}\r\n` +
      `--${boundary}\r\ncontent-disposition: form-data; name="code"\r\ncontent-type: application/octet-stream\r\n\r\n`,
  );
  const tail = Buffer.from(`\r\n--${boundary}--\r\n`);
  return new Promise<number>((resolve, reject) => {
    const req = request(
      `${server.origin}/api/projects/default/agents/${name}/versions?api-version=v1`,
      {
        method: "POST",
        ca: server.caPem,
        headers: {
          authorization: `Bearer ${benchAdminKey}`,
          "content-type": `multipart/form-data; boundary=${boundary}`,
          "content-length": head.length + size + tail.length,
          "x-ms-code-zip-sha256": sha,
        },
      },
      (res) => {
        res.resume();
        res.on("end", () => resolve(res.statusCode ?? 0));
      },
    );
    req.on("error", reject);
    req.write(head);
    const file = createReadStream(zipFile);
    file.pipe(req, { end: false });
    file.on("end", () => req.end(tail));
  });
}

function download(server: ChildServer, name: string) {
  return new Promise<{ status: number; bytes: number; sha: string }>((resolve, reject) => {
    const hash = createHash("sha256");
    let bytes = 0;
    request(
      `${server.origin}/api/projects/default/agents/${name}/code:download?api-version=v1`,
      { ca: server.caPem, headers: { authorization: `Bearer ${benchAdminKey}` } },
      (res) => {
        res.on("data", (d: Buffer) => {
          bytes += d.length;
          hash.update(d);
        });
        res.on("end", () =>
          resolve({ status: res.statusCode ?? 0, bytes, sha: hash.digest("hex") }),
        );
      },
    )
      .on("error", reject)
      .end();
  });
}

export async function codeUploadBench(): Promise<Section> {
  const mb = envInt("BENCH_ZIP_MB", 200);
  const rounds = envInt("BENCH_ROUNDS", 3);
  const work = tempDir("agenthost-bench-code-");
  const zipFile = path.join(work, "agent.zip");
  // Random content: incompressible, like real dependency-laden code, and no zip-bomb ratio.
  writeFileSync(
    zipFile,
    makeZip([
      { name: "main.py", data: "print('hi')\n" },
      { name: "blob.bin", data: randomBytes(mb * 1024 * 1024) },
    ]),
  );
  const size = readFileSync(zipFile).length;
  const sha = createHash("sha256").update(readFileSync(zipFile)).digest("hex");
  const server = await startAgenthost(path.join(work, "data"));
  try {
    const rows: string[][] = [];
    let worstShare = Infinity;
    let worstRss = 0;
    for (let round = 1; round <= rounds; round++) {
      const cp = await measureRss(server.pid, async () => {
        const r = spawnSync("cp", [zipFile, path.join(work, `copy-${round}.zip`)]);
        if (r.status !== 0) throw new Error("cp failed");
      });
      const base = rss(server.pid);
      const up = await measureRss(server.pid, () =>
        upload(server, `bench-${round}`, zipFile, sha, size),
      );
      if (up.value !== 200) throw new Error(`upload answered ${up.value}`);
      const down = await measureRss(server.pid, () => download(server, `bench-${round}`));
      if (down.value.sha !== sha) throw new Error("download differs from upload");
      const mbps = (ms: number) => size / 1024 / 1024 / (ms / 1000);
      const growth = (Math.max(up.peak, down.peak) - base) / 1024 / 1024;
      worstShare = Math.min(worstShare, mbps(up.ms) / mbps(cp.ms), mbps(down.ms) / mbps(cp.ms));
      worstRss = Math.max(worstRss, growth);
      rows.push([
        String(round),
        fixed(mbps(cp.ms), 0),
        `${fixed(mbps(up.ms), 0)} (${fixed(mbps(up.ms) / mbps(cp.ms))})`,
        `${fixed(mbps(down.ms), 0)} (${fixed(mbps(down.ms) / mbps(cp.ms))})`,
        fixed(growth, 1),
      ]);
      removeDir(path.join(work, `copy-${round}.zip`));
    }
    return {
      title: `Code zip upload and download (${mb} MB) vs cp`,
      table: {
        header: [
          "round",
          "cp MB/s",
          "upload MB/s (÷ cp)",
          "download MB/s (÷ cp)",
          "server RSS growth MB",
        ],
        rows,
      },
      notes: [
        `zip of ${(size / 1024 / 1024).toFixed(0)} MB (random, stored); upload = multipart POST over HTTPS until the 200 (SHA-256 check and zip inspection included); download = code:download streamed and hashed by the client.`,
        "Each upload uses a new agent name with the same zip, so after the first round the blob store keeps one copy (the upload still streams, hashes and renames).",
        `Target: ≥ ${targets.share * 100} % of cp throughput — ${verdict(worstShare >= targets.share)} (lowest: ${fixed(worstShare)}).`,
        `Target: RSS growth < ${targets.rssMb} MB — ${verdict(worstRss < targets.rssMb)} (highest: ${fixed(worstRss, 1)} MB).`,
      ],
    };
  } finally {
    await server.stop();
    removeDir(work);
  }
}

if (import.meta.url === pathToFileURL(process.argv[1]!).href) {
  const { renderSection } = await import("./report.js");
  process.stdout.write(renderSection(await codeUploadBench()));
}
