/**
 * Accepted risks: `portcullis audit --accept FILE`. A finding a team has reviewed
 * and decided to live with is listed in a YAML file next to the config, with the
 * reason (and, if it should be looked at again, a date it expires):
 *
 *   - rule: no-origin-restriction
 *     route: internal-feed
 *     reason: server-to-server only; no browser can reach this listener
 *     expires: 2027-06-30
 *
 * A matching finding is reported as accepted (with its reason) and no longer
 * counts for --fail-on; in SARIF it carries an external suppression. An entry
 * that matches nothing, or has expired, is reported so the list does not rot.
 * The file is checked like a config: file:line:col, YAML path, expected and
 * found, exit code 2.
 */
import { readFile } from 'node:fs/promises';
import { parseDocument } from 'yaml';
import { ConfigError, ajvIssues, describeValue, unescapePointer, type ConfigIssue, type IssueContext } from '../config/errors.js';
import { createAjv } from '../core/ajv.js';
import { RULES } from './catalogue.js';
import { YamlLocator, displayPath, type YamlPath } from './locate.js';
import type { Finding } from './types.js';

export interface Acceptance {
  rule: string;
  /** The finding's subject, as in the report: a route id, `gateway`, `admin`, `consumer:alice`... */
  route: string;
  /** Only the finding at this YAML path (a rule can report several places of one subject). */
  path?: string;
  reason: string;
  /** YYYY-MM-DD: from that day (UTC) on, the entry no longer applies. */
  expires?: string;
  /** Where the entry is written in the file. */
  line: number | null;
}

export interface AcceptedFinding extends Finding {
  reason: string;
  expires?: string;
}

export interface AcceptanceResult {
  /** The file as given on the command line. */
  file: string;
  accepted: AcceptedFinding[];
  /** Entries that matched no finding. */
  unused: Acceptance[];
  /** Entries past their date: they applied to nothing. */
  expired: Acceptance[];
}

const schema = {
  type: 'array',
  maxItems: 10_000,
  items: {
    type: 'object',
    additionalProperties: false,
    required: ['rule', 'route', 'reason'],
    properties: {
      rule: { enum: RULES.map((r) => r.id), description: 'The rule id of the finding.' },
      route: { type: 'string', minLength: 1, maxLength: 256, description: 'The subject of the finding (route id, gateway, admin, consumer:NAME...).' },
      path: { type: 'string', minLength: 1, maxLength: 1024, description: 'The YAML path of the finding.' },
      reason: { type: 'string', minLength: 1, maxLength: 1000, description: 'Why the risk is accepted.' },
      expires: { type: 'string', pattern: '^\\d{4}-\\d{2}-\\d{2}$', description: 'A date, YYYY-MM-DD.' },
    },
  },
} as const;

/** Read and check an acceptance file; throws ConfigError (exit code 2) naming every problem. */
export async function loadAcceptances(file: string): Promise<Acceptance[]> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    throw new ConfigError(file, [{ file, path: '', message: `cannot read the acceptance file: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}` }]);
  }
  return parseAcceptances(text, file);
}

export function parseAcceptances(text: string, file: string): Acceptance[] {
  const doc = parseDocument(text, { prettyErrors: true, uniqueKeys: true });
  if (doc.errors.length > 0) {
    throw new ConfigError(
      file,
      doc.errors.map((e) => ({ file, line: e.linePos?.[0].line, column: e.linePos?.[0].col, path: '', message: `not valid YAML: ${(e.message.split('\n')[0] ?? '').replace(/ at line \d+, column \d+:?$/, '')}` })),
    );
  }
  const data: unknown = doc.toJS() ?? [];
  const locator = new YamlLocator(text);
  const validate = createAjv().compile(schema);
  if (!validate(data)) {
    const ctx: IssueContext = {
      file,
      locate: (pointer) => {
        const path = toPath(pointer);
        return { line: locator.line(path) ?? undefined, path: displayPath(path) };
      },
      describeFound: (_pointer, value, style) => describeValue(value, style),
    };
    throw new ConfigError(file, ajvIssues(validate.errors ?? [], data, '', schema, ctx));
  }
  const entries = data as Omit<Acceptance, 'line'>[];
  const issues: ConfigIssue[] = [];
  entries.forEach((e, i) => {
    if (e.reason.trim() === '') {
      issues.push({ file, line: locator.line([i, 'reason']) ?? undefined, path: `[${i}].reason`, message: 'expected a reason (why the risk is accepted), found only blanks' });
    }
    if (e.expires !== undefined && Number.isNaN(Date.parse(`${e.expires}T00:00:00Z`))) {
      issues.push({ file, line: locator.line([i, 'expires']) ?? undefined, path: `[${i}].expires`, message: `expected a date YYYY-MM-DD, found "${e.expires}"` });
    }
  });
  if (issues.length > 0) throw new ConfigError(file, issues);
  return entries.map((e, i) => ({ ...e, line: locator.line([i]) }));
}

/**
 * Split findings into those still open and those accepted. `today`: a UTC date
 * YYYY-MM-DD (an entry expiring today no longer applies).
 */
export function applyAcceptances(
  findings: readonly Finding[],
  entries: readonly Acceptance[],
  file: string,
  today = new Date().toISOString().slice(0, 10),
): { open: Finding[]; result: AcceptanceResult } {
  const live = entries.filter((e) => e.expires === undefined || e.expires > today);
  const expired = entries.filter((e) => e.expires !== undefined && e.expires <= today);
  const used = new Set<Acceptance>();
  const open: Finding[] = [];
  const accepted: AcceptedFinding[] = [];
  for (const f of findings) {
    const e = live.find((a) => a.rule === f.rule && a.route === f.route && (a.path === undefined || a.path === f.path));
    if (!e) {
      open.push(f);
      continue;
    }
    used.add(e);
    accepted.push({ ...f, reason: e.reason, ...(e.expires !== undefined ? { expires: e.expires } : {}) });
  }
  return { open, result: { file, accepted, unused: live.filter((e) => !used.has(e)), expired } };
}

/** `/0/rule` -> [0, 'rule']. */
function toPath(pointer: string): YamlPath {
  if (pointer === '') return [];
  return pointer
    .slice(1)
    .split('/')
    .map((s) => unescapePointer(s))
    .map((s) => (/^\d+$/.test(s) ? Number(s) : s));
}
