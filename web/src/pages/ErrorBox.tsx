import { ApiError } from "../api.js";

/** An API failure as the API said it: code and message. */
export function ErrorBox({ error }: { error: unknown }) {
  if (!error) return null;
  const code = error instanceof ApiError ? error.code : "error";
  const message = error instanceof Error ? error.message : String(error);
  return (
    <div role="alert" class="error">
      <strong>{code}</strong>: {message}
    </div>
  );
}
