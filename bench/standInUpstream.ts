import { startStandInModel } from "../test/helpers/standInModel.js";

/*
 * TEST DOUBLE as a child process for bench/gateway.ts: the stand-in OpenAI-compatible model
 * server of test/helpers/standInModel.ts (a real model server cannot run here), on plain HTTP.
 * It answers at once with `deltas` text deltas of "tok " (streamed, or one JSON answer), or,
 * when the last user message is "slow", with `slowChunks` deltas `slowMs` apart. It keeps no
 * record of the requests (the benchmark sends thousands).
 *
 *   node --import tsx bench/standInUpstream.ts <deltas> <slowChunks> <slowMs>
 */

const [deltas, slowChunks, slowMs] = process.argv.slice(2, 5).map(Number) as [
  number,
  number,
  number,
];
const model = await startStandInModel();
const fast = Array.from({ length: deltas }, () => "tok ");
const slow = Array.from({ length: slowChunks }, () => "tick ");
model.answer((request) => {
  model.requests.length = 0;
  const messages = (request.body.messages ?? []) as { role: string; content: unknown }[];
  const last = messages.at(-1)?.content;
  return last === "slow"
    ? { text: slow.join(""), chunks: slow, delayMs: slowMs }
    : { text: fast.join(""), chunks: fast };
});
process.stdout.write(`listening on ${model.baseUrl.replace(/\/v1$/, "")}\n`);
