import { z } from "zod";
import { sessionIdPattern } from "./requests.js";

/*
 * The Bot Framework activity (the `activity` protocol's wire shape), as far as agenthost reads
 * it: unknown fields are kept and passed on.
 */

const id = z.string().min(1).max(1024);

/** A `from` / `recipient`: a channel account. */
export const channelAccount = z.looseObject({
  id: id,
  name: z.string().max(1024).optional(),
  role: z.string().max(64).optional(),
});

export const conversationAccount = z.looseObject({
  id: id,
  name: z.string().max(1024).optional(),
  isGroup: z.boolean().optional(),
  conversationType: z.string().max(256).optional(),
  tenantId: z.string().max(256).optional(),
});

/** Any activity (a hosted agent is handed every type). */
export const activity = z.looseObject({
  type: z.string().min(1).max(64),
  id: id.optional(),
  timestamp: z.string().max(64).optional(),
  localTimestamp: z.string().max(64).optional(),
  serviceUrl: z.string().max(2048).optional(),
  channelId: z.string().max(256).optional(),
  from: channelAccount.optional(),
  recipient: channelAccount.optional(),
  conversation: conversationAccount.optional(),
  replyToId: id.optional(),
  text: z
    .string()
    .max(256 * 1024)
    .optional(),
  textFormat: z.string().max(64).optional(),
  locale: z.string().max(64).optional(),
  attachments: z.array(z.looseObject({})).max(64).optional(),
  entities: z.array(z.looseObject({})).max(64).optional(),
  channelData: z.unknown().optional(),
  /** `expectReplies`: the replies come back in the answer, as `{"activities": [...]}`. */
  deliveryMode: z.string().max(64).optional(),
});
export type Activity = z.infer<typeof activity>;

/** What a prompt agent answers: a `message` with its `text`, in a conversation. */
export const messageActivity = activity.extend({
  type: z.literal("message"),
  text: z
    .string()
    .min(1)
    .max(256 * 1024),
  conversation: conversationAccount,
});
export type MessageActivity = z.infer<typeof messageActivity>;

/** `?agent_session_id=` of a forwarded activity. */
export const activityQuery = z.looseObject({
  agent_session_id: z.string().regex(sessionIdPattern, "must be 8-128 of [A-Za-z0-9_-]").optional(),
});
