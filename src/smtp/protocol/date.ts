// The one RFC 5322 date-time formatter (§3.3), for every header and report field logmta writes:
// Received: (smtp/server/received.ts), Date: of a local submission (cli/sendmail.ts, admin/
// inject.ts), and the dates of a DSN (delivery/dsn.ts: Arrival-Date, Last-Attempt-Date,
// Will-Retry-Until, Date). Always in UTC with a "+0000" zone, e.g. "Tue, 02 Jan 2024 03:04:05
// +0000". Pure (the last result is kept, as many lines of one second share it); never throws.

const DAYS = ['Sun', 'Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat'];
const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];

let cachedSecond = Number.NaN;
let cachedDate = '';

const two = (n: number): string => (n < 10 ? '0' : '') + n;

/** RFC 5322 date-time of `ms` (milliseconds since the epoch), in UTC, to the second. */
export function rfc5322Date(ms: number): string {
  const sec = Math.floor(ms / 1000);
  if (sec === cachedSecond) return cachedDate;
  const d = new Date(sec * 1000);
  cachedDate =
    `${DAYS[d.getUTCDay()]}, ${two(d.getUTCDate())} ${MONTHS[d.getUTCMonth()]} ${d.getUTCFullYear()} ` +
    `${two(d.getUTCHours())}:${two(d.getUTCMinutes())}:${two(d.getUTCSeconds())} +0000`;
  cachedSecond = sec;
  return cachedDate;
}
