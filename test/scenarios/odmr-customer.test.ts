// A logmta customer of a logmta provider (two `logmta serve` processes) whose configuration does
// not take every domain it collects: the customer's own relay control refused those recipients
// with 554 in the reversed session, so the provider bounced the customer's mail to its senders at
// the first poll. Now a domain named in [[odmr.provider]] domains must be local or routed (the
// daemon does not start otherwise), and a recipient the customer cannot take in an ATRN session
// (a bare ATRN brings every domain of the account) is answered 450: it stays held at the
// provider, nothing is bounced, and the customer's log says why.
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { maildirMessages, runLogmta, waitFor } from '../support/daemon.js';
import { scenes } from './kit.js';

const scene = scenes();

const PROVIDER = `
[[local]]
domain = "sender.test"

[[odmr.account]]
user = "acme"
password = "acme-secret"
domains = ["acme.example", "acme-corp.example", "acme-branch.example"]
`;

describe('logmta customer of a logmta provider', () => {
  test('a domain in [[odmr.provider]] domains the customer neither delivers nor routes is a configuration error', async () => {
    const s = await scene.stage({ toml: PROVIDER });
    const file = join(s.dir, 'customer.toml');
    writeFileSync(
      file,
      `
data_dir = "cdata"
[smtp]
listen = ["127.0.0.1:0"]
[odmr]
listen = ["127.0.0.1:0"]
[[local]]
domain = "acme.example"
[[odmr.provider]]
host = "127.0.0.1:${s.odmrPort}"
user = "acme"
password = "acme-secret"
domains = ["acme.example", "acme-corp.example"]
`,
    );
    const bad = await runLogmta(['serve', '--config', file]);
    assert.equal(bad.code, 78, bad.stderr);
    assert.match(
      bad.stderr,
      /odmr\.provider\[1\]\.domains\[2\]: "acme-corp\.example" is neither a \[\[local\]\] domain nor routed/,
    );
  });

  test('a bare ATRN: local and routed domains are taken, one the customer cannot take stays held at the provider, nothing is bounced', async () => {
    const provider = await scene.stage({ toml: PROVIDER });
    await provider.send(['u1@acme.example', 'u2@acme-corp.example', 'u3@acme-branch.example']);
    await provider.waitLanes(
      (l) =>
        l['held-acme.example'] === 1 &&
        l['held-acme-corp.example'] === 1 &&
        l['held-acme-branch.example'] === 1,
      'all three held',
    );
    // The customer passes acme-branch.example on to its branch office's server.
    const branch = await scene.customer();
    await branch.up();
    // A bare ATRN (no domains): the account's three domains come, the customer takes two.
    const customer = await scene.stage({
      toml: `
[[local]]
domain = "acme.example"
[[route]]
domain = "acme-branch.example"
host = "127.0.0.1:${branch.port}"
[[odmr.provider]]
host = "127.0.0.1:${provider.odmrPort}"
user = "acme"
password = "acme-secret"
interval = "1h"
`,
    });
    await customer.waitLog('odmr poll done');
    await waitFor(
      () => maildirMessages(join(customer.dataDir, 'mail', 'u1')).length === 1,
      'u1@acme.example delivered at the customer',
    );
    await branch.waitFor(1, 'u3@acme-branch.example at the branch server');
    assert.deepEqual(branch.recipients(), ['u3@acme-branch.example']);
    // The provider committed every outcome before its QUIT: what is held now stays held.
    assert.equal(await provider.held('acme.example'), 0);
    assert.equal(await provider.held('acme-branch.example'), 0);
    assert.equal(await provider.held('acme-corp.example'), 1, 'the refused recipient is still held');
    assert.deepEqual(
      maildirMessages(join(provider.dataDir, 'mail', 'sender')),
      [],
      'no bounce to the sender',
    );
  });
});
