// DKIM signing of the reports logmta writes itself, as a postmaster meets it: a real `logmta serve`
// whose hostname (mx.example.net, the reports' MAILER-DAEMON domain) has [[dkim]] keys — RSA-2048
// for example.net with subdomains = true, Ed25519 for mx.example.net itself — relays to a next hop
// that refuses (550) or defers (451) a recipient, and the sender's mail host receives the bounce or
// delay warning. dkimpy and opendkim (Debian's, the keys served by unbound) must both accept every
// signature, Python's email package must read a well-formed RFC 3464 report, and a report whose
// body is changed must fail. A daemon whose hostname has no key sends its reports unsigned (while
// still signing its users' mail). A report refused once, then the daemon SIGKILLed and started
// again, arrives with the very bytes it was first offered with, and they verify.
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { waitFor } from '../support/daemon.js';
import {
  dkimpyMissing,
  dkimpyVerify,
  ed25519Key,
  opendkimMissing,
  opendkimVerify,
  rsaKey,
  signedFields,
  type Verdict,
} from '../support/dkim-tools.js';
import { hasUnbound, startDnsServer, type TestDnsServer, txt } from '../support/dns-server.js';
import { readReport } from '../support/dsn-python.js';
import { sendMail } from '../support/inject.js';
import type { SinkTransaction } from '../support/sink.js';
import { type CustomerHost, scenes, type Stage } from '../scenarios/kit.js';

const dkimpySkip = await dkimpyMissing();
const skip = !hasUnbound() ? 'unbound not installed' : (dkimpySkip ?? opendkimMissing() ?? false);

const scene = scenes();

describe('reports from a hostname with a DKIM key are signed, checked by dkimpy and opendkim', {
  skip,
}, () => {
  let dns: TestDnsServer;
  const files: Record<string, string> = {};

  before(async () => {
    const rsa = rsaKey(2048);
    const ed = ed25519Key();
    files['s1.pem'] = rsa.pem;
    files['e1.pem'] = ed.pem;
    dns = await startDnsServer({
      zones: ['example.net'],
      records: [txt('s1._domainkey.example.net', rsa.record), txt('e1._domainkey.mx.example.net', ed.record)],
    });
  });
  after(async () => {
    await dns?.stop();
  });

  /** A relay named `hostname` with both keys, routing each domain of `routes` to its port. */
  function stage(hostname: string, routes: Record<string, number>, queue = ''): Promise<Stage> {
    let toml = `hostname = "${hostname}"
[smtp]
relay_networks = ["127.0.0.0/8"]
[queue]
retry = ["1s"]
${queue}
[[dkim]]
domain = "example.net"
subdomains = true
selector = "s1"
key_file = "s1.pem"
[[dkim]]
domain = "mx.example.net"
selector = "e1"
key_file = "e1.pem"
`;
    for (const [domain, port] of Object.entries(routes))
      toml += `[[route]]\ndomain = "${domain}"\nhost = "127.0.0.1:${port}"\n`;
    return scene.stage({ toml, files });
  }

  /** A next hop refusing gone@ for good and deferring slow@ every time. */
  async function nextHop(): Promise<CustomerHost> {
    const dst = await scene.customer();
    await dst.up({
      rcptReply: (a) =>
        a.startsWith('gone@')
          ? '550 5.1.1 no such user'
          : a.startsWith('slow@')
            ? '451 4.3.0 later'
            : undefined,
    });
    return dst;
  }

  const reportsAt = (h: CustomerHost): SinkTransaction[] => h.received.filter((t) => t.sender === '');

  async function verdicts(data: Buffer, dir: string): Promise<{ dkimpy: Verdict[]; opendkim: Verdict[] }> {
    const file = join(dir, `check-${Date.now()}-${Math.random()}.eml`);
    writeFileSync(file, data);
    const bySelector = (v: Verdict[]) => v.sort((a, b) => b.selector.localeCompare(a.selector));
    return {
      dkimpy: bySelector(await dkimpyVerify(data, dns)),
      opendkim: bySelector(await opendkimVerify(file, dns)),
    };
  }

  const bothPass = [
    { result: 'pass', domain: 'example.net', selector: 's1' },
    { result: 'pass', domain: 'mx.example.net', selector: 'e1' },
  ];

  /** Python's reading of the report: a multipart/report with its three parts, no defects. */
  async function wellFormed(data: Buffer, action: string, rcpt: string): Promise<void> {
    const r = await readReport(data);
    assert.equal(r.contentType, 'multipart/report');
    assert.equal(r.reportType, 'delivery-status');
    assert.deepEqual(r.defects, []);
    assert.equal(r.parts[0], 'text/plain');
    assert.equal(r.parts[1], 'message/delivery-status');
    assert.equal(r.from, 'Mail Delivery System <MAILER-DAEMON@mx.example.net>');
    assert.deepEqual(
      r.perRecipient.map((g) => `${g.action} ${g['final-recipient']}`),
      [`${action} rfc822; ${rcpt}`],
    );
  }

  test('a bounce carries one signature per key, both verifiers pass both, and a changed body fails', async () => {
    const dst = await nextHop();
    const home = await scene.customer();
    await home.up();
    const s = await stage('mx.example.net', { 'dst.test': dst.port, 'sender.test': home.port });
    await sendMail(s.port, { from: 'bob@sender.test', to: ['gone@dst.test'], subject: 'to a gone user' });
    await home.waitFor(1, 'the bounce');
    const [bounce] = reportsAt(home);
    assert.ok(bounce);
    assert.deepEqual(bounce.recipients, ['bob@sender.test']);
    const v = await verdicts(bounce.data, s.dir);
    assert.deepEqual(v.dkimpy, bothPass);
    assert.deepEqual(v.opendkim, bothPass);
    await wellFormed(bounce.data, 'failed', 'gone@dst.test');
    const h = signedFields(bounce.data);
    for (const f of ['from', 'to', 'subject', 'date', 'message-id', 'mime-version', 'content-type'])
      assert.ok(h.includes(f), `${f} is signed`);
    assert.equal(h.filter((x) => x === 'from').length, 2, 'From is oversigned');
    const changed = Buffer.from(
      bounce.data.toString('latin1').replace('Action: failed', 'Action: delivered'),
      'latin1',
    );
    const bad = await verdicts(changed, s.dir);
    assert.deepEqual(
      [...bad.dkimpy, ...bad.opendkim].map((x) => x.result),
      ['fail', 'fail', 'fail', 'fail'],
    );
  });

  test('a delay warning (NOTIFY=DELAY, past delay_warning) is signed and verifies', async () => {
    const dst = await nextHop();
    const home = await scene.customer();
    await home.up();
    const s = await stage(
      'mx.example.net',
      { 'dst.test': dst.port, 'sender.test': home.port },
      'delay_warning = "1s"',
    );
    await sendMail(s.port, {
      from: 'bob@sender.test',
      to: [{ address: 'slow@dst.test', notify: ['DELAY', 'FAILURE'] }],
    });
    await home.waitFor(1, 'the delay warning', 20_000);
    const [warning] = reportsAt(home);
    assert.ok(warning);
    await wellFormed(warning.data, 'delayed', 'slow@dst.test');
    const v = await verdicts(warning.data, s.dir);
    assert.deepEqual(v.dkimpy, bothPass);
    assert.deepEqual(v.opendkim, bothPass);
  });

  test('a hostname no key matches sends its bounces unsigned, while its users’ mail is signed', async () => {
    const dst = await nextHop();
    const home = await scene.customer();
    await home.up();
    const s = await stage('mx.unsigned.test', { 'dst.test': dst.port, 'sender.test': home.port });
    await sendMail(s.port, { from: 'alice@example.net', to: ['ok@dst.test'], subject: 'signed' });
    await sendMail(s.port, { from: 'bob@sender.test', to: ['gone@dst.test'] });
    await home.waitFor(1, 'the bounce');
    await dst.waitFor(1, 'the relayed message');
    const relayed = dst.received[0]?.data as Buffer;
    assert.deepEqual((await verdicts(relayed, s.dir)).dkimpy, bothPass.slice(0, 1), 'the key works');
    const [bounce] = reportsAt(home);
    assert.ok(bounce);
    assert.doesNotMatch(bounce.data.toString('latin1'), /^DKIM-Signature:/im);
    assert.match(
      bounce.data.toString('latin1'),
      /^From: Mail Delivery System <MAILER-DAEMON@mx\.unsigned\.test>/m,
    );
  });

  test('a bounce refused once, then a SIGKILL and a restart: delivered with the same bytes, which verify', async () => {
    const dst = await nextHop();
    const home = await scene.customer();
    const offered: Buffer[] = [];
    await home.up({
      dataReply: (tx) => {
        offered.push(tx.data);
        return '451 4.3.0 come back later';
      },
    });
    const s = await stage('mx.example.net', { 'dst.test': dst.port, 'sender.test': home.port });
    await sendMail(s.port, { from: 'bob@sender.test', to: ['gone@dst.test'] });
    await s.waitLog('failed'); // logged once the failure and its bounce are durable
    await waitFor(() => offered.length > 0, 'the bounce offered to the sender’s host');
    await s.restart('SIGKILL');
    delete home.opts.dataReply;
    await s.admin('flush');
    await home.waitFor(1, 'the bounce after the restart', 20_000);
    const [bounce] = reportsAt(home);
    assert.ok(bounce);
    assert.ok(bounce.data.equals(offered[0] as Buffer), 'the bytes first offered, signature and all');
    const v = await verdicts(bounce.data, s.dir);
    assert.deepEqual(v.dkimpy, bothPass);
    assert.deepEqual(v.opendkim, bothPass);
    assert.equal(reportsAt(home).length, 1);
  });
});
