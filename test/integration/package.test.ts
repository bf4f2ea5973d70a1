// What `npm pack` ships (package.json "files"): what a release needs to run — bin/, the compiled
// dist/src/ without tests, test kits or source maps, the dashboard's static files, README and
// docs/ — and not the tests, benchmarks, TypeScript sources or build state. The packed runtime
// imports only Node built-ins, its own files and the "dependencies" of package.json, and the
// unpacked tarball runs: `logmta serve` starts (which loads the dashboard), takes a message
// into a Maildir, and `logmta log verify` loads its lazily imported module.
// Skipped when npm or tar is missing. Fails: naming the file that is missing or should not be there.

import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, symlinkSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import {
  codeOf,
  hasTool,
  makeTempDir,
  REPO_ROOT,
  runTool,
  SmtpChat,
  waitForMaildir,
} from '../support/daemon.js';
import { spawn } from 'node:child_process';

const skip = !hasTool('npm') ? 'npm is not installed' : !hasTool('tar') ? 'tar is not installed' : false;
const dir = makeTempDir('logmta-pack-');
let files: string[] = [];

after(() => rmSync(dir, { recursive: true, force: true }));

before(async () => {
  if (skip) return;
  // --ignore-scripts: the test uses the dist/ this run was built with (prepack would rebuild it
  // under the feet of the other tests).
  const r = await runTool('npm', ['pack', '--json', '--ignore-scripts', '--pack-destination', dir], {
    cwd: REPO_ROOT,
    timeoutMs: 60_000,
  });
  assert.equal(r.code, 0, r.stderr);
  const [info] = JSON.parse(r.stdout) as { filename: string; files: { path: string }[] }[];
  assert.ok(info);
  files = info.files.map((f) => f.path).sort();
  const x = await runTool('tar', ['-xzf', join(dir, info.filename), '-C', dir]);
  assert.equal(x.code, 0, x.stderr);
});

describe('the packed release (npm pack)', { skip }, () => {
  test('carries bin, the compiled daemon, the dashboard files, README and docs', () => {
    for (const f of [
      'package.json',
      'README.md',
      'bin/logmta.js',
      'dist/src/cli/main.js',
      'dist/src/cli/serve.js',
      'dist/src/cli/log-verify.js',
      'dist/src/daemon.js',
      'dist/src/queue/queue.js',
      'src/admin/dashboard/index.html',
      'src/admin/dashboard/dashboard.js',
      'src/admin/dashboard/dashboard.css',
      'docs/configuration.md',
      'docs/smtp-server.md',
    ])
      assert.ok(files.includes(f), `${f} is not in the package`);
  });

  test('carries no tests, test kits, benchmarks, sources, source maps or build state', () => {
    const bad = files.filter(
      (f) =>
        /\.test\.js$|testkit\.js$|log-fixture\.js$|memfs\.js$|\.map$|\.ts$|tsbuildinfo/.test(f) ||
        /^(test|bench|scripts|\.ci|dist\/test|dist\/bench|node_modules)\//.test(f) ||
        (f.startsWith('src/') && !f.startsWith('src/admin/dashboard/')),
    );
    assert.deepEqual(bad, []);
  });

  test('the packed code imports only built-ins, its own files and its declared dependencies', () => {
    const pkg = JSON.parse(readFileSync(join(dir, 'package', 'package.json'), 'utf8')) as {
      dependencies: Record<string, string>;
    };
    const deps = new Set(Object.keys(pkg.dependencies));
    const problems: string[] = [];
    for (const f of files.filter((x) => x.endsWith('.js') && !x.startsWith('src/'))) {
      const text = readFileSync(join(dir, 'package', f), 'utf8');
      // Static imports/re-exports at the start of a line, side-effect imports, dynamic import('...').
      const specs = [
        ...text.matchAll(/^(?:import|export)\b[^'"]*?\bfrom\s*['"]([^'"]+)['"]/gm),
        ...text.matchAll(/^import\s*['"]([^'"]+)['"]/gm),
        ...text.matchAll(/\bimport\(\s*['"]([^'"]+)['"]\s*\)/g),
        ...text.matchAll(/\brequire(?:\.resolve)?\(\s*['"]([^'"]+)['"]\s*\)/g),
      ];
      for (const m of specs) {
        const spec = m[1] ?? '';
        if (spec.startsWith('node:')) continue;
        if (spec.startsWith('.')) {
          if (!existsSync(join(dir, 'package', f, '..', spec))) problems.push(`${f}: ${spec} is not packed`);
          continue;
        }
        const name = spec.startsWith('@')
          ? spec.split('/').slice(0, 2).join('/')
          : (spec.split('/')[0] ?? '');
        if (!deps.has(name)) problems.push(`${f}: imports ${spec}, not a dependency`);
      }
    }
    assert.deepEqual(problems, []);
  });

  test('the unpacked package runs: serve takes a message into a Maildir, log verify loads', async () => {
    const pkgDir = join(dir, 'package');
    // The runtime dependencies are those of this checkout (no registry in tests).
    symlinkSync(join(REPO_ROOT, 'node_modules'), join(pkgDir, 'node_modules'), 'dir');
    const work = join(dir, 'work');
    mkdirSync(work);
    const child = spawn(
      process.execPath,
      [join(pkgDir, 'bin', 'logmta.js'), 'serve', '--listen', '127.0.0.1:0'],
      {
        cwd: work,
        stdio: ['ignore', 'ignore', 'pipe'],
      },
    );
    let err = '';
    child.stderr.setEncoding('utf8').on('data', (d: string) => (err += d));
    const exited = new Promise<number | null>((res) => child.once('exit', (code) => res(code)));
    try {
      const end = Date.now() + 15_000;
      while (!/SMTP on 127\.0\.0\.1:(\d+)/.test(err) && Date.now() < end && child.exitCode === null)
        await new Promise((r) => setTimeout(r, 20));
      const port = Number(/SMTP on 127\.0\.0\.1:(\d+)/.exec(err)?.[1] ?? 0);
      assert.ok(port > 0, `the packed logmta did not start: ${err}`);
      const { chat } = await SmtpChat.open(port);
      const r = await chat.ask(
        'EHLO pack.test\r\nMAIL FROM:<s@example.org>\r\nRCPT TO:<alice@localhost>\r\nDATA\r\n',
        4,
      );
      assert.deepEqual(r.map(codeOf), ['250', '250 2.1.0', '250 2.1.5', '354']);
      assert.equal(codeOf((await chat.ask('Subject: packed\r\n\r\nhi\r\n.\r\n'))[0] ?? ''), '250 2.0.0');
      chat.close();
      await waitForMaildir(join(work, 'logmta-data', 'mail', 'alice'));
    } finally {
      child.kill('SIGTERM');
      assert.equal(await exited, 0, err);
    }
    const v = await runTool(process.execPath, [
      join(pkgDir, 'bin', 'logmta.js'),
      'log',
      'verify',
      join(work, 'logmta-data', 'queue'),
    ]);
    assert.ok(v.code === 0 || v.code === 1, `log verify: ${v.code} ${v.stdout}${v.stderr}`);
    assert.ok(readdirSync(join(work, 'logmta-data')).includes('queue'));
  });
});
