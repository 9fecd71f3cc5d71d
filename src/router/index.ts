export { splitTarget, normalizePath } from './normalize.js';
export type { NormalizeResult, NormalizedPath, RejectedPath, PathRejectReason, SplitTarget } from './normalize.js';
export { Router, checkUri, checkHost, normalizeHost } from './router.js';
export type { RouteMatch } from './router.js';
