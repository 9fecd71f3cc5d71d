import type { AcceptanceResult } from './accept.js';

/**
 * What `portcullis audit` reports: findings, their severities, and the rules that
 * produce them (docs/audit.md lists every rule with its fix).
 */

/** Most severe first. */
export const SEVERITIES = ['critical', 'high', 'medium', 'low', 'info'] as const;

export type Severity = (typeof SEVERITIES)[number];

/** Larger is more severe: critical 4 ... info 0. */
export function severityRank(s: Severity): number {
  return SEVERITIES.length - 1 - SEVERITIES.indexOf(s);
}

export function isSeverity(s: string): s is Severity {
  return (SEVERITIES as readonly string[]).includes(s);
}

/** One problem found in a config. Every field is stable (the JSON output is exactly this). */
export interface Finding {
  /** The rule's id, e.g. `no-authentication`. */
  rule: string;
  severity: Severity;
  /**
   * What the finding is about: a route id, or `gateway`, `admin`, `metrics`,
   * `global_rule:<id>`, `consumer:<username>`, `upstream:<id>`.
   */
  route: string;
  /** YAML path of the setting concerned (or of the place to fix), e.g. `routes[2].plugins`. */
  path: string;
  /** 1-based line of `path` in the file (of its nearest written ancestor when it is not written); null when unknown. */
  line: number | null;
  /** What is wrong. Never contains a secret value. */
  message: string;
  /** One line: how to fix it. */
  fix: string;
}

/** A rule of the catalogue. */
export interface RuleInfo {
  id: string;
  /** The severity it usually reports (some findings of a rule are lower or higher; see docs/audit.md). */
  severity: Severity;
  /** One sentence: what the rule looks for. */
  title: string;
  /** The general fix. */
  help: string;
}

export interface AuditReport {
  /** The config file as given on the command line. */
  file: string;
  /** Sorted: most severe first, then by line, rule and path. Without those an --accept file accepted. */
  findings: Finding[];
  /** With --accept: the accepted findings (same order) and the entries that matched nothing or expired. */
  acceptances?: AcceptanceResult;
}
