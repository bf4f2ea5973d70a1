// The size a local sendmail's input will have as the message it queues, counted while the input
// arrives, so that `logmta sendmail` can stop reading one over smtp.max_message_size at once
// instead of holding all of it (a runaway script piping gigabytes). The rules are those of
// message.ts: line ends become CRLF; without -i a lone "." ends the message; a first mbox "From "
// line is dropped; Bcc fields are removed; header fields are only ever added.
// Invariant: `size` never exceeds the length of the message completeMessage makes of the same
// input (a lower bound): a line counts once what it is is known (a Bcc field, continuation lines
// included, never; an unfinished line that may still turn out to be one, not yet). Never throws.

import { FIELD_START } from './message.js';

/** Octets of a line's start kept to tell what it is (a field name, "From ", "."). */
const HEAD = 1000;
/** A line start that may still become a field name (and so a Bcc field). */
const MAYBE_FIELD = /^[\x21-\x39\x3b-\x7e]*[ \t]*$/;

export class InputMeter {
  /** Octets of the message so far, at least. */
  size = 0;
  /** A lone "." ended the message (without -i): nothing after it belongs to it. */
  ended = false;
  private first = true;
  private inHeader = true;
  /** A header field was read (a line starting with white space continues it). */
  private hasField = false;
  /** The header field being read is Bcc: its continuation lines are dropped with it. */
  private bcc = false;
  /** The current line: its first octets, its length so far and how much of it is counted. */
  private head = '';
  private len = 0;
  private counted = 0;
  private cr = false;

  constructor(private readonly ignoreDots: boolean) {}

  /** More input, as latin1 text (one char per octet). */
  feed(text: string): void {
    let pos = 0;
    while (pos < text.length && !this.ended) {
      const nl = text.indexOf('\n', pos);
      const end = nl < 0 ? text.length : nl;
      if (end > pos) {
        if (this.head.length < HEAD)
          this.head += text.slice(pos, Math.min(end, pos + HEAD - this.head.length));
        this.len += end - pos;
        this.cr = text.charCodeAt(end - 1) === 13;
      }
      if (nl < 0) {
        this.countPartial();
        return;
      }
      this.endLine();
      pos = nl + 1;
    }
  }

  /** Octets of the current line without a CR that ends it. */
  private get length(): number {
    return this.len - (this.cr ? 1 : 0);
  }

  /** What the current line is, as far as its start tells: counted, dropped, or not known yet. */
  private kind(ended: boolean): 'count' | 'drop' | 'unknown' {
    const h = this.cr && this.head.length === this.len ? this.head.slice(0, -1) : this.head;
    if (!this.ignoreDots && h === '.') return ended ? 'drop' : 'unknown';
    if (h === '' && !ended) return 'unknown';
    if (this.first) {
      if (h.startsWith('From ')) return 'drop';
      if (!ended && 'From '.startsWith(h)) return 'unknown';
    }
    if (!this.inHeader) return 'count';
    if (h === '') return 'count';
    if ((h.startsWith(' ') || h.startsWith('\t')) && this.hasField) return this.bcc ? 'drop' : 'count';
    const m = FIELD_START.exec(h);
    if (m) return m[1]!.toLowerCase() === 'bcc' ? 'drop' : 'count';
    return !ended && h.length < HEAD && MAYBE_FIELD.test(h) ? 'unknown' : 'count';
  }

  private countPartial(): void {
    if (this.kind(false) !== 'count') return;
    this.size += this.length - this.counted;
    this.counted = this.length;
  }

  private endLine(): void {
    const kind = this.kind(true);
    const h = this.head;
    const whole = this.cr ? h.slice(0, -1) : h;
    if (!this.ignoreDots && this.length === 1 && whole === '.') this.ended = true;
    else if (this.first && whole.startsWith('From ')) {
      // dropped; the header starts with the next line
    } else if (this.inHeader) {
      if (this.length === 0) this.inHeader = false;
      else if ((h.startsWith(' ') || h.startsWith('\t')) && this.hasField) {
        // a continuation line: dropped with a Bcc field, counted with any other
      } else {
        const m = FIELD_START.exec(h);
        if (m) {
          this.hasField = true;
          this.bcc = m[1]!.toLowerCase() === 'bcc';
        } else this.inHeader = false; // not a field: the body starts here
      }
    }
    if (kind === 'count') this.size += this.length + 2 - this.counted;
    this.first = false;
    this.head = '';
    this.len = 0;
    this.counted = 0;
    this.cr = false;
  }
}
