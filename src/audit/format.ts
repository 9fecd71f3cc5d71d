/**
 * The three outputs of `portcullis audit`: text for people (grouped by route, most
 * severe first, a summary line), JSON for scripts (every field, stable order), and
 * SARIF 2.1.0 for code-scanning tools.
 */
import { isAbsolute, sep } from 'node:path';
import { pathToFileURL } from 'node:url';
import type { Acceptance } from './accept.js';
import { RULES } from './catalogue.js';
import { SEVERITIES, severityRank, type AuditReport, type Finding, type Severity } from './types.js';

/** `--fail-on`: a severity, or `none` (never fail). */
export type FailOn = Severity | 'none';

export const FORMATS = ['text', 'json', 'sarif'] as const;
export type Format = (typeof FORMATS)[number];

/** Findings at or above the threshold. */
export function failing(findings: readonly Finding[], failOn: FailOn): Finding[] {
  if (failOn === 'none') return [];
  const min = severityRank(failOn);
  return findings.filter((f) => severityRank(f.severity) >= min);
}

function counts(findings: readonly Finding[]): Record<Severity, number> {
  const out = { critical: 0, high: 0, medium: 0, low: 0, info: 0 };
  for (const f of findings) out[f.severity]++;
  return out;
}

function summaryLine(findings: readonly Finding[], failOn: FailOn, accepted: number): string {
  const also = accepted > 0 ? `; ${accepted} accepted` : '';
  if (findings.length === 0) return `no findings${also}`;
  const c = counts(findings);
  const parts = SEVERITIES.filter((s) => c[s] > 0).map((s) => `${c[s]} ${s}`);
  const bad = failing(findings, failOn).length;
  const verdict = failOn === 'none' ? '--fail-on none' : `${bad} at or above --fail-on ${failOn}`;
  return `${findings.length} finding${findings.length === 1 ? '' : 's'} (${parts.join(', ')}); ${verdict}${also}`;
}

/** An acceptance entry as the text output names it. */
function entryText(e: Acceptance): string {
  return `${e.rule} on ${e.route}${e.path !== undefined ? ` at ${e.path}` : ''}${e.line !== null ? ` (line ${e.line})` : ''}`;
}

/** `route chat`, `gateway`, `consumer alice`, `global rule limits`... */
function groupTitle(subject: string): string {
  const colon = subject.indexOf(':');
  const kind = colon > 0 ? subject.slice(0, colon) : '';
  switch (kind) {
    case 'consumer':
    case 'upstream':
      return `${kind} ${subject.slice(colon + 1)}`;
    case 'global_rule':
      return `global rule ${subject.slice(colon + 1)}`;
    case 'consumer_group':
      return `consumer group ${subject.slice(colon + 1)}`;
    default:
      return ['gateway', 'admin', 'metrics'].includes(subject) ? subject : `route ${subject}`;
  }
}

export function formatText(report: AuditReport, failOn: FailOn): string {
  const lines = [`portcullis audit: ${report.file}`];
  const groups = new Map<string, Finding[]>();
  // Findings come most severe first, so groups do too.
  for (const f of report.findings) {
    const list = groups.get(f.route) ?? [];
    list.push(f);
    groups.set(f.route, list);
  }
  const width = Math.max(0, ...report.findings.map((f) => f.rule.length));
  for (const [subject, list] of groups) {
    lines.push('', groupTitle(subject));
    for (const f of list) {
      const where = f.line === null ? f.path : `${f.path} (line ${f.line})`;
      lines.push(`  ${f.severity.toUpperCase().padEnd(8)} ${f.rule.padEnd(width)}  ${where}`);
      lines.push(`           ${f.message}`);
      lines.push(`           fix: ${f.fix}`);
    }
  }
  const acc = report.acceptances;
  if (acc) {
    if (acc.accepted.length > 0) {
      lines.push('', `accepted in ${acc.file} (not counted for --fail-on)`);
      for (const f of acc.accepted) {
        const where = f.line === null ? f.path : `${f.path} (line ${f.line})`;
        lines.push(`  ${f.severity.toUpperCase().padEnd(8)} ${f.rule}  ${groupTitle(f.route)}  ${where}`);
        lines.push(`           reason: ${f.reason}${f.expires !== undefined ? ` (until ${f.expires})` : ''}`);
      }
    }
    for (const e of acc.unused) lines.push('', `warning: ${acc.file}: accepts ${entryText(e)}, which is not found: remove the entry`);
    for (const e of acc.expired) lines.push('', `warning: ${acc.file}: acceptance of ${entryText(e)} expired on ${e.expires}: review it`);
  }
  lines.push('', summaryLine(report.findings, failOn, acc?.accepted.length ?? 0));
  return `${lines.join('\n')}\n`;
}

function findingJson(f: Finding): Record<string, unknown> {
  return { rule: f.rule, severity: f.severity, route: f.route, path: f.path, line: f.line, message: f.message, fix: f.fix };
}

function entryJson(e: Acceptance): Record<string, unknown> {
  return { rule: e.rule, route: e.route, ...(e.path !== undefined ? { path: e.path } : {}), reason: e.reason, ...(e.expires !== undefined ? { expires: e.expires } : {}), line: e.line };
}

export function formatJson(report: AuditReport, failOn: FailOn, version: string): string {
  const out = {
    tool: 'portcullis audit',
    version,
    file: report.file,
    fail_on: failOn,
    failed: failing(report.findings, failOn).length > 0,
    summary: { ...counts(report.findings), total: report.findings.length, ...(report.acceptances ? { accepted: report.acceptances.accepted.length } : {}) },
    findings: report.findings.map(findingJson),
    ...(report.acceptances
      ? {
          acceptances: {
            file: report.acceptances.file,
            accepted: report.acceptances.accepted.map((f) => ({ ...findingJson(f), reason: f.reason, ...(f.expires !== undefined ? { expires: f.expires } : {}) })),
            unused: report.acceptances.unused.map(entryJson),
            expired: report.acceptances.expired.map(entryJson),
          },
        }
      : {}),
  };
  return `${JSON.stringify(out, null, 2)}\n`;
}

const SARIF_LEVEL: Record<Severity, 'error' | 'warning' | 'note'> = {
  critical: 'error',
  high: 'error',
  medium: 'warning',
  low: 'note',
  info: 'note',
};

/** GitHub code scanning reads `security-severity` (0.1-10) to rank security results. */
const SECURITY_SEVERITY: Record<Severity, string> = {
  critical: '9.5',
  high: '8.0',
  medium: '5.5',
  low: '3.0',
  info: '0.1',
};

/** The config file as a SARIF artifact location: relative to the source root when given relative. */
function artifactLocation(file: string): { uri: string; uriBaseId?: string } {
  if (isAbsolute(file)) return { uri: pathToFileURL(file).href };
  const posix = file.split(sep).join('/').replace(/^\.\//, '');
  return { uri: posix.split('/').map(encodeURIComponent).join('/'), uriBaseId: '%SRCROOT%' };
}

function sarifResult(f: Finding, ruleIndex: ReadonlyMap<string, number>, location: { uri: string; uriBaseId?: string }): Record<string, unknown> {
  return {
    ruleId: f.rule,
    ruleIndex: ruleIndex.get(f.rule) ?? -1,
    level: SARIF_LEVEL[f.severity],
    message: { text: `${f.message}. Fix: ${f.fix}.` },
    locations: [
      {
        physicalLocation: {
          artifactLocation: { ...location, index: 0 },
          ...(f.line !== null ? { region: { startLine: f.line } } : {}),
        },
        logicalLocations: [{ name: f.path, kind: 'member' }],
      },
    ],
    partialFingerprints: { 'portcullisFinding/v1': `${f.rule}|${f.route}|${f.path}` },
    properties: { severity: f.severity, route: f.route, path: f.path, fix: f.fix },
  };
}

export function formatSarif(report: AuditReport, version: string): string {
  const ruleIndex = new Map(RULES.map((r, i) => [r.id, i]));
  const location = artifactLocation(report.file);
  const sarif = {
    $schema: 'https://json.schemastore.org/sarif-2.1.0.json',
    version: '2.1.0',
    runs: [
      {
        tool: {
          driver: {
            name: 'portcullis-audit',
            fullName: 'portcullis audit: static security review of a Portcullis config',
            version,
            semanticVersion: version,
            rules: RULES.map((r) => ({
              id: r.id,
              name: r.id
                .split('-')
                .map((w) => w.charAt(0).toUpperCase() + w.slice(1))
                .join(''),
              shortDescription: { text: r.title },
              fullDescription: { text: r.title },
              help: { text: r.help },
              defaultConfiguration: { level: SARIF_LEVEL[r.severity] },
              properties: { tags: ['security'], 'security-severity': SECURITY_SEVERITY[r.severity] },
            })),
          },
        },
        artifacts: [{ location }],
        results: [
          ...report.findings.map((f) => sarifResult(f, ruleIndex, location)),
          // Accepted findings stay in the log, suppressed with the reason (a SARIF suppression object, 2.1.0 §3.35).
          ...(report.acceptances?.accepted ?? []).map((f) => ({
            ...sarifResult(f, ruleIndex, location),
            suppressions: [{ kind: 'external', status: 'accepted', justification: f.reason }],
          })),
        ],
      },
    ],
  };
  return `${JSON.stringify(sarif, null, 2)}\n`;
}
