// The admin API, as the console calls it: a bearer token, JSON:API documents, and
// errors as thrown `ApiError`s holding the API's error objects.

const TOKEN_KEY = 'tower-ip-allowlist.console.token';
const MEDIA_TYPE = 'application/vnd.api+json';

export const POLICIES = '/api/v1/entities/ipAllowlistPolicies';
export const ACTIONS = '/api/v1/actions/ipAllowlistPolicies';
export const GROUPS = '/api/v1/entities/userGroups';
export const SITE = '/api/v1/entities/siteAllowlist';
export const RESOURCES = '/api/v1/entities/resourceAllowlists';
export const SITE_ACTIONS = '/api/v1/actions/siteAllowlist';
export const RESOURCE_ACTIONS = '/api/v1/actions/resourceAllowlists';
export const AUDIT = '/api/v1/entities/auditEvents';

// The token lives in this tab's session storage (it survives a reload, not the tab),
// and is sent only in the `Authorization` header: never a cookie, never a URL.
let token = null;
try { token = sessionStorage.getItem(TOKEN_KEY); } catch { token = null; }

/** The token signed in with, if any. */
export function savedToken() { return token; }

export function setToken(value) {
  token = value || null;
  try {
    if (token) sessionStorage.setItem(TOKEN_KEY, token);
    else sessionStorage.removeItem(TOKEN_KEY);
  } catch {
    // Storage refused (a private window's quota): the token stays in memory only.
  }
}

/** A refused call: `status` (0 when the server could not be reached) and `errors`. */
export class ApiError extends Error {
  constructor(status, errors) {
    super(errors.map((error) => error.detail || error.title || error.code).join('; '));
    this.status = status;
    this.errors = errors;
  }

  /** The first error's code. */
  get code() { return this.errors[0]?.code; }
}

/** `path` with `?force=true` (or `&force=true`) added. */
export function forced(path) {
  return path + (path.includes('?') ? '&' : '?') + 'force=true';
}

/** A path segment. */
export function segment(id) { return encodeURIComponent(id); }

/**
 * One call; resolves to `{status, body, version}` and rejects with an `ApiError`.
 * `version` is the `ETag`'s number when there is one; `ifMatch` sends one back.
 */
export async function call(method, path, {body, ifMatch, force} = {}) {
  const headers = {Accept: MEDIA_TYPE};
  if (token) headers.Authorization = `Bearer ${token}`;
  if (body !== undefined) headers['Content-Type'] = MEDIA_TYPE;
  if (ifMatch !== undefined && ifMatch !== null) headers['If-Match'] = `"${ifMatch}"`;
  let response;
  try {
    response = await fetch(force ? forced(path) : path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      credentials: 'omit',
      cache: 'no-store',
      redirect: 'error',
    });
  } catch (error) {
    throw new ApiError(0, [{code: 'unreachable', title: 'The server cannot be reached',
      detail: `The server cannot be reached (${error.message}): check the connection and try again.`}]);
  }
  const text = await response.text();
  let json = null;
  try { json = text ? JSON.parse(text) : null; } catch { json = null; }
  if (!response.ok) {
    const errors = Array.isArray(json?.errors) && json.errors.length
      ? json.errors
      : [{status: String(response.status), code: `http${response.status}`,
        title: response.statusText, detail: `${response.status} ${response.statusText}: ${text.slice(0, 300)}`}];
    throw new ApiError(response.status, errors);
  }
  const etag = response.headers.get('ETag');
  const version = etag ? Number(etag.replace(/^W\//, '').replaceAll('"', '')) : undefined;
  return {status: response.status, body: json, version};
}

/** Posts `{"user": user}` as JSON to the development token endpoint; resolves to the token. */
export async function mintDevelopmentToken(url, user) {
  const response = await fetch(url, {
    method: 'POST',
    headers: {'Content-Type': 'application/json'},
    body: JSON.stringify({user}),
    credentials: 'omit',
    cache: 'no-store',
  });
  const text = await response.text();
  let json = null;
  try { json = JSON.parse(text); } catch { json = null; }
  if (!response.ok || typeof json?.token !== 'string') {
    throw new ApiError(response.status, [{code: 'devToken', title: 'No development token',
      detail: json?.error || `${response.status} ${response.statusText}`}]);
  }
  return json.token;
}
