import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import {
  decodeCommand,
  decodeResponse,
  encodeCommand,
  encodeResponse,
  MilterProtocolError,
  type MilterResponse,
  type MtaCommand,
  type Packet,
  PacketReader,
  packet,
} from './protocol.js';

/** Byte strings without NUL (what NUL-terminated fields can carry). */
const bstr = fc
  .uint8Array({ maxLength: 40 })
  .map((a) => Buffer.from(a.map((b) => (b === 0 ? 1 : b))).toString('latin1'));
const u32 = fc.integer({ min: 0, max: 0xffffffff });
const bytes = fc.uint8Array({ maxLength: 300 }).map((a) => Buffer.from(a));

const command: fc.Arbitrary<MtaCommand> = fc.oneof(
  fc.record({ type: fc.constant('optneg'), version: u32, actions: u32, protocol: u32 }),
  fc.record({
    type: fc.constant('macro'),
    stage: fc.constantFrom('C', 'H', 'M', 'R', 'T', 'N', 'E'),
    macros: fc.array(fc.tuple(bstr, bstr), { maxLength: 5 }),
  }),
  fc.record({
    type: fc.constant('connect'),
    hostname: bstr,
    family: fc.constantFrom('4', '6', 'L'),
    port: fc.integer({ min: 0, max: 65535 }),
    address: bstr,
  }),
  fc.record({ type: fc.constant('helo'), name: bstr }),
  fc.record({ type: fc.constant('mail'), args: fc.array(bstr, { maxLength: 4 }) }),
  fc.record({ type: fc.constant('rcpt'), args: fc.array(bstr, { maxLength: 4 }) }),
  fc.record({ type: fc.constant('header'), name: bstr, value: bstr }),
  fc.record({ type: fc.constant('body'), chunk: bytes }),
  fc.record({ type: fc.constant('unknown'), line: bstr }),
  fc.constantFrom<MtaCommand>(
    { type: 'data' },
    { type: 'eoh' },
    { type: 'eom' },
    { type: 'abort' },
    { type: 'quit' },
    { type: 'quitnc' },
  ),
) as fc.Arbitrary<MtaCommand>;

const response: fc.Arbitrary<MilterResponse> = fc.oneof(
  fc.record({
    type: fc.constant('optneg'),
    version: u32,
    actions: u32,
    protocol: u32,
    macros: fc.array(fc.tuple(fc.integer({ min: 0, max: 6 }), bstr), { maxLength: 3 }),
  }),
  fc.record({ type: fc.constant('replycode'), text: bstr }),
  fc.record({ type: fc.constant('quarantine'), reason: bstr }),
  fc.record({ type: fc.constant('addheader'), name: bstr, value: bstr }),
  fc.record({ type: fc.constant('insheader'), index: u32, name: bstr, value: bstr }),
  fc.record({ type: fc.constant('chgheader'), index: u32, name: bstr, value: bstr }),
  fc.record({ type: fc.constant('addrcpt'), rcpt: bstr }),
  fc.record({ type: fc.constant('addrcpt_par'), rcpt: bstr, args: bstr }),
  fc.record({ type: fc.constant('delrcpt'), rcpt: bstr }),
  fc.record({ type: fc.constant('chgfrom'), from: bstr, args: bstr }),
  fc.record({ type: fc.constant('replbody'), chunk: bytes }),
  fc.constantFrom<MilterResponse>(
    { type: 'continue' },
    { type: 'accept' },
    { type: 'reject' },
    { type: 'tempfail' },
    { type: 'discard' },
    { type: 'shutdown' },
    { type: 'connfail' },
    { type: 'progress' },
    { type: 'skip' },
  ),
) as fc.Arbitrary<MilterResponse>;

/** Feeds `wire` to a reader in pieces cut at `cuts`. */
function readAll(wire: Buffer, cuts: number[]): Packet[] {
  const r = new PacketReader();
  const out: Packet[] = [];
  let prev = 0;
  for (const c of [...cuts.map((x) => x % (wire.length + 1)).sort((a, b) => a - b), wire.length]) {
    const got = r.push(wire.subarray(prev, Math.max(prev, c)));
    assert.ok(Array.isArray(got));
    out.push(...got);
    prev = Math.max(prev, c);
  }
  assert.equal(r.pending, 0);
  return out;
}

describe('milter protocol', () => {
  test('every MTA command survives encode, arbitrary splitting and decode', () => {
    fc.assert(
      fc.property(fc.array(command, { maxLength: 8 }), fc.array(fc.nat(), { maxLength: 6 }), (cmds, cuts) => {
        const wire = Buffer.concat(cmds.map(encodeCommand));
        assert.deepEqual(
          readAll(wire, cuts).map(decodeCommand),
          cmds.map((c) => ({ ...c })),
        );
      }),
    );
  });

  test('every filter response survives encode, arbitrary splitting and decode', () => {
    fc.assert(
      fc.property(fc.array(response, { maxLength: 8 }), fc.array(fc.nat(), { maxLength: 6 }), (rs, cuts) => {
        const wire = Buffer.concat(rs.map(encodeResponse));
        assert.deepEqual(
          readAll(wire, cuts).map(decodeResponse),
          rs.map((r) => ({ ...r })),
        );
      }),
    );
  });

  test('the negotiation packet has the documented layout', () => {
    const b = encodeCommand({ type: 'optneg', version: 6, actions: 0x1ff, protocol: 0x1fffff });
    assert.equal(b.toString('hex'), '0000000d4f00000006000001ff001fffff');
  });

  test('the connect packet carries family, port and address', () => {
    const b = encodeCommand({
      type: 'connect',
      hostname: '[1.2.3.4]',
      family: '4',
      port: 25,
      address: '1.2.3.4',
    });
    assert.equal(b.subarray(4).toString('latin1'), 'C[1.2.3.4]\u00004\u0000\u00191.2.3.4\u0000');
  });

  test('a zero or oversized length is a protocol error, not a hang', () => {
    assert.ok(new PacketReader().push(Buffer.from([0, 0, 0, 0])) instanceof MilterProtocolError);
    assert.ok(new PacketReader().push(Buffer.from([0x7f, 0, 0, 0, 0x63])) instanceof MilterProtocolError);
  });

  test('malformed responses decode to errors: unknown code, missing NUL, stray bytes, short numbers', () => {
    for (const p of [
      { cmd: 'Z', data: Buffer.alloc(0) },
      { cmd: 'h', data: Buffer.from('X-A\0no-nul', 'latin1') },
      { cmd: 'c', data: Buffer.from('x') },
      { cmd: 'i', data: Buffer.from([0, 0]) },
      { cmd: 'O', data: Buffer.from([0, 0, 0, 6]) },
    ]) {
      assert.ok(decodeResponse(p) instanceof MilterProtocolError, p.cmd);
    }
  });

  test('arbitrary bytes never make the decoders throw', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 200 }), (a) => {
        const r = new PacketReader().push(Buffer.concat([packet('x'), Buffer.from(a)]));
        if (!Array.isArray(r)) return;
        for (const p of r) {
          for (const cmd of ['O', 'y', 'i', 'm', '2', 'e', 'b', 'c', 'D', 'C', 'M', 'L']) {
            decodeResponse({ cmd, data: p.data });
            decodeCommand({ cmd, data: p.data });
          }
        }
      }),
    );
  });
});
