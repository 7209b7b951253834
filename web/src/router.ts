/** A small history router: pages read `location.pathname`, links call `navigate`. */
export function navigate(to: string) {
  history.pushState(null, "", to);
  dispatchEvent(new PopStateEvent("popstate"));
}
