// The HTTP API client: Basic credentials kept in sessionStorage (as RabbitMQ's login does),
// JSON in and out, errors as ApiError carrying RabbitMQ's `reason`.

const KEY = 'management.credentials';

export class ApiError extends Error {
  constructor(status, reason) {
    super(`${status}: ${reason}`);
    this.status = status;
    this.reason = reason;
  }
}

function basic(username, password) {
  const bytes = new TextEncoder().encode(`${username}:${password}`);
  return 'Basic ' + btoa(String.fromCharCode(...bytes));
}

export function credentials() {
  const stored = sessionStorage.getItem(KEY);
  return stored ? JSON.parse(stored) : null;
}

export function saveCredentials(username, password) {
  sessionStorage.setItem(KEY, JSON.stringify({ username, header: basic(username, password) }));
}

export function forgetCredentials() {
  sessionStorage.removeItem(KEY);
}

let unauthorized = () => {};

/** Called with the error when a request with the saved credentials answers 401. */
export function onUnauthorized(handler) {
  unauthorized = handler;
}

/** A path with each interpolated value as one encoded segment: path`/queues/${vhost}/${name}`. */
export function path(strings, ...values) {
  return strings.reduce((out, s, i) => out + s + (i < values.length ? encodeURIComponent(values[i]) : ''), '');
}

/** `method` on api`path` (relative, so a path prefix keeps working); the parsed JSON or null. */
export async function request(method, apiPath, { body, headers = {}, auth } = {}) {
  const header = auth ?? credentials()?.header;
  // credentials: 'omit': the Authorization header is ours; with the browser's own credentials a
  // 401 (a wrong password) would open its login prompt instead of answering the request.
  const init = { method, credentials: 'omit', headers: { Accept: 'application/json', ...headers } };
  if (header) init.headers.Authorization = header;
  if (body !== undefined) {
    init.headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  const response = await fetch('api' + apiPath, init);
  const text = await response.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = null;
  }
  if (!response.ok) {
    const error = new ApiError(response.status, data?.reason ?? data?.error ?? response.statusText);
    if (response.status === 401 && auth === undefined) unauthorized(error);
    throw error;
  }
  return data;
}

export const get = (p, opts) => request('GET', p, opts);
export const put = (p, body, opts) => request('PUT', p, { ...opts, body });
export const post = (p, body, opts) => request('POST', p, { ...opts, body });
export const del = (p, opts) => request('DELETE', p, opts);

/** Query string of the defined values of `params`, with its "?" ('' when none). */
export function query(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== null && v !== '') q.set(k, v);
  const s = q.toString();
  return s ? '?' + s : '';
}
