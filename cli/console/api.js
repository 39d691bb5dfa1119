// The console talks to the same JSON API as any client, behind the same guard:
// state-changing calls are same-origin POSTs with Content-Type: application/json.

/** An API failure, with the server's `{error, message}`. */
export class ApiError extends Error {
  constructor(status, body) {
    super(body && body.message ? body.message : `HTTP ${status}`);
    this.status = status;
    this.code = body && body.error;
  }
}

async function answer(response) {
  let body = null;
  try { body = await response.json(); } catch { /* not JSON */ }
  if (!response.ok) throw new ApiError(response.status, body);
  return body;
}

/** GET `path` as JSON. */
export async function get(path) {
  return answer(await fetch(path, { headers: { accept: 'application/json' }, cache: 'no-store' }));
}

/** POST `body` as JSON to `path`. */
export async function post(path, body = {}) {
  return answer(await fetch(path, {
    method: 'POST',
    headers: { 'content-type': 'application/json', accept: 'application/json' },
    body: JSON.stringify(body),
  }));
}

/** `encodeURIComponent` for path segments. */
export const seg = encodeURIComponent;
