// Summarises bench/mta-bench.sh's raw lines: per size, the median of each figure over the
// rounds for logmta, Postfix and the protocol ceiling, every round's figures, and the ratios.
//   node bench/mta-bench-summary.mjs RESULTS_FILE
import { readFileSync } from 'node:fs';

const rows = readFileSync(process.argv[2], 'utf8')
  .trim()
  .split('\n')
  .filter((l) => l.startsWith('system='))
  .map((l) => Object.fromEntries(l.split(' ').map((kv) => kv.split('='))));

const median = (xs) => {
  const v = xs.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  if (v.length === 0) return Number.NaN;
  const m = Math.floor(v.length / 2);
  return v.length % 2 ? v[m] : (v[m - 1] + v[m]) / 2;
};
const fig = (r, k) => (r[k] === undefined || r[k] === '-' ? Number.NaN : Number(r[k]));
const fmt = (x, d = 0) =>
  Number.isFinite(x)
    ? x.toLocaleString('en-US', { maximumFractionDigits: d, minimumFractionDigits: d })
    : '-';

for (const size of [...new Set(rows.map((r) => r.size))]) {
  const of = (sys) => rows.filter((r) => r.system === sys && r.size === size);
  const med = (sys, k) => median(of(sys).map((r) => fig(r, k)));
  const rounds = (sys, k, d = 0) =>
    of(sys)
      .map((r) => fmt(fig(r, k), d))
      .join(' / ');
  console.log(`\n${size} bytes per message`);
  console.log('| | accept msg/s (rounds) | end-to-end msg/s (rounds) | CPU s per 1,000 msgs (rounds) |');
  console.log('|---|---|---|---|');
  for (const sys of ['logmta', 'postfix', 'ceiling', 'logmta-nosync']) {
    if (of(sys).length === 0) continue;
    const cpu =
      sys === 'ceiling' ? '—' : `${fmt(med(sys, 'cpu_s_per_1000'), 3)} (${rounds(sys, 'cpu_s_per_1000', 3)})`;
    const e2e = sys === 'ceiling' ? '—' : `${fmt(med(sys, 'e2e_mps'))} (${rounds(sys, 'e2e_mps')})`;
    console.log(
      `| ${sys} | ${fmt(med(sys, 'accept_mps'))} (${rounds(sys, 'accept_mps')}) | ${e2e} | ${cpu} |`,
    );
  }
  const la = med('logmta', 'accept_mps');
  const pa = med('postfix', 'accept_mps');
  const ca = med('ceiling', 'accept_mps');
  const le = med('logmta', 'e2e_mps');
  const pe = med('postfix', 'e2e_mps');
  console.log(
    `ratios (medians): accept ${fmt(la / pa, 1)}× Postfix, end-to-end ${fmt(le / pe, 1)}× Postfix, ` +
      `logmta accept = ${fmt((100 * la) / ca)}% of the ceiling (Postfix ${fmt((100 * pa) / ca)}%), ` +
      `CPU per message ${fmt(med('postfix', 'cpu_s_per_1000') / med('logmta', 'cpu_s_per_1000'), 1)}× less than Postfix`,
  );
  // Per-round ratios show how much of the ratio is the peer's swing between rounds.
  const lr = of('logmta');
  const pr = of('postfix');
  const per = lr.map((r, i) => (pr[i] ? fmt(fig(r, 'accept_mps') / fig(pr[i], 'accept_mps'), 1) : '-'));
  console.log(`accept ratio per round: ${per.join(' / ')}`);
  const bad = of('logmta')
    .concat(of('postfix'), of('ceiling'))
    .filter((r) => r.src_rc !== '0' || r.drain_ok !== '1');
  if (bad.length > 0)
    console.log(`WARNING: ${bad.length} run(s) did not complete (src_rc/drain_ok): figures partial`);
}
