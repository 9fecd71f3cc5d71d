/**
 * An upstream at run time: its balancer and its keep-alive connection pool.
 * Built once per config; shared by every route that names it.
 */
import http from 'node:http';
import https from 'node:https';
import { isIP } from 'node:net';
import type { UpstreamConfig, UpstreamNode } from '../config/types.js';
import { Balancer } from './balancer.js';

export class Upstream {
  readonly config: UpstreamConfig;
  readonly balancer: Balancer;
  /** Keep-alive pool for plain HTTP and SSE requests. */
  readonly agent: http.Agent;

  constructor(config: UpstreamConfig) {
    this.config = config;
    this.balancer = new Balancer(config.nodes);
    const poolOpts = {
      keepAlive: true,
      maxFreeSockets: config.keepalive_pool.size,
      timeout: config.keepalive_pool.idle_timeout * 1000,
      scheduling: 'lifo' as const,
    };
    this.agent =
      config.scheme === 'https' ? new https.Agent({ ...poolOpts, ...this.tlsOptions() }) : new http.Agent(poolOpts);
  }

  get secure(): boolean {
    return this.config.scheme === 'https';
  }

  tlsOptions(): { rejectUnauthorized: boolean; ca?: Buffer; servername?: string } {
    const tls = this.config.tls;
    return {
      rejectUnauthorized: tls.verify,
      ...(tls.caPem ? { ca: tls.caPem } : {}),
      ...(tls.servername ? { servername: tls.servername } : {}),
    };
  }

  /**
   * The Host header the upstream receives, per pass_host. An HTTP/1.0 client may send
   * no Host; the request the gateway sends is HTTP/1.1, which must carry one (RFC 9112
   * 3.2), so the node's address stands in.
   */
  hostHeader(clientHost: string | undefined, node: UpstreamNode): string {
    switch (this.config.pass_host) {
      case 'node':
        return hostPort(node);
      case 'rewrite':
        return this.config.upstream_host ?? hostPort(node);
      default:
        return clientHost ?? hostPort(node);
    }
  }

  /**
   * The TLS server name for a connection carrying `hostHeader`: `tls.servername`
   * when configured, else the Host header's name (as Node's https agent does), never
   * an IP address.
   */
  servername(hostHeader: string): string | undefined {
    if (this.config.tls.servername) return this.config.tls.servername;
    const name = hostHeader.startsWith('[') ? '' : hostHeader.replace(/:\d+$/, '');
    return name !== '' && isIP(name) === 0 ? name : undefined;
  }

  close(): void {
    this.agent.destroy();
  }
}

function hostPort(node: UpstreamNode): string {
  const host = node.host.includes(':') ? `[${node.host}]` : node.host;
  return `${host}:${node.port}`;
}

