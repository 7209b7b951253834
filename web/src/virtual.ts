import {
  Virtualizer,
  elementScroll,
  observeElementOffset,
  observeElementRect,
} from "@tanstack/virtual-core";
import { useEffect, useLayoutEffect, useReducer, useState } from "preact/hooks";

/**
 * TanStack Virtual's core bound to Preact: the rows of a scrolling element that are in view
 * (plus `overscan`), re-rendered as it scrolls.
 */
export function useVirtualRows(options: {
  count: number;
  rowHeight: number;
  scrollElement: () => HTMLElement | null;
  overscan?: number;
}) {
  const [, rerender] = useReducer((n: number) => n + 1, 0);
  const all = {
    count: options.count,
    estimateSize: () => options.rowHeight,
    getScrollElement: options.scrollElement,
    overscan: options.overscan ?? 10,
    observeElementRect,
    observeElementOffset,
    scrollToFn: elementScroll,
    onChange: () => rerender(0),
  };
  const [virtualizer] = useState(() => new Virtualizer<HTMLElement, HTMLElement>(all));
  virtualizer.setOptions(all);
  useEffect(() => virtualizer._didMount(), [virtualizer]);
  useLayoutEffect(() => virtualizer._willUpdate());
  return virtualizer;
}
