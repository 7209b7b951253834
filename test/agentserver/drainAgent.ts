// A child agent for drain.test.ts: "slow" answers after 600 ms; "hang" never does (it ignores
// its signal). The drain deadline comes from AGENTSERVER_DRAIN_SECONDS.
import { setTimeout as sleep } from "node:timers/promises";
import { serve } from "../../packages/agentserver/src/index.js";

await serve({
  host: "127.0.0.1",
  port: 0,
  async responses(_request, ctx) {
    if (ctx.inputText === "slow") {
      await sleep(600);
      return "slow done";
    }
    if (ctx.inputText === "hang") return new Promise<string>(() => {});
    return `echo: ${ctx.inputText}`;
  },
});
