/**
 * @agenthost/agentserver: the hosted-agent container contract for Node agents, on Node
 * built-ins only. `serve({ responses, invocations })` answers `GET /readiness`, the
 * Responses routes (sync, streamed, background; GET, cancel, DELETE, input_items by id) and
 * the invocations routes (raw bytes, streamed; GET and cancel by id; an OpenAPI document),
 * hands each handler the container protocol's headers and the platform's environment, and
 * on SIGTERM stops accepting, finishes what is in flight until a deadline, then exits.
 */
export { serve, type AgentServer, type ServeOptions } from "./server.js";
export { agentEnvironment, type AgentEnvironment, type Context } from "./context.js";
export {
  inputText,
  type InputItem,
  type ResponseEvent,
  type ResponseObject,
  type ResponsesContext,
  type ResponsesHandler,
  type ResponsesRequest,
  type ResponsesResult,
} from "./responses.js";
export {
  type InvocationRecord,
  type InvocationRequest,
  type InvocationsContext,
  type InvocationsHandler,
  type InvocationsResult,
} from "./invocations.js";
