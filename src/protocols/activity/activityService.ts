import { randomBytes } from "node:crypto";
import { activity, messageActivity, type MessageActivity } from "../../contract/activity.js";
import { parse } from "../../contract/validate.js";
import { AppError } from "../../domain/errors.js";
import type { Caller } from "../../domain/keyService.js";
import type { Agent } from "../../domain/model.js";
import type { Clock } from "../../domain/ports.js";
import type { SessionForwarder } from "../../forwarder/sessionForwarder.js";
import type { ActivityRepository } from "./ports.js";
import type { HostedAnswer, ResponseService } from "../../responses/responseService.js";
import { forwarderFor } from "../../forwarder/hostedCalls.js";
import {
  AgentFailure,
  answeringVersion,
  askAgent,
  defaultAnswerOptions,
  untilAborted,
  type AgentAnswerOptions,
} from "../agentAnswer.js";

/*
 * The `activity` protocol (Bot Framework activities, as Teams and M365 send them): a hosted
 * agent serves it itself at `POST /activity/messages` in its sandbox, so the activity is
 * forwarded there as it came (checked) and its answer passed back; a prompt agent answers a
 * `message` activity with a `message` activity of its own, the reply to it.
 */

export interface ActivityCall {
  caller: Caller;
  project: string;
  agent: Agent;
  body: unknown;
  /** A hosted agent's session to continue (a new one when absent). */
  sessionId?: string;
  clientHeaders?: Record<string, string>;
  signal?: AbortSignal;
}

export type ActivityAnswer = { kind: "activity"; activity: Record<string, unknown> } | HostedAnswer;

/** The route in a hosted agent's container. */
export const hostedActivityPath = "/activity/messages";

export class ActivityService {
  private readonly answers: AgentAnswerOptions;

  constructor(
    private readonly deps: {
      responses: ResponseService;
      forwarder?: SessionForwarder;
      conversations: ActivityRepository;
      clock: Clock;
      answers?: AgentAnswerOptions;
    },
  ) {
    this.answers = deps.answers ?? defaultAnswerOptions;
  }

  async handle(call: ActivityCall): Promise<ActivityAnswer> {
    const checked = parse(activity, call.body);
    const conversationId = checked.conversation?.id;
    // Picked once, sticky per conversation: the version that answers decides how.
    const version = await answeringVersion(
      this.deps.responses,
      call.project,
      call.agent.name,
      call.sessionId,
      conversationId,
    );
    if (version.definition.kind === "hosted") return this.forward(call, checked, version.version);
    const expectReplies = checked.deliveryMode === "expectReplies";
    // What a prompt agent does not answer (conversationUpdate, typing, …) gets no reply.
    if (checked.type !== "message")
      return { kind: "activity", activity: expectReplies ? { activities: [] } : {} };
    const message = parse(messageActivity, checked);
    try {
      const answer = await askAgent(
        this.deps.responses,
        {
          caller: call.caller,
          project: call.project,
          agentName: call.agent.name,
          version: version.version,
          input: message.text,
          clientHeaders: call.clientHeaders,
          signal: call.signal,
        },
        this.answers,
      );
      const reply = this.replyTo(message, answer.text);
      return { kind: "activity", activity: expectReplies ? { activities: [reply] } : reply };
    } catch (err) {
      if (err instanceof AgentFailure)
        throw new AppError("agent_failed", `Agent '${call.agent.name}': ${err.message}`);
      throw err;
    }
  }

  /**
   * Forwards the activity to a hosted agent's session: the one named, else the one answering
   * its conversation for this caller (remembered), else a new one (then remembered).
   */
  private async forward(
    call: ActivityCall,
    checked: Record<string, unknown> & { conversation?: { id: string } },
    version: number,
  ): Promise<HostedAnswer> {
    const forwarder = forwarderFor(this.deps.forwarder, call.caller);
    const scope = { project: call.project, agentName: call.agent.name, owner: call.caller.subject };
    const conversationId = checked.conversation?.id;
    let sessionId = call.sessionId;
    let remembered: string | undefined;
    if (sessionId === undefined && conversationId !== undefined) {
      remembered = await this.deps.conversations.sessionOf(scope, conversationId);
      sessionId = remembered;
    }
    const body = Buffer.from(JSON.stringify(checked));
    const send = (session: string | undefined) =>
      forwarder.forward({
        caller: call.caller,
        project: call.project,
        agentName: call.agent.name,
        sessionId: session,
        version,
        path: hostedActivityPath,
        body,
        contentType: "application/json",
        clientHeaders: call.clientHeaders,
        // The client's leaving abandons the call; the deadline is for the answer's headers.
        signal: call.signal,
      });
    // The agent's answer streams through as it comes; its headers have the answer deadline.
    const deadline = AbortSignal.timeout(this.answers.timeoutMs);
    const signal = call.signal ? AbortSignal.any([call.signal, deadline]) : deadline;
    try {
      let pending = send(sessionId);
      // A remembered session that is gone (deleted, expired): the conversation starts anew.
      if (remembered !== undefined)
        pending = pending.catch((err: unknown) => {
          if (err instanceof AppError && err.code === "not_found") return send(undefined);
          throw err;
        });
      const answer = await untilAborted(pending, signal, (late) => late.body.destroy());
      if (
        conversationId !== undefined &&
        call.sessionId === undefined &&
        answer.sessionId !== remembered
      )
        await this.deps.conversations.remember(
          scope,
          conversationId,
          answer.sessionId,
          this.deps.clock(),
        );
      return { kind: "hosted", answer, body: answer.body };
    } catch (err) {
      if (err instanceof AgentFailure)
        throw new AppError(
          "agent_failed",
          deadline.aborted
            ? `Agent '${call.agent.name}' did not answer within ${Math.round(this.answers.timeoutMs / 1000)} s.`
            : `Agent '${call.agent.name}': ${err.message}`,
        );
      throw err;
    }
  }

  /** The agent's `message` in reply: the conversation kept, `from` and `recipient` swapped. */
  private replyTo(message: MessageActivity, text: string): Record<string, unknown> {
    return {
      type: "message",
      id: `act_${randomBytes(12).toString("hex")}`,
      timestamp: new Date(this.deps.clock() * 1000).toISOString(),
      ...(message.channelId !== undefined ? { channelId: message.channelId } : {}),
      ...(message.serviceUrl !== undefined ? { serviceUrl: message.serviceUrl } : {}),
      ...(message.recipient !== undefined ? { from: message.recipient } : {}),
      ...(message.from !== undefined ? { recipient: message.from } : {}),
      conversation: message.conversation,
      ...(message.id !== undefined ? { replyToId: message.id } : {}),
      ...(message.locale !== undefined ? { locale: message.locale } : {}),
      textFormat: "plain",
      text,
    };
  }
}
