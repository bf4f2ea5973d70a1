// Public surface of ETRN (RFC 1985) and ODMR (RFC 2645): what daemon.ts and the CLI import.

export { type AtrnResult, type ClaimableLanes, deliverHeld, groupByMessage } from './atrn-delivery.js';
export { type CollectResult, type CustomerOptions, collect } from './customer.js';
export {
  EtrnService,
  type EtrnServiceOptions,
  type HeldLanes,
  type OdmrLogger,
  type RunRequest,
} from './etrn.js';
export { type EtrnRequest, etrnReplies, lanesFor, parseEtrnArg } from './etrn-node.js';
export { HeldLocks } from './locks.js';
export { OdmrPoller, type PollerOptions } from './poller.js';
export { EtrnProber, type ProberOptions, type ProbeResult } from './probe.js';
export { OdmrProvider, type OdmrProviderOptions } from './provider.js';
export { parseAtrnArgs } from './provider-commands.js';
export { RateLimiter } from './rate.js';
export { type EtrnOdmr, type EtrnOdmrDeps, type EtrnOdmrEvent, startEtrnOdmr } from './wire.js';
