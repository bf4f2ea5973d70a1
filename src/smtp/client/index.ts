// Public surface of the SMTP client: what delivery/ and odmr/ import.

export { type AuthCredentials, type AuthMechanism, authenticate } from './auth.js';
export { SmtpConnection } from './connection.js';
export { type Extensions, parseEhlo } from './extensions.js';
export {
  defaultTimeouts,
  type HandshakeStage,
  type OutboundTransaction,
  type RecipientResult,
  type RecipientStatus,
  type SendResult,
  SmtpClientError,
  type SmtpClientOptions,
  type SmtpTimeouts,
  type TlsPolicy,
} from './options.js';
export type { NotifyFlag, OutboundRecipient } from './params.js';
export { probe, type ProbeOptions } from './probe.js';
export { type Reply, ReplyParser, ReplyProtocolError } from './reply.js';
export { type AdoptOptions, SmtpClient } from './session.js';
