import type { FastifyInstance } from "fastify";
import { agentDefinition } from "../../contract/definitions.js";
import {
  agentName,
  importAgentBody,
  importVersionBody,
  registerManifestBody,
} from "../../contract/requests.js";
import type { AgentService } from "../../domain/agentService.js";
import type { Manifest } from "../../domain/manifests.js";
import type { ManifestService } from "../../domain/manifestService.js";
import type { JsonObject } from "../../domain/model.js";
import { projectOf } from "../auth.js";
import { presentAgent, presentVersion } from "../presenters.js";
import { parse } from "../../contract/validate.js";

type NameParams = { project: string; name: string };

const presentManifest = (m: Manifest) => ({
  object: "manifest" as const,
  id: `${m.name}@${m.version}`,
  name: m.name,
  version: String(m.version),
  description: m.description,
  builtin: m.builtin,
  parameters: m.parameters,
  definition: m.definition,
  created_at: m.createdAt,
});

/** Manifest registration (agenthost's routes) and the three import operations of the contract. */
export function manifestRoutes(
  app: FastifyInstance,
  manifests: ManifestService,
  agents: AgentService,
) {
  /** Renders the manifest and checks the result like any definition sent directly. */
  const render = async (project: string, id: string, values: Record<string, unknown>) =>
    parse(
      agentDefinition,
      await manifests.render(project, id, values),
      "definition.",
    ) as JsonObject & { kind: string };

  app.post("/agents::import", async (request) => {
    const body = parse(importAgentBody, request.body);
    const definition = await render(projectOf(request), body.manifest_id, body.parameter_values);
    return presentAgent(await agents.create(projectOf(request), { ...body, definition }));
  });

  app.post<{ Params: NameParams }>("/agents/:name/import", async (request) => {
    const body = parse(importVersionBody, request.body);
    const definition = await render(projectOf(request), body.manifest_id, body.parameter_values);
    return presentAgent(
      await agents.update(projectOf(request), request.params.name, { ...body, definition }),
    );
  });

  app.post<{ Params: NameParams }>("/agents/:name/versions::import", async (request) => {
    const name = parse(agentName, request.params.name, "agent_name");
    const body = parse(importVersionBody, request.body);
    const definition = await render(projectOf(request), body.manifest_id, body.parameter_values);
    return presentVersion(
      await agents.createVersion(projectOf(request), name, { ...body, definition }),
    );
  });

  app.get("/manifests", async (request) => {
    const data = (await manifests.list(projectOf(request))).map(presentManifest);
    return {
      object: "list",
      data,
      has_more: false,
      first_id: data[0]?.id ?? null,
      last_id: data.at(-1)?.id ?? null,
    };
  });

  app.post("/manifests", async (request, reply) => {
    const body = parse(registerManifestBody, request.body);
    return reply
      .code(201)
      .send(presentManifest(await manifests.register(projectOf(request), body)));
  });

  app.get<{ Params: { project: string; id: string } }>("/manifests/:id", async (request) =>
    presentManifest(await manifests.resolve(projectOf(request), request.params.id, "manifest_id")),
  );

  app.delete<{ Params: { project: string; id: string } }>(
    "/manifests/:id",
    async (request, reply) => {
      await manifests.delete(projectOf(request), request.params.id);
      return reply.code(204).send();
    },
  );
}
