/**
 * The `audit` command between cli.ts (argv, loading, exit codes) and the auditor:
 * options checked, the file read again for line numbers, accepted risks set
 * aside, the report formatted.
 */
import { readFile } from 'node:fs/promises';
import type { Config } from '../config/types.js';
import { VERSION } from '../version.js';
import { FORMATS, failing, formatJson, formatSarif, formatText, type FailOn, type Format } from './format.js';
import { applyAcceptances, loadAcceptances } from './accept.js';
import { auditConfig } from './index.js';
import { SEVERITIES, isSeverity } from './types.js';

export interface AuditOptions {
  format: Format;
  failOn: FailOn;
  /** --accept: a file of accepted risks (accept.ts). */
  accept?: string;
}

/** `--format`, `--fail-on` and `--accept` checked; a usage message when wrong. */
export function auditOptions(format: string | undefined, failOn: string | undefined, accept?: string): AuditOptions | string {
  const f = format ?? 'text';
  if (!(FORMATS as readonly string[]).includes(f)) return `--format must be one of ${FORMATS.join(', ')} (got "${f}")`;
  const fo = failOn ?? 'high';
  if (fo !== 'none' && !isSeverity(fo)) return `--fail-on must be one of ${[...SEVERITIES, 'none'].join(', ')} (got "${fo}")`;
  if (accept === '') return '--accept needs a file';
  return { format: f as Format, failOn: fo as FailOn, ...(accept !== undefined ? { accept } : {}) };
}

/**
 * Audit a loaded config. `file` is the path as given (named in the output); the
 * text is read again from config.source for line numbers. `failed`: something at
 * or above --fail-on was found (exit code 1).
 */
export async function runAudit(config: Config, file: string, opts: AuditOptions): Promise<{ output: string; failed: boolean }> {
  let text: string | undefined;
  try {
    text = await readFile(config.source, 'utf8');
  } catch {
    text = undefined; // read a moment ago by the loader; without it findings have no line
  }
  // An invalid acceptance file throws ConfigError: cli.ts prints it and exits 2.
  const accepted = opts.accept !== undefined ? await loadAcceptances(opts.accept) : undefined;
  const report = auditConfig(config, text, file);
  if (accepted && opts.accept !== undefined) {
    const { open, result } = applyAcceptances(report.findings, accepted, opts.accept);
    report.findings = open;
    report.acceptances = result;
  }
  const output =
    opts.format === 'json'
      ? formatJson(report, opts.failOn, VERSION)
      : opts.format === 'sarif'
        ? formatSarif(report, VERSION)
        : formatText(report, opts.failOn);
  return { output, failed: failing(report.findings, opts.failOn).length > 0 };
}
