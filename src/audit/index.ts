/**
 * `portcullis audit`: a static security review of a loaded config. The CLI loads the
 * file exactly like `validate` (an invalid config never gets here), then calls
 * auditConfig with the file's text so that findings can name lines.
 */
import type { Config } from '../config/types.js';
import { YamlLocator } from './locate.js';
import { Auditor } from './rules.js';
import { severityRank, type AuditReport, type Finding } from './types.js';

export { RULES, RULE_IDS } from './catalogue.js';
export { FORMATS, failing, formatJson, formatSarif, formatText } from './format.js';
export type { FailOn, Format } from './format.js';
export { SEVERITIES, isSeverity, severityRank } from './types.js';
export type { AuditReport, Finding, RuleInfo, Severity } from './types.js';

function compare(a: Finding, b: Finding): number {
  return (
    severityRank(b.severity) - severityRank(a.severity) ||
    (a.line ?? Number.MAX_SAFE_INTEGER) - (b.line ?? Number.MAX_SAFE_INTEGER) ||
    (a.rule < b.rule ? -1 : a.rule > b.rule ? 1 : 0) ||
    (a.path < b.path ? -1 : a.path > b.path ? 1 : 0) ||
    (a.route < b.route ? -1 : a.route > b.route ? 1 : 0)
  );
}

/**
 * Review a validated config. `text` is the file it was loaded from (for line
 * numbers; without it every line is null), `file` names it in the report.
 */
export function auditConfig(config: Config, text: string | undefined, file: string): AuditReport {
  const locate = new YamlLocator(text ?? '');
  const findings = new Auditor(config, locate).run().sort(compare);
  return { file, findings };
}
