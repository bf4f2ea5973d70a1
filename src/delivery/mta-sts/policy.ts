// MTA-STS (RFC 8461) as text: the `_mta-sts.<domain>` TXT record (§3.1), the policy file served
// at https://mta-sts.<domain>/.well-known/mta-sts.txt (§3.2), and whether an MX host name
// matches a policy's `mx` patterns (§4.1). Pure: strings in, values out; no I/O.
// Invariants: a TXT answer yields an id only when exactly one record starts with "v=STSv1" and
// it parses; a policy parses only with version STSv1, one of the three modes, a max_age of 1 to
// 10 digits (capped at the RFC's 31557600 s) and, unless the mode is none, at least one mx
// pattern; unknown fields are ignored and, except for mx, only the first of a repeated field
// counts (§3.2). A pattern "*.example.com" matches exactly one more leftmost label.
// Fails: never throws; returns { ok: false, why } with the reason for the log.

export type StsMode = 'enforce' | 'testing' | 'none';

export interface StsPolicy {
  mode: StsMode;
  /** Lower-case patterns without a trailing dot: "mx.example.com" or "*.example.com". */
  mx: string[];
  /** Seconds the policy may be cached (already capped at MAX_AGE_LIMIT). */
  maxAge: number;
}

export type Parsed<T> = { ok: true; value: T } | { ok: false; why: string };

/** RFC 8461 §3.2: "maximum value of 31557600" (a year). */
export const MAX_AGE_LIMIT = 31_557_600;

const ID = /^[A-Za-z0-9]{1,32}$/;
const EXT_NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,31}$/;
/** sts-ext-value: %x21-3A / %x3C / %x3E-7E (printable, no ";" and no "="). */
const EXT_VALUE = /^[\x21-\x3a\x3c\x3e-\x7e]+$/;
const WSP = /^[ \t]*|[ \t]*$/g;
/** A domain as the mx grammar allows it (RFC 5321 Domain: LDH labels), ASCII only. */
const LABEL = /^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$/;

const trimWsp = (s: string): string => s.replace(WSP, '');

/**
 * The policy id of a `_mta-sts` TXT answer (each record as its character-strings). Records that
 * do not begin with "v=STSv1" are not ours; not exactly one of ours, or one that does not parse,
 * is "no policy" (§3.1).
 */
export function parseStsRecord(records: readonly (readonly string[])[]): Parsed<{ id: string }> {
  const ours = records.map((r) => r.join('')).filter((r) => r.startsWith('v=STSv1'));
  if (ours.length === 0) return { ok: false, why: 'no v=STSv1 record' };
  if (ours.length > 1) return { ok: false, why: `${ours.length} v=STSv1 records (one is required)` };
  const fields = (ours[0] as string).split(';');
  // A trailing ";" leaves one empty field at the end, which the grammar allows.
  if (fields.length > 1 && trimWsp(fields[fields.length - 1] as string) === '') fields.pop();
  let id: string | undefined;
  for (let i = 0; i < fields.length; i++) {
    const f = trimWsp(fields[i] as string);
    const eq = f.indexOf('=');
    if (eq < 0) return { ok: false, why: `field ${JSON.stringify(f)} has no "="` };
    const name = trimWsp(f.slice(0, eq));
    const value = trimWsp(f.slice(eq + 1));
    if (i === 0) {
      // "v=STSv1" and nothing after the version but the next field ("v=STSv10" is not it).
      if (name !== 'v' || value !== 'STSv1') return { ok: false, why: 'the first field is not v=STSv1' };
      continue;
    }
    if (name === 'id') {
      if (!ID.test(value))
        return { ok: false, why: `id ${JSON.stringify(value)} is not 1-32 letters or digits` };
      if (id !== undefined) return { ok: false, why: 'id given twice' };
      id = value;
      continue;
    }
    if (!EXT_NAME.test(name) || !EXT_VALUE.test(value))
      return { ok: false, why: `field ${JSON.stringify(f)} is not name=value` };
  }
  if (id === undefined) return { ok: false, why: 'no id field' };
  return { ok: true, value: { id } };
}

/** A `mx` value as a pattern: lower case, no trailing dot; undefined when it is no domain. */
function mxPattern(v: string): string | undefined {
  let p = v.toLowerCase();
  if (p.endsWith('.')) p = p.slice(0, -1);
  const labels = p.split('.');
  const rest = labels[0] === '*' ? labels.slice(1) : labels;
  // "*." needs something after it; "*" alone, "a.*.b" and "*.*.b" are no patterns.
  if (rest.length === 0 || p.length > 253) return undefined;
  return rest.every((l) => LABEL.test(l)) ? p : undefined;
}

/** Parses a policy file (§3.2): "key: value" lines ended by LF or CRLF. */
export function parseStsPolicy(text: string): Parsed<StsPolicy> {
  const seen = new Map<string, string>();
  const mx: string[] = [];
  const lines = text.split('\n');
  // The final line break is optional: a last empty "line" is its end, not a field.
  if (lines.length > 1 && lines[lines.length - 1] === '') lines.pop();
  for (const raw of lines) {
    const line = trimWsp(raw.endsWith('\r') ? raw.slice(0, -1) : raw);
    if (line === '') continue;
    const colon = line.indexOf(':');
    if (colon <= 0)
      return { ok: false, why: `line ${JSON.stringify(line.slice(0, 80))} is not "key: value"` };
    const key = line.slice(0, colon);
    const value = trimWsp(line.slice(colon + 1));
    if (!EXT_NAME.test(key))
      return { ok: false, why: `${JSON.stringify(key.slice(0, 40))} is no field name` };
    if (key === 'mx') {
      const p = mxPattern(value);
      if (p === undefined)
        return { ok: false, why: `mx ${JSON.stringify(value.slice(0, 80))} is no host pattern` };
      mx.push(p);
    } else if (!seen.has(key)) seen.set(key, value);
  }
  const version = seen.get('version');
  if (version !== 'STSv1')
    return {
      ok: false,
      why: version === undefined ? 'no version field' : `version ${JSON.stringify(version)} is not STSv1`,
    };
  const mode = seen.get('mode');
  if (mode !== 'enforce' && mode !== 'testing' && mode !== 'none')
    return {
      ok: false,
      why: mode === undefined ? 'no mode field' : `mode ${JSON.stringify(mode)} is unknown`,
    };
  const age = seen.get('max_age');
  if (age === undefined || !/^[0-9]{1,10}$/.test(age))
    return {
      ok: false,
      why: age === undefined ? 'no max_age field' : `max_age ${JSON.stringify(age)} is not 1-10 digits`,
    };
  if (mode !== 'none' && mx.length === 0) return { ok: false, why: `mode ${mode} without any mx pattern` };
  return { ok: true, value: { mode, mx, maxAge: Math.min(Number(age), MAX_AGE_LIMIT) } };
}

/**
 * Whether MX host `host` matches `pattern` (§4.1): equal, or for "*.example.com" one label more
 * than "example.com" ("mx.example.com", never "a.b.example.com" or "example.com"). Case and a
 * trailing dot do not matter.
 */
export function mxMatches(pattern: string, host: string): boolean {
  const h = (host.endsWith('.') ? host.slice(0, -1) : host).toLowerCase();
  if (!pattern.startsWith('*.')) return h === pattern;
  const dot = h.indexOf('.');
  return dot > 0 && h.slice(dot + 1) === pattern.slice(2);
}

/** Whether any of the policy's mx patterns matches `host`. */
export function policyAllows(policy: StsPolicy, host: string): boolean {
  return policy.mx.some((p) => mxMatches(p, host));
}
