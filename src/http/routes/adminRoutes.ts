import type { FastifyInstance } from "fastify";
import { z } from "zod";
import { agentNamePattern } from "../../contract/requests.js";
import { AppError } from "../../domain/errors.js";
import type { KeyService } from "../../domain/keyService.js";
import type { ProjectRepository } from "../../domain/ports.js";
import type { Clock } from "../../domain/ports.js";
import type { UsageRepository } from "../../responses/ports.js";
import { presentKey, presentUsage } from "../presenters.js";
import { parse } from "../../contract/validate.js";

const projectName = z.string().regex(agentNamePattern, "must be 1-63 letters, digits or hyphens");
const createKeyBody = z.object({
  project: projectName,
  name: z.string().min(1).max(128).optional(),
  act_for_users: z.boolean().optional(),
});

const usageGroups = [
  "agent",
  "version",
  "session",
  "identity",
  "deployment",
  "day",
  "time",
] as const;
const usageQuery = z.object({
  group_by: z
    .string()
    .default("agent")
    .transform((v) => v.split(",").filter(Boolean))
    .pipe(z.array(z.enum(usageGroups)).max(usageGroups.length)),
  project: projectName.optional(),
  since: z.coerce.number().int().min(0).optional(),
  until: z.coerce.number().int().min(0).optional(),
  // Seconds per `time` bucket: a minute to 31 days.
  bucket: z.coerce.number().int().min(60).max(2_678_400).default(3600),
});

/** Key and project management for admin keys (not part of the Foundry API). */
export function adminRoutes(
  app: FastifyInstance,
  keys: KeyService,
  projects: ProjectRepository,
  usage: UsageRepository,
  clock: Clock,
) {
  app.post("/keys", async (request, reply) => {
    const body = parse(createKeyBody, request.body);
    const { key, secret } = await keys.create({
      project: body.project,
      name: body.name,
      actForUsers: body.act_for_users,
    });
    return reply.code(201).send(presentKey(key, secret));
  });

  app.get("/keys", async (request) => {
    const { project } = parse(z.object({ project: projectName.optional() }), request.query);
    return { object: "list", data: (await keys.list(project)).map((k) => presentKey(k)) };
  });

  app.delete<{ Params: { id: string } }>("/keys/:id", async (request, reply) => {
    if (request.params.id === request.caller.key.id) {
      throw new AppError("conflict", "A key cannot revoke itself.", "id");
    }
    if (!(await keys.revoke(request.params.id)))
      throw new AppError("not_found", "Key was not found.", "id");
    return reply.code(204).send();
  });

  app.post("/projects", async (request, reply) => {
    const { name } = parse(z.object({ name: projectName }), request.body);
    await projects.create(name, clock());
    return reply.code(201).send({ object: "project", name });
  });

  // Tokens used, grouped (`group_by=agent,version,session,identity,deployment,day,time`).
  app.get("/usage", async (request) => {
    const q = parse(usageQuery, request.query);
    const rows = await usage.grouped(q.group_by, {
      project: q.project,
      since: q.since,
      until: q.until,
      bucketSeconds: q.bucket,
    });
    return {
      object: "list",
      group_by: ["project", ...q.group_by],
      ...(q.group_by.includes("time") ? { bucket: q.bucket } : {}),
      data: rows.map(({ inputTokens, outputTokens, calls, ...keys }) => ({
        ...keys,
        ...presentUsage({ inputTokens, outputTokens, calls }),
      })),
    };
  });

  app.get("/projects", async () => ({
    object: "list",
    data: (await projects.list()).map((name) => ({ object: "project", name })),
  }));
}
