import type { InputItem } from "../contract/responses.js";
import { notFound } from "../domain/errors.js";
import type { Caller } from "../domain/keyService.js";
import type { Page, PageRequest } from "../domain/model.js";
import type { Clock } from "../domain/ports.js";
import { newId, normalizeInput } from "./items.js";
import type { Conversation, ConversationRepository, Item } from "./ports.js";

/** Conversations: a thread of items that responses read and append to; the owner's only. */
export class ConversationService {
  constructor(
    private readonly conversations: ConversationRepository,
    private readonly clock: Clock,
  ) {}

  async create(
    caller: Caller,
    project: string,
    fields: { items?: InputItem[] | null; metadata?: Record<string, string> },
  ): Promise<Conversation> {
    const conversation: Conversation = {
      id: newId("conv"),
      project,
      owner: caller.subject,
      metadata: fields.metadata ?? {},
      agentName: null,
      agentVersion: null,
      createdAt: this.clock(),
    };
    await this.conversations.create(
      conversation,
      (fields.items ?? []).map((i) => normalizeInput(i)),
    );
    return conversation;
  }

  async get(caller: Caller, project: string, id: string): Promise<Conversation> {
    const c = await this.conversations.get(project, id);
    // Another identity's conversation is not found, as the real service answers.
    if (!c || c.owner !== caller.subject) throw notFound(`Conversation '${id}'`, "conversation_id");
    return c;
  }

  async update(
    caller: Caller,
    project: string,
    id: string,
    metadata: Record<string, string>,
  ): Promise<Conversation> {
    await this.get(caller, project, id);
    const updated = await this.conversations.update(project, id, { metadata });
    if (!updated) throw notFound(`Conversation '${id}'`, "conversation_id");
    return updated;
  }

  /** The caller's own conversations; with `agentName`, those that agent answered in. */
  list(caller: Caller, project: string, filter: { agentName?: string }, page: PageRequest) {
    return this.conversations.list(project, caller.subject, filter, page);
  }

  async delete(caller: Caller, project: string, id: string): Promise<void> {
    await this.get(caller, project, id);
    await this.conversations.delete(project, id);
  }

  async addItems(caller: Caller, project: string, id: string, items: InputItem[]): Promise<Item[]> {
    await this.get(caller, project, id);
    const normalized = items.map((i) => normalizeInput(i));
    await this.conversations.append(project, id, normalized, this.clock());
    return normalized;
  }

  async listItems(
    caller: Caller,
    project: string,
    id: string,
    page: PageRequest,
  ): Promise<Page<Item>> {
    await this.get(caller, project, id);
    return this.conversations.page(project, id, page);
  }

  async getItem(caller: Caller, project: string, id: string, itemId: string): Promise<Item> {
    await this.get(caller, project, id);
    const item = await this.conversations.item(project, id, itemId);
    if (!item) throw notFound(`Item '${itemId}'`, "item_id");
    return item;
  }

  async deleteItem(
    caller: Caller,
    project: string,
    id: string,
    itemId: string,
  ): Promise<Conversation> {
    const c = await this.get(caller, project, id);
    if (!(await this.conversations.deleteItem(project, id, itemId)))
      throw notFound(`Item '${itemId}'`, "item_id");
    return c;
  }
}
