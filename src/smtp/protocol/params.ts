// Argument parsing for MAIL FROM: and RCPT TO: with their ESMTP parameters:
//   MAIL: SIZE (RFC 1870), BODY (6152/3030), SMTPUTF8 (6531), RET/ENVID (3461), AUTH (4954)
//   RCPT: NOTIFY/ORCPT (3461)
// Invariant: on success every known parameter is validated and decoded (xtext undone); unknown
// keywords fail with 555 5.5.4, malformed or repeated ones with 501 5.5.4, bad addresses with
// 501 5.1.7 (sender) / 501 5.1.3 (recipient), non-ASCII without SMTPUTF8 with 553 5.6.7.
// Leniency (documented choice): a space between "FROM:" and "<" is tolerated; a path without
// angle brackets is not.
// Pure; errors are returned as ready-made replies, never thrown.

import { type ParsedPath, parsePath } from './address.js';
import type { SmtpReply } from './reply.js';
import { decodeXtext } from './xtext.js';

export type BodyType = '7BIT' | '8BITMIME' | 'BINARYMIME';
/** NOTIFY=NEVER is ['NEVER']; an absent NOTIFY is undefined (RFC 3461 §4.1). */
export type NotifyType = 'NEVER' | 'SUCCESS' | 'FAILURE' | 'DELAY';

export interface MailParams {
  size?: number;
  body?: BodyType;
  smtputf8?: true;
  ret?: 'FULL' | 'HDRS';
  /** Decoded ENVID. */
  envid?: string;
  /** Decoded AUTH= identity; '' for AUTH=<>. Accepted and recorded, not trusted. */
  auth?: string;
}

export interface RcptParams {
  /** NOTIFY=NEVER is the empty list. */
  notify?: NotifyType[];
  /** ORCPT=addr-type;xtext, decoded. */
  orcpt?: { type: string; address: string };
}

export type ArgsResult<T> =
  | {
      ok: true;
      path: ParsedPath;
      params: T;
      /** The text after the path: the parameters as written (see paramWords). */
      rest: string;
    }
  | { ok: false; reply: SmtpReply };

/** The parameters as written, one word each (what milters are shown). */
export const paramWords = (rest: string): string[] => rest.split(' ').filter((w) => w !== '');

const KEYWORD = /^[A-Za-z0-9][A-Za-z0-9-]*$/;
// esmtp-value: %d33-60 / %d62-126, plus UTF-8 (RFC 6531).
const VALUE = /^[\x21-\x3c\x3e-\x7e\u0080-\uffff]+$/;
const NON_ASCII = /[^\x00-\x7f]/;

const bad = (text: string): { ok: false; reply: SmtpReply } => ({
  ok: false,
  reply: { code: 501, enhanced: '5.5.4', text },
});
const unknown = (kw: string): { ok: false; reply: SmtpReply } => ({
  ok: false,
  reply: { code: 555, enhanced: '5.5.4', text: `Unsupported parameter ${kw}` },
});

interface Split {
  rest: string;
  path: ParsedPath;
}

function splitPath(
  args: string,
  prefix: 'FROM:' | 'TO:',
  allowNull: boolean,
  utf8: boolean,
): Split | { ok: false; reply: SmtpReply } {
  const addrCode = prefix === 'FROM:' ? '5.1.7' : '5.1.3';
  if (args.slice(0, prefix.length).toUpperCase() !== prefix) {
    return bad(prefix === 'FROM:' ? 'Syntax: MAIL FROM:<address>' : 'Syntax: RCPT TO:<address>');
  }
  let i = prefix.length;
  while (args[i] === ' ') i++;
  const r = parsePath(args, i, { allowNull, allowPostmaster: prefix === 'TO:', utf8 });
  if (!r.ok) {
    if (r.error === 'needsUtf8') {
      return {
        ok: false,
        reply: { code: 553, enhanced: '5.6.7', text: 'Non-ASCII address requires SMTPUTF8' },
      };
    }
    const what =
      r.error === 'tooLong'
        ? 'Address too long'
        : r.error === 'null'
          ? 'Null address not allowed here'
          : 'Bad address syntax';
    return { ok: false, reply: { code: 501, enhanced: addrCode, text: what } };
  }
  const after = args.slice(r.end);
  if (after.length > 0 && after[0] !== ' ') return bad('Syntax error after address');
  return { rest: after, path: r.path };
}

function* params(rest: string): Generator<[string, string | undefined] | null> {
  for (const p of rest.split(' ')) {
    if (p === '') continue;
    const eq = p.indexOf('=');
    const kw = eq === -1 ? p : p.slice(0, eq);
    const val = eq === -1 ? undefined : p.slice(eq + 1);
    if (!KEYWORD.test(kw) || (val !== undefined && !VALUE.test(val))) {
      yield null;
      return;
    }
    yield [kw.toUpperCase(), val];
  }
}

/** Parse the argument text of MAIL (everything after "MAIL "). */
export function parseMailArgs(args: string): ArgsResult<MailParams> {
  // Parse the path permissively (UTF-8 allowed) and check SMTPUTF8 once the parameters are known.
  const sp = splitPath(args, 'FROM:', true, true);
  if ('ok' in sp) return sp;
  const out: MailParams = {};
  for (const p of params(sp.rest)) {
    if (p === null) return bad('Bad parameter syntax');
    const [kw, val] = p;
    switch (kw) {
      case 'SIZE':
        if (out.size !== undefined) return bad('Duplicate SIZE');
        if (val === undefined || !/^\d{1,20}$/.test(val)) return bad('Bad SIZE value');
        out.size = Number(val);
        break;
      case 'BODY': {
        if (out.body !== undefined) return bad('Duplicate BODY');
        const v = val?.toUpperCase();
        if (v !== '7BIT' && v !== '8BITMIME' && v !== 'BINARYMIME') return bad('Bad BODY value');
        out.body = v;
        break;
      }
      case 'SMTPUTF8':
        if (val !== undefined) return bad('SMTPUTF8 takes no value');
        if (out.smtputf8) return bad('Duplicate SMTPUTF8');
        out.smtputf8 = true;
        break;
      case 'RET': {
        if (out.ret !== undefined) return bad('Duplicate RET');
        const v = val?.toUpperCase();
        if (v !== 'FULL' && v !== 'HDRS') return bad('Bad RET value');
        out.ret = v;
        break;
      }
      case 'ENVID': {
        if (out.envid !== undefined) return bad('Duplicate ENVID');
        const v = val === undefined || val.length > 100 ? null : decodeXtext(val);
        if (v === null) return bad('Bad ENVID value');
        out.envid = v;
        break;
      }
      case 'AUTH': {
        if (out.auth !== undefined) return bad('Duplicate AUTH');
        const v = val === '<>' ? '' : val === undefined ? null : decodeXtext(val);
        if (v === null) return bad('Bad AUTH value');
        out.auth = v;
        break;
      }
      default:
        return unknown(kw);
    }
  }
  if (!out.smtputf8 && NON_ASCII.test(sp.path.address)) {
    return {
      ok: false,
      reply: { code: 553, enhanced: '5.6.7', text: 'Non-ASCII address requires SMTPUTF8' },
    };
  }
  return { ok: true, path: sp.path, params: out, rest: sp.rest };
}

/** Parse the argument text of RCPT; `utf8` is whether the transaction's MAIL had SMTPUTF8. */
export function parseRcptArgs(args: string, utf8: boolean): ArgsResult<RcptParams> {
  const sp = splitPath(args, 'TO:', false, utf8);
  if ('ok' in sp) return sp;
  const out: RcptParams = {};
  for (const p of params(sp.rest)) {
    if (p === null) return bad('Bad parameter syntax');
    const [kw, val] = p;
    switch (kw) {
      case 'NOTIFY': {
        if (out.notify !== undefined) return bad('Duplicate NOTIFY');
        if (val === undefined) return bad('Bad NOTIFY value');
        const items = val.toUpperCase().split(',');
        if (items.length === 1 && items[0] === 'NEVER') {
          out.notify = ['NEVER'];
          break;
        }
        const set: NotifyType[] = [];
        for (const it of items) {
          if ((it !== 'SUCCESS' && it !== 'FAILURE' && it !== 'DELAY') || set.includes(it)) {
            return bad('Bad NOTIFY value');
          }
          set.push(it);
        }
        out.notify = set;
        break;
      }
      case 'ORCPT': {
        if (out.orcpt !== undefined) return bad('Duplicate ORCPT');
        const semi = val === undefined ? -1 : val.indexOf(';');
        if (val === undefined || semi <= 0 || val.length > 500) return bad('Bad ORCPT value');
        const type = val.slice(0, semi);
        if (!/^[A-Za-z0-9-]+$/.test(type)) return bad('Bad ORCPT address type');
        // RFC 6533 utf-8-addr-xtext uses \x{..} escapes, which are valid xtext characters.
        const address = decodeXtext(val.slice(semi + 1));
        if (address === null || address.length === 0) return bad('Bad ORCPT value');
        out.orcpt = { type: type.toLowerCase(), address };
        break;
      }
      default:
        return unknown(kw);
    }
  }
  return { ok: true, path: sp.path, params: out, rest: sp.rest };
}
