// Summaries of V8 CPU profiles (node --cpu-prof) taken with `run.js --cpu-prof`:
// self time per function and per file, idle time left out.

import { readFileSync } from 'node:fs';
import path from 'node:path';

function shortUrl(url, repoRoot) {
  if (!url) return '';
  let u = url.replace(/^file:\/\//, '');
  if (repoRoot && u.startsWith(repoRoot)) u = path.relative(repoRoot, u);
  return u;
}

/** Aggregates one or more .cpuprofile files into self time (ms) per function and per file. */
export function summarizeProfiles(files, repoRoot) {
  const byFunction = new Map();
  const byFile = new Map();
  let totalMs = 0;
  for (const file of files) {
    const prof = JSON.parse(readFileSync(file, 'utf8'));
    const nodes = new Map(prof.nodes.map((n) => [n.id, n]));
    const self = new Map();
    const samples = prof.samples ?? [];
    const deltas = prof.timeDeltas ?? [];
    for (let i = 0; i < samples.length; i++) {
      // The delta after a sample is the time that sample stood for.
      const dt = (deltas[i + 1] ?? deltas[i] ?? 0) / 1000;
      self.set(samples[i], (self.get(samples[i]) ?? 0) + dt);
    }
    for (const [id, ms] of self) {
      const cf = nodes.get(id)?.callFrame ?? {};
      const name = cf.functionName || '(anonymous)';
      if (name === '(idle)') continue;
      const url = shortUrl(cf.url, repoRoot);
      const fnKey = url ? `${name} ${url}:${(cf.lineNumber ?? 0) + 1}` : name;
      const fileKey = url ? url.replace(/^node:internal\/.*$/, (m) => m.split('/').slice(0, 3).join('/')) : name;
      byFunction.set(fnKey, (byFunction.get(fnKey) ?? 0) + ms);
      byFile.set(fileKey, (byFile.get(fileKey) ?? 0) + ms);
      totalMs += ms;
    }
  }
  const top = (map, n) =>
    [...map.entries()]
      .sort((a, b) => b[1] - a[1])
      .slice(0, n)
      .map(([key, ms]) => ({ key, ms, pct: totalMs > 0 ? (100 * ms) / totalMs : 0 }));
  return { totalMs, functions: top(byFunction, 15), files: top(byFile, 12) };
}

export function profileMarkdown(title, summary) {
  const lines = [`#### ${title} (${summary.totalMs.toFixed(0)} ms of CPU samples, idle excluded)`, ''];
  lines.push('| self % | function |', '|---:|---|');
  for (const f of summary.functions) lines.push(`| ${f.pct.toFixed(1)} | \`${f.key}\` |`);
  lines.push('', '| self % | file |', '|---:|---|');
  for (const f of summary.files) lines.push(`| ${f.pct.toFixed(1)} | \`${f.key}\` |`);
  lines.push('');
  return lines.join('\n');
}
