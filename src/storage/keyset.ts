import type { Order } from "../domain/model.js";

/**
 * Keyset paging over one integer key, shared by every dialect: a page is "key beyond the
 * cursor, nearest first, limit + 1 rows" — never OFFSET, so a deep page costs what the first does.
 */
export interface KeysetPlan {
  /** SQL conditions on `column`, with their parameters in order. */
  conditions: string[];
  params: number[];
  /** ORDER BY direction of the query. */
  direction: "ASC" | "DESC";
  /** True when the query scans backwards (a `before` page) and rows must be reversed. */
  reverse: boolean;
}

export function planKeyset(
  column: string,
  order: Order,
  after?: number,
  before?: number,
): KeysetPlan {
  const forward = order === "asc" ? ">" : "<";
  const backward = order === "asc" ? "<" : ">";
  const conditions: string[] = [];
  const params: number[] = [];
  if (after !== undefined) {
    conditions.push(`${column} ${forward} ?`);
    params.push(after);
  }
  if (before !== undefined) {
    conditions.push(`${column} ${backward} ?`);
    params.push(before);
  }
  // Only `before` given: take the rows nearest to it, i.e. scan backwards.
  const reverse = before !== undefined && after === undefined;
  const ascending = (order === "asc") !== reverse;
  return { conditions, params, direction: ascending ? "ASC" : "DESC", reverse };
}

/** Cuts the limit + 1 rows of a query down to a page. */
export function toPage<T>(
  rows: T[],
  limit: number,
  reverse: boolean,
): { items: T[]; hasMore: boolean } {
  const hasMore = rows.length > limit;
  const items = rows.slice(0, limit);
  if (reverse) items.reverse();
  return { items, hasMore };
}
