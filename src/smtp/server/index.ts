// Public surface of the SMTP server: what daemon.ts and the ODMR provider import.

export { AuthThrottle, type AuthThrottleOptions } from './auth-throttle.js';
export { ANY, type CommandSpec, type CommandTable, defaultCommands, defaultVerbs } from './commands/table.js';
export { type AnySocket, Connection } from './connection.js';
export type {
  ClientInfo,
  MaybePromise,
  ReceivedMessage,
  RecipientEntry,
  ServerHooks,
  ServerLogger,
  SessionContext,
  SmtpReply,
  TlsInfo,
} from './hooks.js';
export { type ListenerOptions, SmtpListener } from './listener.js';
export type { AuthThrottleLike, SessionOptions } from './options.js';
export { receivedHeader, withProtocol } from './received.js';
export { type InputMode, type PeerInfo, type Phase, type SessionIo, SmtpSession } from './session.js';
export {
  DEFAULT_SERVER_CIPHERS,
  type ServerTlsOptions,
  serverContextOptions,
  serverSecureContext,
  type TlsMinVersion,
} from './tls-policy.js';
