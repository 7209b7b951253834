import {
  QueryClient,
  QueryObserver,
  type QueryKey,
  type QueryObserverResult,
} from "@tanstack/query-core";
import { useEffect, useReducer, useState } from "preact/hooks";

/**
 * The console's data cache: TanStack Query's core, bound to Preact by `useQuery` below. Pages
 * read through it, and writes call `queryClient.invalidateQueries` for what they changed.
 */
export const queryClient = new QueryClient({
  defaultOptions: {
    queries: { retry: false, staleTime: 5_000, refetchOnWindowFocus: false },
  },
});

export interface QueryOptions<T> {
  queryKey: QueryKey;
  queryFn: () => Promise<T>;
  enabled?: boolean;
  /** Milliseconds between refetches while the page shows it; off when false or absent. */
  refetchInterval?: number | false;
}

/** One query's current result; the component re-renders when it changes. */
export function useQuery<T>(options: QueryOptions<T>): QueryObserverResult<T, Error> {
  const defaulted = queryClient.defaultQueryOptions(options);
  const [observer] = useState(() => new QueryObserver<T, Error, T, T>(queryClient, defaulted));
  const [, rerender] = useReducer((n: number) => n + 1, 0);
  useEffect(() => observer.subscribe(() => rerender(0)), [observer]);
  useEffect(() => observer.setOptions(defaulted));
  return observer.getOptimisticResult(defaulted);
}
