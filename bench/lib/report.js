// Medians over rounds, ratios to `direct` and `nginx`, the Markdown report
// and the JSON document.

export function median(values) {
  const v = values.filter((x) => typeof x === 'number' && Number.isFinite(x)).sort((a, b) => a - b);
  if (v.length === 0) return null;
  const mid = Math.floor(v.length / 2);
  return v.length % 2 ? v[mid] : (v[mid - 1] + v[mid]) / 2;
}

/** Relative spread (max-min)/median of the rounds, as a percentage. */
function spreadPct(values) {
  const v = values.filter((x) => typeof x === 'number' && Number.isFinite(x));
  const m = median(v);
  if (v.length < 2 || !m) return null;
  return (100 * (Math.max(...v) - Math.min(...v))) / Math.abs(m);
}

/**
 * Turns the raw rounds of one case into the JSON cell of each target:
 * {status:'ok', median, spread_pct, ratios:{key:{direct,nginx}}, notes, rounds, errors}
 * or {status:'skipped', reason}. A cell with `compareTo` (a target name, e.g.
 * the same route without auth) also gets `compare_to` and, per figure, the
 * ratio to that target: ratios[key][compareTo].
 */
export function summarizeCase(c, cells) {
  const out = {};
  for (const [name, cell] of Object.entries(cells)) {
    if (cell.status === 'skipped') {
      out[name] = { status: 'skipped', reason: cell.reason };
      continue;
    }
    const ok = cell.rounds.filter((r) => r.figures);
    if (ok.length === 0) {
      out[name] = { status: 'skipped', reason: `every round failed: ${cell.errors[0] ?? 'unknown error'}`, errors: cell.errors };
      continue;
    }
    const med = {};
    const spread = {};
    const notes = {};
    for (const f of c.figures) {
      const vals = ok.map((r) => r.figures[f.key]);
      med[f.key] = median(vals);
      spread[f.key] = spreadPct(vals);
      if (med[f.key] === null) notes[f.key] = f.proxy && cell.noProxy ? 'no proxy process' : 'not measured';
    }
    out[name] = { status: 'ok', median: med, spread_pct: spread, notes, rounds: cell.rounds, errors: cell.errors };
    if (cell.compareTo) out[name].compare_to = cell.compareTo;
  }
  for (const cell of Object.values(out)) {
    if (cell.status !== 'ok') continue;
    cell.ratios = {};
    for (const f of c.figures) {
      const v = cell.median[f.key];
      const ratio = (base) => {
        const b = out[base]?.status === 'ok' ? out[base].median[f.key] : null;
        return typeof v === 'number' && typeof b === 'number' && b !== 0 ? v / b : null;
      };
      cell.ratios[f.key] = { direct: ratio('direct'), nginx: ratio('nginx') };
      if (cell.compare_to) cell.ratios[f.key][cell.compare_to] = ratio(cell.compare_to);
    }
  }
  return out;
}

function fmtNum(v, digits) {
  if (v === null || v === undefined) return 'n/a';
  return v.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits });
}

function fmtRatio(r) {
  return r === null || r === undefined ? '–' : r.toFixed(2);
}

const escapeCell = (s) => String(s).replace(/\|/g, '\\|').replace(/\n/g, ' ');

/** Figures that describe the test bed rather than the target: shown without ratios. */
const NO_RATIO = new Set(['loadgen_cpu_pct', 'other_cpu_pct', 'errors']);

/** The Markdown report of a finished run (the same figures as the JSON). */
export function markdown(doc) {
  const lines = [];
  const targets = doc.targets.map((t) => t.name);
  lines.push(`## Portcullis benchmark (${doc.profile}${doc.profile === 'quick' ? ': smoke test, short windows' : ''})`);
  lines.push('');
  lines.push(
    `${doc.machine.cpus} × ${doc.machine.cpuModel}, ${doc.machine.memGiB} GiB, Linux ${doc.machine.kernel}; node ${doc.versions.node}, ws ${doc.versions.ws}; ${doc.versions.nginx ?? 'nginx: not available'}; ${doc.versions.haproxy ?? 'haproxy: not available'}.`,
  );
  lines.push(
    `${doc.rounds} round(s), targets alternated in each round (${targets.join(', ')}), medians shown; pinning: ${doc.pinning}. Cells read \`value [ratio to direct / ratio to nginx]\`; proxy figures of \`direct\` are n/a (no proxy process); load-gen CPU, other load and errors describe the test bed and carry no ratio.`,
  );
  lines.push('');

  // Headline: the figures that repeat within a few percent.
  const headline = [];
  for (const c of doc.cases) for (const f of c.figures) if (f.headline) headline.push({ c, f });
  lines.push('### Headline: proxy cost (lower is better)');
  lines.push('');
  lines.push(`| target | ${headline.map(({ c, f }) => `${c.id}: ${f.label} ${f.unit}`).join(' | ')} |`);
  lines.push(`|---|${headline.map(() => '---:').join('|')}|`);
  for (const name of targets) {
    const cells = headline.map(({ c, f }) => {
      const cell = c.results[name];
      if (!cell || cell.status !== 'ok') return 'skipped';
      const v = cell.median[f.key];
      if (v === null) return 'n/a';
      const vsBase = cell.compare_to ? `, ${fmtRatio(cell.ratios[f.key][cell.compare_to])}× ${cell.compare_to}` : '';
      return `${fmtNum(v, f.digits)} [${fmtRatio(cell.ratios[f.key].nginx)}× nginx${vsBase}]`;
    });
    lines.push(`| ${name} | ${cells.join(' | ')} |`);
  }
  lines.push('');

  for (const c of doc.cases) {
    lines.push(`### ${c.title}`);
    lines.push('');
    lines.push(`${c.describe}.${c.clamped ? ` **${c.clamped}.**` : ''}`);
    lines.push('');
    lines.push(`| target | ${c.figures.map((f) => `${f.label} (${f.unit})`).join(' | ')} |`);
    lines.push(`|---|${c.figures.map(() => '---:').join('|')}|`);
    const skipped = [];
    for (const name of targets) {
      const cell = c.results[name];
      if (!cell || cell.status !== 'ok') {
        skipped.push(`\`${name}\`: ${cell?.reason ?? 'not run'}`);
        continue;
      }
      const cells = c.figures.map((f) => {
        const v = cell.median[f.key];
        if (v === null) return 'n/a';
        if (NO_RATIO.has(f.key)) return fmtNum(v, f.digits);
        const r = cell.ratios[f.key];
        return `${fmtNum(v, f.digits)} [${fmtRatio(r.direct)} / ${fmtRatio(r.nginx)}]`;
      });
      lines.push(`| ${name} | ${cells.join(' | ')} |`);
    }
    lines.push('');
    // Targets that are one feature added to another: the cost of the feature.
    const compared = targets.filter((name) => c.results[name]?.status === 'ok' && c.results[name].compare_to);
    for (const name of compared) {
      const cell = c.results[name];
      const parts = c.figures
        .filter((f) => !NO_RATIO.has(f.key) && typeof cell.ratios[f.key][cell.compare_to] === 'number')
        .map((f) => `${f.label} ${fmtRatio(cell.ratios[f.key][cell.compare_to])}×`);
      lines.push(
        parts.length > 0
          ? `\`${name}\` relative to \`${cell.compare_to}\` (the same route without it): ${parts.join(', ')}.`
          : `\`${name}\` relative to \`${cell.compare_to}\`: no ratio (\`${cell.compare_to}\` was not measured).`,
      );
      lines.push('');
    }
    if (skipped.length > 0) {
      lines.push(`Skipped: ${skipped.map(escapeCell).join('; ')}.`);
      lines.push('');
    }
  }
  if (doc.warnings.length > 0) {
    lines.push('### Warnings');
    lines.push('');
    for (const w of doc.warnings) lines.push(`- ${w}`);
    lines.push('');
  }
  return lines.join('\n');
}
