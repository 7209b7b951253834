import { AppError } from "../domain/errors.js";
import type { Caller } from "../domain/keyService.js";
import type { SessionForwarder } from "./sessionForwarder.js";

/**
 * The forwarder, for a caller who may call a hosted agent: the host must run sessions, and a
 * session's own token never starts one (no sandbox can multiply itself).
 */
export function forwarderFor(forwarder: SessionForwarder | undefined, caller: Caller) {
  if (!forwarder)
    throw new AppError("sandbox_unavailable", "This host cannot run hosted agents' sessions.");
  if (caller.session)
    throw new AppError(
      "forbidden",
      "A hosted agent's session may call models and prompt agents, not hosted agents.",
      "agent",
    );
  return forwarder;
}
