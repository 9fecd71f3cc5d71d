/**
 * Calls to the OpenID provider: bounded in time (`timeout`) and in size (a
 * provider answer larger than MAX_BODY is refused), no redirects followed (a
 * redirect would carry the client credentials of an introspection elsewhere).
 *
 * Every failure to reach the provider or to read a usable answer is a
 * ProviderUnavailable, which the plugin turns into 503 AUTH_UNAVAILABLE.
 * Messages name the endpoint and the cause, never a token or a secret.
 */

/** Largest provider answer read (discovery, JWKS, introspection). */
export const MAX_BODY = 1024 * 1024;

/** The provider could not be reached or gave no usable answer. */
export class ProviderUnavailable extends Error {
  override readonly name = 'ProviderUnavailable';
}

export interface ProviderResponse {
  readonly status: number;
  readonly body: unknown;
}

/**
 * GET or POST `url` and parse the JSON answer. Resolves with the status and the
 * parsed body (undefined when the body is not JSON); rejects with
 * ProviderUnavailable when the provider cannot be reached in time.
 */
export async function callProvider(
  url: string,
  timeoutMs: number,
  init: { method?: 'GET' | 'POST'; headers?: Record<string, string>; body?: string } = {},
): Promise<ProviderResponse> {
  const what = `${init.method ?? 'GET'} ${describeUrl(url)}`;
  let res: Response;
  try {
    res = await fetch(url, {
      method: init.method ?? 'GET',
      headers: { accept: 'application/json', ...init.headers },
      ...(init.body !== undefined ? { body: init.body } : {}),
      redirect: 'manual',
      signal: AbortSignal.timeout(timeoutMs),
    });
  } catch (err) {
    throw new ProviderUnavailable(`${what}: ${causeOf(err)}`);
  }
  if (res.status >= 300 && res.status < 400) {
    await res.body?.cancel().catch(ignore);
    throw new ProviderUnavailable(`${what}: redirected (${res.status}); redirects are not followed`);
  }
  let text: string;
  try {
    text = await readBounded(res, MAX_BODY);
  } catch (err) {
    throw new ProviderUnavailable(`${what}: ${causeOf(err)}`);
  }
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch {
    body = undefined;
  }
  return { status: res.status, body };
}

async function readBounded(res: Response, limit: number): Promise<string> {
  const declared = Number(res.headers.get('content-length'));
  if (Number.isFinite(declared) && declared > limit) {
    await res.body?.cancel().catch(ignore);
    throw new Error(`answer of ${declared} bytes exceeds ${limit}`);
  }
  if (!res.body) return '';
  const reader = res.body.getReader();
  const chunks: Uint8Array[] = [];
  let size = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    size += value.byteLength;
    if (size > limit) {
      await reader.cancel().catch(ignore);
      throw new Error(`answer exceeds ${limit} bytes`);
    }
    chunks.push(value);
  }
  return Buffer.concat(chunks).toString('utf8');
}

/** Scheme, host and path of a URL: no userinfo, no query (either could hold a secret). */
export function describeUrl(url: string): string {
  try {
    const u = new URL(url);
    return `${u.protocol}//${u.host}${u.pathname}`;
  } catch {
    return '(invalid URL)';
  }
}

function causeOf(err: unknown): string {
  if (err instanceof Error) {
    if (err.name === 'TimeoutError') return 'timed out';
    const cause = (err as Error & { cause?: unknown }).cause;
    if (cause instanceof Error) {
      const code = (cause as NodeJS.ErrnoException).code;
      return code ? `${err.message} (${code})` : `${err.message} (${cause.message})`;
    }
    return err.message;
  }
  return String(err);
}

function ignore(): void {}
