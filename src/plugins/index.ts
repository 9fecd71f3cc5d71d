/**
 * The built-in plugins. Each lives in its own folder (`src/plugins/<name>/index.ts`)
 * and is listed here; user plugins are loaded from `gateway.custom_plugins`.
 */
import type { PluginDefinition } from '../core/plugin.js';
import { PluginRegistry } from '../core/registry.js';
import authz from './authz/index.js';
import basicAuth from './basic-auth/index.js';
import consumerRestriction from './consumer-restriction/index.js';
import forwardAuth from './forward-auth/index.js';
import ipRestriction from './ip-restriction/index.js';
import jwtAuth from './jwt-auth/index.js';
import keyAuth from './key-auth/index.js';
import limitConn from './limit-conn/index.js';
import limitCount from './limit-count/index.js';
import limitMessages from './limit-messages/index.js';
import limitReq from './limit-req/index.js';
import openidConnect from './openid-connect/index.js';
import originRestriction from './origin-restriction/index.js';
import websocketSizeLimit from './websocket-size-limit/index.js';
import websocketValidator from './websocket-validator/index.js';

export const builtinPlugins: readonly PluginDefinition[] = [
  // builtin plugins (one line each, keep sorted)
  authz,
  basicAuth,
  consumerRestriction,
  forwardAuth,
  ipRestriction,
  jwtAuth,
  keyAuth,
  limitConn,
  limitCount,
  limitMessages,
  limitReq,
  openidConnect,
  originRestriction,
  websocketSizeLimit,
  websocketValidator,
];

/** A registry holding every built-in plugin. */
export function createRegistry(): PluginRegistry {
  return new PluginRegistry(builtinPlugins);
}
