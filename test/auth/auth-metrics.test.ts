// The authentication stages feed Prometheus: results of the incoming checks, DKIM signatures
// added, DNSBL refusals — read from the daemon's registry as a scrape would.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { rsaKey } from '../support/dkim-tools.js';
import { startTestDaemon, type TestDaemon } from '../support/daemon.js';
import { hasUnbound, startDnsServer, type TestDnsServer, txt } from '../support/dns-server.js';
import { sendRaw } from '../support/smtp-send.js';

const skip = hasUnbound() ? false : 'unbound not installed';
const mail = (from: string) => `From: <${from}>\r\nSubject: m\r\n\r\nhi\r\n`;

describe('authentication metrics', { skip }, () => {
  let dns: TestDnsServer;
  let d: TestDaemon;
  before(async () => {
    dns = await startDnsServer({
      zones: ['sender.test', 'bl.test'],
      records: [txt('sender.test', 'v=spf1 ip4:127.0.0.2 -all'), '3.0.0.127.bl.test. 300 IN A 127.0.0.2'],
    });
    d = await startTestDaemon({
      files: { 'k.pem': rsaKey(2048).pem },
      toml: `
[smtp]
listen = ["127.0.0.1:0"]
relay_networks = ["127.0.0.1/32"]
[dns]
servers = ["${dns.address}"]
[auth]
checks = true
[[dkim]]
domain = "example.org"
selector = "s1"
key_file = "k.pem"
[[dnsbl]]
zone = "bl.test"
[[local]]
domain = "local.test"
`,
    });
  });
  after(async () => {
    await d?.stop();
    await dns?.stop();
  });

  test('check results, signatures and DNSBL refusals are counted', async () => {
    const outside = await sendRaw(d.port, {
      from: 'a@sender.test',
      to: ['u@local.test'],
      data: mail('a@sender.test'),
      localAddress: '127.0.0.2',
    });
    assert.match(outside.final, /^250 /);
    const signed = await sendRaw(d.port, {
      from: 'a@example.org',
      to: ['v@local.test'],
      data: mail('a@example.org'),
    });
    assert.match(signed.final, /^250 /);
    const listed = await sendRaw(d.port, {
      from: 'a@sender.test',
      to: ['w@local.test'],
      data: mail('a@sender.test'),
      localAddress: '127.0.0.3',
    });
    assert.match(listed.final, /^554 5\.7\.1 /);
    const text = await d.daemon.metrics.registry.metrics();
    assert.match(text, /^logmta_auth_results_total\{method="spf",result="pass"\} 1$/m);
    assert.match(text, /^logmta_auth_results_total\{method="dkim",result="none"\} 1$/m);
    assert.match(text, /^logmta_auth_results_total\{method="dmarc",result="none"\} 1$/m);
    assert.match(text, /^logmta_dkim_signatures_total\{algorithm="rsa-sha256"\} 1$/m);
    assert.match(text, /^logmta_dnsbl_listed_total\{zone="bl.test"\} 1$/m);
  });
});
