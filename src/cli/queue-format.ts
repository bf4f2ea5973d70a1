// Text output of `logmta queue`: the mailq-like list, the detail of one message, and the
// qshape-like summary. Pure: values in, strings out (times in UTC so output is reproducible).
import type { MessageView, PieceView, Summary } from '../queue/index.js';

function utc(ms: number): string {
  return new Date(ms)
    .toISOString()
    .replace('T', ' ')
    .replace(/\.\d+Z$/, '');
}

export function age(ms: number): string {
  const s = Math.max(0, Math.floor(ms / 1000));
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m`;
  if (s < 86_400) return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m`;
  return `${Math.floor(s / 86_400)}d${Math.floor((s % 86_400) / 3600)}h`;
}

/** mailq's status mark: "*" being delivered, "!" held by the operator, "#" held for ETRN/ODMR. */
function mark(m: MessageView): string {
  if (m.pieces.some((p) => p.active)) return '*';
  if (m.pieces.some((p) => p.laneKind === 'hold')) return '!';
  if (m.pieces.some((p) => p.laneKind === 'held')) return '#';
  return ' ';
}

function pieceLine(p: PieceView, now: number): string {
  const parts = [`lane ${p.lane}`];
  if (p.attempts > 0) parts.push(`${p.attempts} attempt${p.attempts === 1 ? '' : 's'}`);
  if (p.laneKind === 'retry' || p.laneKind === 'new')
    parts.push(p.due > now ? `next in ${age(p.due - now)}` : 'due now');
  const err = p.lastError ?? p.recipients.find((r) => r.state === 'pending' && r.last)?.last;
  return `(${parts.join(', ')}${err ? `: ${err}` : ''})`;
}

/** Like mailq: one block per message, then a total line. */
export function formatList(messages: readonly MessageView[], now: number): string {
  if (messages.length === 0) return 'Mail queue is empty\n';
  const lines = ['-Queue ID-      --Size-- ----Arrival Time---  -Sender/Recipient-------'];
  let bytes = 0;
  for (const m of messages) {
    bytes += m.size;
    lines.push(
      `${m.id}${mark(m)} ${String(m.size).padStart(8)} ${utc(m.arrival)}  ${m.sender === '' ? '<>' : m.sender}`,
    );
    for (const p of m.pieces) {
      lines.push(`${' '.repeat(15)}${pieceLine(p, now)}`);
      for (const r of p.recipients) if (r.state === 'pending') lines.push(`${' '.repeat(45)}${r.address}`);
    }
    lines.push('');
  }
  const kb = Math.ceil(bytes / 1024);
  lines.push(`-- ${kb} Kbytes in ${messages.length} Request${messages.length === 1 ? '' : 's'}.`);
  return `${lines.join('\n')}\n`;
}

/** The whole state of one message (`queue show`). */
export function formatShow(m: MessageView, now: number): string {
  const out: string[] = [];
  const kv = (k: string, v: string) => out.push(`${`${k}:`.padEnd(10)} ${v}`);
  kv('id', m.id);
  kv('arrival', `${utc(m.arrival)} (${age(now - m.arrival)} ago)`);
  kv('size', `${m.size} bytes`);
  kv('sender', `<${m.sender}>`);
  if (m.envid !== undefined) kv('envid', m.envid);
  if (m.ret !== undefined) kv('ret', m.ret);
  if (m.report) kv('report', 'yes (a delivery report: never bounced)');
  if (m.client)
    kv(
      'client',
      Object.entries(m.client)
        .map(([k, v]) => `${k}=${v}`)
        .join(' '),
    );
  kv('queue', String(m.queue));
  for (const p of m.pieces) {
    out.push('');
    const state = p.active
      ? 'being delivered'
      : p.laneKind === 'hold'
        ? 'held by the operator'
        : p.laneKind === 'held'
          ? 'held for its domain (ETRN/ODMR)'
          : p.due > now
            ? `next attempt ${utc(p.due)}`
            : 'due now';
    out.push(
      `piece ${p.piece} (version ${p.version}) in lane ${p.lane}: ${state}, ${p.attempts} attempt${p.attempts === 1 ? '' : 's'}`,
    );
    if (p.lastError) out.push(`  last error: ${p.lastError}`);
    out.push('  recipients:');
    for (const r of p.recipients) {
      let line = `    ${r.state.padEnd(9)} <${r.address}>`;
      if (r.notify) line += ` NOTIFY=${r.notify.join(',')}`;
      if (r.orcpt) line += ` ORCPT=${r.orcpt}`;
      if (r.last) line += `  last: ${r.last}`;
      out.push(line);
    }
    out.push('  history:');
    for (const h of p.history) out.push(`    ${utc(h.t)}  ${h.ev}${h.detail ? `: ${h.detail}` : ''}`);
  }
  return `${out.join('\n')}\n`;
}

/** qshape's table: one row per destination domain, one column per age bucket. */
export function formatSummary(s: Summary): string {
  const rows = [s.total, ...s.rows];
  const w0 = Math.max(6, ...rows.map((r) => r.domain.length));
  const widths = s.buckets.map((b, i) => Math.max(b.length, ...rows.map((r) => String(r.buckets[i]).length)));
  const wt = Math.max(5, ...rows.map((r) => String(r.total).length));
  const line = (name: string, total: string, cells: string[]) =>
    `${name.padStart(w0)} ${total.padStart(wt)} ${cells.map((c, i) => c.padStart(widths[i]!)).join(' ')}`;
  const out = [line('', 'T', s.buckets)];
  for (const r of rows) out.push(line(r.domain, String(r.total), r.buckets.map(String)));
  return `${out.join('\n')}\n`;
}
