// The content of the kill test's messages as a function of their id, shared by the child that
// writes them and the parent that checks them after recovery.

export function expectedData(id: number): Buffer {
  const size = 100 + (id % 20011);
  const head = `Subject: kill test ${id}\r\n\r\n`;
  const unit = `${id}.`;
  return Buffer.from(head + unit.repeat(Math.ceil(size / unit.length)).slice(0, size) + '\r\n');
}

export function expectedRecipients(id: number): string[] {
  const out = [`a${id % 7}@normal.test`];
  if (id % 3 === 0) out.push(`b${id % 11}@held.test`);
  if (id % 4 === 0) out.push(`c${id % 13}@normal.test`);
  return out;
}
