// The configuration's public surface: load it once (daemon, CLI), read the typed result.
// Everything else in src/config/ is internal to loading.

export type * from './schema.js';
export {
  ConfigError,
  type ConfigOverrides,
  configFromToml,
  type LoadOptions,
  loadConfig,
  type TextOptions,
} from './load.js';
export {
  cidrContains,
  cidrListContains,
  formatHostPort,
  type HostPortOptions,
  isHostName,
  isLoopbackHost,
  parseCidr,
  parseHostPort,
} from './net.js';
export { formatDuration, parseDuration, parseSize } from './units.js';
export { DEFAULTS } from './defaults.js';
export { configNotices } from './checks.js';
export { parseRate } from './cluster-section.js';
export { parseDomain } from './values.js';
export { type SessionTimeouts, sessionTimeouts } from './session-limits.js';
