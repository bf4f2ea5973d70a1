// The end-of-DATA pipeline: what happens to a message between the final dot and the queue.
// The order is fixed and is this file's invariant:
//   1. our Received: header            (the SMTP session writes it: smtp/server/received.ts)
//   2. incoming authentication checks  (SPF/DKIM/DMARC → Authentication-Results: auth/)
//   3. milters, in configured order    (policy/milter-stage.ts)
//   4. DKIM signing of outgoing mail   (auth/sign-stage.ts)
//   5. the queue                       (policy/hooks.ts: accept resolves once durable)
// Each stage is its own file (under policy/ or auth/) and is wired in daemon.ts; a stage that is not
// configured is not in the list, so an MTA without filters pays one empty loop.
// A stage may change the message (data, size, sender, recipients), mark it for the hold lane
// (quarantine), or end it: a refusal becomes the SMTP reply to the final dot (4xx/5xx — the
// client keeps the message, so there is never a bounce for it), a discard answers 250 and
// queues nothing. A stage that fails throws; the session answers 451 4.3.0.
import { MtaError } from '../errors.js';
import type { ReceivedMessage, SessionContext, SmtpReply } from '../smtp/server/hooks.js';

/**
 * A message on its way through the pipeline: what the session received, as stages left it, its
 * data in memory (read back from the queue's spool for the stages: policy/hooks.ts).
 */
export interface DraftMessage extends Omit<ReceivedMessage, 'data'> {
  /** The message bytes; data[0] is our Received: header (`received`) until a stage prepends. */
  data: Buffer[];
  /** Set by a stage (a milter's quarantine): the message goes to the hold lane, with this reason. */
  hold?: string;
}

export type StageVerdict = null | { reply: SmtpReply } | { discard: string };

export interface AcceptStage {
  /** For logs: "milter", "dkim-sign", ... */
  readonly name: string;
  /** Inspects or edits `m`; null to go on, or a verdict that ends the pipeline. */
  run(m: DraftMessage, ctx: SessionContext | undefined): Promise<StageVerdict>;
}

/** Runs the stages in order; the first verdict wins. */
export async function runStages(
  stages: readonly AcceptStage[],
  m: DraftMessage,
  ctx: SessionContext | undefined,
): Promise<StageVerdict> {
  for (const st of stages) {
    const v = await st.run(m, ctx);
    if (v !== null) return v;
  }
  return null;
}

/** The error that carries a stage's refusal to the session, which sends it as the reply. */
export function refusal(stage: string, r: SmtpReply): MtaError {
  const enhanced = r.enhanced ?? (r.code >= 500 ? '5.7.1' : '4.7.1');
  const text = r.text;
  return new MtaError(
    'POLICY_REFUSED',
    r.code >= 500 ? 'permanent' : 'transient',
    `${stage}: ${typeof text === 'string' ? text : text.join(' ')}`,
    { smtp: { code: r.code, enhanced, text } },
  );
}
