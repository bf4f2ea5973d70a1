// Loads the configuration: reads the TOML file (if any), validates it strictly, applies
// defaults and command-line overrides, resolves paths, reads secret files, and cross-checks
// the domain tables. The only producer of a Config.
// Invariant: either a fully valid Config is returned, or one ConfigError (MtaError
// 'CONFIG_INVALID', permanent) is thrown listing every problem found, one per line, each
// "<source>: <key.path>: <problem>" — unknown keys included.
// Paths: data_dir resolves against the config file's directory (cwd without a file or for
// --data-dir); operator files (tls, *_file) against the config file's directory; state paths
// (queue.paths, maildir, admin.socket) against data_dir.

import { readFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { parse, TomlError } from 'smol-toml';
import { MtaError } from '../errors.js';
import { checkConfig } from './checks.js';
import { readAccess } from './access-section.js';
import { readAuth, readDkim, readDns, readDnsbl } from './auth-sections.js';
import { readCluster } from './cluster-section.js';
import { DEFAULTS } from './defaults.js';
import { isHostName } from './net.js';
import { Problems, Section } from './reader.js';
import type { Config } from './schema.js';
import {
  type Paths,
  parseListen,
  readAdmin,
  readDelivery,
  readEtrn,
  readEtrnLimits,
  readLocal,
  readLog,
  readMilters,
  readOdmr,
  readQueue,
  readRoutes,
  readSmtp,
  readTls,
  readUsers,
} from './sections.js';

export { cidrContains, cidrListContains, formatHostPort, parseCidr, parseHostPort } from './net.js';
export { formatDuration, parseDuration, parseSize } from './units.js';

/** All problems of a configuration; `message` is `problems` joined by newlines. */
export class ConfigError extends MtaError {
  readonly problems: readonly string[];
  constructor(problems: readonly string[]) {
    super('CONFIG_INVALID', 'permanent', problems.join('\n'));
    this.name = 'ConfigError';
    this.problems = problems;
  }
}

export interface ConfigOverrides {
  /** Replaces smtp.listen (from --listen). */
  listen?: string[];
  /** Replaces data_dir (from --data-dir); relative to the current directory. */
  dataDir?: string;
}

export interface LoadOptions {
  /** Path of the TOML file; without it only defaults (and overrides) apply. */
  file?: string;
  overrides?: ConfigOverrides;
}

export interface TextOptions {
  /** Name used in messages (default "config"). */
  source?: string;
  /** Directory relative paths in the text resolve against (default the current directory). */
  baseDir?: string;
  /** Recorded as Config.configFile. */
  configFile?: string;
  overrides?: ConfigOverrides;
}

/** Reads, validates and resolves the configuration. Throws ConfigError. */
export function loadConfig(opts: LoadOptions = {}): Config {
  if (opts.file === undefined)
    return configFromToml('', withOverrides({ source: 'defaults' }, opts.overrides));
  let text: string;
  try {
    text = readFileSync(opts.file, 'utf8');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code ?? 'error';
    throw new ConfigError([`${opts.file}: cannot read the configuration file (${code})`]);
  }
  const file = resolve(opts.file);
  return configFromToml(
    text,
    withOverrides({ source: opts.file, baseDir: dirname(file), configFile: file }, opts.overrides),
  );
}

function withOverrides(t: TextOptions, o: ConfigOverrides | undefined): TextOptions {
  return o === undefined ? t : { ...t, overrides: o };
}

/** Validates TOML text as a configuration (what loadConfig does after reading the file). */
export function configFromToml(text: string, opts: TextOptions = {}): Config {
  const source = opts.source ?? 'config';
  let table: Record<string, unknown>;
  try {
    table = parse(text);
  } catch (e) {
    if (e instanceof TomlError) {
      const first = e.message.split('\n')[0] ?? e.message;
      throw new ConfigError([`${source}: line ${e.line}, column ${e.column}: ${first}`]);
    }
    throw e;
  }
  const problems = new Problems(source);
  const config = build(new Section(problems, '', table), problems, opts);
  if (problems.list.length > 0) throw new ConfigError(problems.list);
  return config;
}

function build(root: Section, problems: Problems, opts: TextOptions): Config {
  const cwd = process.cwd();
  const baseDir = opts.baseDir ?? cwd;
  const empty = (path: string) => () => new Section(problems, path, {});
  const o = opts.overrides ?? {};

  const hostname = root.map('hostname', (h) => {
    if (!isHostName(h))
      throw new MtaError('CONFIG_VALUE', 'permanent', `expected a host name, got ${JSON.stringify(h)}`);
    return h.replace(/\.$/, '');
  });
  const fileDataDir = root.string('data_dir');
  const dataDir =
    o.dataDir !== undefined
      ? resolve(cwd, o.dataDir)
      : fileDataDir !== undefined
        ? resolve(baseDir, fileDataDir)
        : resolve(cwd, DEFAULTS.dataDir);
  const paths: Paths = { baseDir, dataDir };

  const smtp = readSmtp(root.table('smtp'), empty('smtp'), root.has('cluster'));
  if (o.listen !== undefined) {
    const cli = new Problems('command line');
    const listen = o.listen.map((l) => cli.parse('--listen', () => parseListen(l)));
    for (const p of cli.list) problems.list.push(p);
    smtp.listen = listen.filter((l) => l !== undefined);
  }
  const localPresent = root.has('local');
  const config: Config = {
    hostname: hostname ?? DEFAULTS.hostname(),
    dataDir,
    configFile: opts.configFile,
    smtp,
    tls: readTls(root.table('tls'), paths),
    users: readUsers(root.tables('user'), paths),
    queue: readQueue(root.table('queue'), empty('queue'), paths),
    local: readLocal(root.tables('local'), localPresent, paths),
    milters: readMilters(root.tables('milter'), paths),
    routes: readRoutes(root.tables('route'), paths),
    delivery: readDelivery(root.table('delivery'), empty('delivery'), paths),
    etrn: readEtrn(root.tables('etrn')),
    etrnLimits: readEtrnLimits(root.table('etrn_limits'), empty('etrn_limits')),
    odmr: readOdmr(root.table('odmr'), empty('odmr'), paths),
    admin: readAdmin(root.table('admin'), empty('admin'), paths),
    log: readLog(root.table('log'), empty('log')),
    dns: readDns(root.table('dns'), empty('dns')),
    dkim: readDkim(root.tables('dkim'), baseDir),
    auth: readAuth(root.table('auth'), empty('auth'), hostname ?? undefined),
    dnsbl: readDnsbl(root.tables('dnsbl')),
    access: readAccess(root.tables('access')),
    cluster: readCluster(root.table('cluster'), baseDir),
  };
  root.finish();
  if (smtp.submissions.length > 0 && !root.has('tls'))
    problems.add(
      'smtp.submissions',
      'needs [tls] (cert and key): these listeners speak TLS from the first byte',
    );
  checkConfig(config, problems);
  return config;
}
