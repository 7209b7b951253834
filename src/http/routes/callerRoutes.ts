import type { FastifyInstance } from "fastify";

/** `GET /caller`: what the calling key is (its project, whether it is an admin key). */
export function callerRoutes(app: FastifyInstance) {
  app.get("/caller", async (request) => {
    const { key } = request.caller;
    return {
      object: "caller",
      key_id: key.id,
      key_name: key.name,
      project: key.project,
      admin: key.admin,
      act_for_users: key.actForUsers,
    };
  });
}
