/**
 * Parse an `Authorization: Basic <base64(user:pass)>` value (RFC 7617). Pure and
 * total: any input gives credentials or a reason, never an exception. Reasons
 * go to the log, so they never quote the value.
 */

export type BasicCredentials = { readonly username: string; readonly password: string };
export type BasicParseResult = BasicCredentials | { readonly error: string };

const BASE64 = /^[A-Za-z0-9+/]+={0,2}$/;
/** Longer than any sane user:password; Node's header limit bounds it anyway. */
const MAX_LENGTH = 4096;

export function parseBasic(value: string): BasicParseResult {
  const v = value.trim();
  const sp = v.indexOf(' ');
  const scheme = sp === -1 ? v : v.slice(0, sp);
  if (scheme.toLowerCase() !== 'basic') return { error: 'Authorization is not of the Basic scheme' };
  const token = sp === -1 ? '' : v.slice(sp + 1).trim();
  if (token === '') return { error: 'Authorization: Basic without credentials' };
  if (token.length > MAX_LENGTH) return { error: `Basic credentials longer than ${MAX_LENGTH} characters` };
  // Buffer.from(..., 'base64') skips invalid characters silently: check first.
  if (!BASE64.test(token) || token.replace(/=+$/, '').length % 4 === 1) return { error: 'Basic credentials are not valid base64' };
  const decoded = Buffer.from(token, 'base64').toString('utf8');
  const colon = decoded.indexOf(':');
  if (colon === -1) return { error: 'Basic credentials without a colon between user name and password' };
  if (colon === 0) return { error: 'Basic credentials with an empty user name' };
  // The user name ends at the first colon; the password may contain colons (RFC 7617).
  return { username: decoded.slice(0, colon), password: decoded.slice(colon + 1) };
}
