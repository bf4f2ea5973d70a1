// The MTA-STS policy cache on disk: one JSON file in the data directory (mta-sts.json), so that
// a restart — or a reload, which is one — does not forget the policies of receiving domains and
// open the downgrade window MTA-STS closes (RFC 8461 §10.2: the cache is what protects a
// sender once a policy is known).
// Invariants: the file is replaced whole, never edited in place (temporary file, fdatasync,
// rename, directory fsync), so a crash leaves the old or the new cache, not a torn one; writes
// are serialised, and writes asked for while one runs are folded into one more; entries are
// kept with the policy text as fetched, so loading re-parses them with the same parser.
// Fails: load() never throws — a missing file is an empty cache, an unreadable or corrupt one is
// reported through `warn` and ignored; save failures are reported through `warn` and the
// in-memory cache goes on (the next save tries again).

import { readFileSync } from 'node:fs';
import { open, rename } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { errorText } from '../../errors.js';

export interface StoredPolicy {
  /** The TXT record's id the policy was fetched for. */
  id: string;
  /** The policy file as served. */
  text: string;
  /** When it was fetched (epoch ms); it expires max_age seconds later. */
  fetchedAt: number;
}

const VERSION = 1;
export const STORE_FILE = 'mta-sts.json';

export class PolicyStore {
  readonly file: string;
  private writing: Promise<void> | undefined;
  private again = false;

  constructor(
    dataDir: string,
    private readonly warn: (fields: Record<string, unknown>, msg: string) => void,
  ) {
    this.file = join(dataDir, STORE_FILE);
  }

  /** The entries of the file; an empty map when there is none or it cannot be used. */
  load(): Map<string, StoredPolicy> {
    const out = new Map<string, StoredPolicy>();
    let raw: string;
    try {
      raw = readFileSync(this.file, 'utf8');
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT')
        this.warn(
          { file: this.file, err: errorText(e) },
          'MTA-STS policy cache unreadable: starting without it',
        );
      return out;
    }
    let doc: unknown;
    try {
      doc = JSON.parse(raw);
    } catch (e) {
      this.warn({ file: this.file, err: errorText(e) }, 'MTA-STS policy cache corrupt: starting without it');
      return out;
    }
    const d = doc as { version?: unknown; policies?: unknown };
    if (
      typeof d !== 'object' ||
      d === null ||
      d.version !== VERSION ||
      typeof d.policies !== 'object' ||
      d.policies === null
    ) {
      this.warn({ file: this.file }, 'MTA-STS policy cache has an unknown layout: starting without it');
      return out;
    }
    let bad = 0;
    for (const [domain, v] of Object.entries(d.policies as Record<string, unknown>)) {
      const p = v as Partial<StoredPolicy> | null;
      if (p && typeof p.id === 'string' && typeof p.text === 'string' && typeof p.fetchedAt === 'number')
        out.set(domain, { id: p.id, text: p.text, fetchedAt: p.fetchedAt });
      else bad++;
    }
    if (bad > 0)
      this.warn({ file: this.file, entries: bad }, 'MTA-STS policy cache entries ignored: not policies');
    return out;
  }

  /** Writes `entries()` (called when the write starts, so the newest state goes out). */
  save(entries: () => Map<string, StoredPolicy>): Promise<void> {
    if (this.writing) {
      this.again = true;
      return this.writing;
    }
    this.writing = (async () => {
      do {
        this.again = false;
        try {
          await this.write(entries());
        } catch (e) {
          this.warn({ file: this.file, err: errorText(e) }, 'MTA-STS policy cache not saved');
        }
      } while (this.again);
    })().finally(() => {
      this.writing = undefined;
    });
    return this.writing;
  }

  private async write(entries: Map<string, StoredPolicy>): Promise<void> {
    const body = JSON.stringify({ version: VERSION, policies: Object.fromEntries(entries) });
    const tmp = `${this.file}.tmp`;
    const fh = await open(tmp, 'w', 0o600);
    try {
      await fh.writeFile(body);
      // Durable before the rename makes it the cache: a crash must not leave an empty file there.
      await fh.datasync();
    } finally {
      await fh.close();
    }
    await rename(tmp, this.file);
    const dir = await open(dirname(this.file), 'r');
    try {
      await dir.sync();
    } finally {
      await dir.close();
    }
  }
}
