/**
 * Calls to the merchant's own server, `<server>/shuyu/api/*` (served by the in-sandbox
 * server extension, which relays to the platform): the extension needs no other path.
 */
import { URLExt } from '@jupyterlab/coreutils';
import { ServerConnection } from '@jupyterlab/services';

/** A refusal of the server (or of the platform behind it), with its sentence. */
export class ShuyuApiError extends Error {
  constructor(
    readonly status: number,
    message: string
  ) {
    super(message);
  }
}

/** Send `body` (JSON) to `shuyu/api/<path>` and return the JSON answer. */
export async function requestAPI<T>(
  path: string,
  init: { method?: string; body?: unknown } = {}
): Promise<T> {
  const settings = ServerConnection.makeSettings();
  const url = URLExt.join(settings.baseUrl, 'shuyu/api', path);
  const request: RequestInit = { method: init.method ?? 'GET' };
  if (init.body !== undefined) {
    request.body = JSON.stringify(init.body);
    request.headers = { 'Content-Type': 'application/json' };
  }
  const response = await ServerConnection.makeRequest(url, request, settings);
  const text = await response.text();
  let data: any = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = null;
  }
  if (!response.ok) {
    const message = (data && data.message) || response.statusText || 'no answer';
    throw new ShuyuApiError(response.status, message);
  }
  return data as T;
}
