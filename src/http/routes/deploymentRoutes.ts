import type { FastifyInstance } from "fastify";
import { z } from "zod";
import type { DeploymentService } from "../../gateway/deploymentService.js";
import { projectOf } from "../auth.js";
import { presentDeployment, presentModelDeployment } from "../presenters.js";
import { parse } from "../../contract/validate.js";

type Named = { Params: { project: string; name: string } };

const deploymentBody = z.strictObject({
  model: z.string(),
  base_url: z.string(),
  api_key: z.string().optional(),
  api_key_env: z.string().optional(),
});

/** Managing a project's deployments (admin keys; not part of the Foundry API). */
export function deploymentAdminRoutes(app: FastifyInstance, deployments: DeploymentService) {
  app.put<Named>("/projects/:project/deployments/:name", async (request, reply) => {
    const body = parse(deploymentBody, request.body);
    const { deployment, created } = await deployments.put(
      request.params.project,
      request.params.name,
      {
        model: body.model,
        baseUrl: body.base_url,
        apiKey: body.api_key,
        apiKeyEnv: body.api_key_env,
      },
    );
    return reply.code(created ? 201 : 200).send(presentDeployment(deployment));
  });

  app.get<Named>("/projects/:project/deployments/:name", async (request) =>
    presentDeployment(await deployments.get(request.params.project, request.params.name)),
  );

  app.get<{ Params: { project: string } }>("/projects/:project/deployments", async (request) => ({
    object: "list",
    data: (await deployments.list(request.params.project)).map(presentDeployment),
  }));

  app.delete<Named>("/projects/:project/deployments/:name", async (request, reply) => {
    await deployments.delete(request.params.project, request.params.name);
    return reply.code(204).send();
  });
}

const listQuery = z.looseObject({
  modelName: z.string().optional(),
  modelPublisher: z.string().optional(),
  deploymentType: z.string().optional(),
});

/** Foundry's `project.deployments.list()` and `get(name)`: one page, every deployment. */
export function deploymentRoutes(app: FastifyInstance, deployments: DeploymentService) {
  app.get("/deployments", async (request) => {
    const q = parse(listQuery, request.query);
    const value = (await deployments.list(projectOf(request)))
      .map(presentModelDeployment)
      .filter(
        (d) =>
          (q.modelName === undefined || d.modelName === q.modelName) &&
          (q.modelPublisher === undefined || d.modelPublisher === q.modelPublisher) &&
          (q.deploymentType === undefined || d.type === q.deploymentType),
      );
    return { value };
  });

  app.get<{ Params: { name: string } }>("/deployments/:name", async (request) =>
    presentModelDeployment(await deployments.get(projectOf(request), request.params.name)),
  );
}
