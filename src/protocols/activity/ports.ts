/*
 * What the activity protocol keeps: for each conversation (an activity's `conversation.id`)
 * of one identity with one hosted agent, the session that answers it, so every activity of
 * the conversation reaches the same sandbox.
 */

/** Whose a conversation is: the agent it talks to and the identity that posts it. */
export interface ActivityScope {
  project: string;
  agentName: string;
  owner: string;
}

export interface ActivityRepository {
  /** The session answering this conversation of the scope, if one was remembered. */
  sessionOf(scope: ActivityScope, conversationId: string): Promise<string | undefined>;
  /** Remembers (or replaces) the session answering this conversation of the scope. */
  remember(
    scope: ActivityScope,
    conversationId: string,
    sessionId: string,
    at: number,
  ): Promise<void>;
}
