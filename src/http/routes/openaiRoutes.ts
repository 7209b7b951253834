import type { FastifyInstance } from "fastify";
import type { ModelGateway } from "../../gateway/modelGateway.js";
import { projectOf } from "../auth.js";

/** The OpenAI-compatible data plane of a project, under `{project}/openai/v1`. */
export function openaiRoutes(app: FastifyInstance, gateway: ModelGateway) {
  // What `model` may name: the project's deployments (`openai.models.list()`).
  app.get("/models", async (request) => ({
    object: "list",
    data: (await gateway.deployments(projectOf(request))).map((id) => ({
      id,
      object: "model",
      created: 0,
      owned_by: "agenthost",
    })),
  }));
}
