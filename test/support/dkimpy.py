#!/usr/bin/python3
# dkimpy (Debian's python3-dkim) as an independent DKIM verifier and signer for the tests, asking
# the tests' DNS server (127.0.0.1:PORT) for keys through dnspython.
#   dkimpy.py verify PORT < message   -> one line per signature "pass|fail d=D s=S a=A";
#                                        exit 0 if there is one and all pass, 1 otherwise
#   dkimpy.py sign SELECTOR DOMAIN KEYFILE [ed25519] < message -> the message with a
#                                        relaxed/relaxed DKIM-Signature prepended: rsa-sha256
#                                        with a PEM key, ed25519-sha256 with a base64 seed
import sys

import dkim
import dns.resolver


def dnsfunc_for(port):
    r = dns.resolver.Resolver(configure=False)
    r.nameservers = ['127.0.0.1']
    r.port = port
    r.lifetime = 5

    def dnsfunc(name, timeout=5):
        n = name.decode() if isinstance(name, bytes) else name
        try:
            ans = r.resolve(n, 'TXT')
        except Exception:
            return b''
        for rr in ans:
            return b''.join(rr.strings)
        return b''

    return dnsfunc


def verify(port):
    msg = sys.stdin.buffer.read()
    d = dkim.DKIM(msg)
    sigs = [v for (k, v) in d.headers if k.lower() == b'dkim-signature']
    ok = len(sigs) > 0
    for i, _ in enumerate(sigs):
        try:
            good = d.verify(idx=i, dnsfunc=dnsfunc_for(port))
        except dkim.DKIMException:
            # DKIM.verify raises for some failures (a body hash mismatch) rather than return False
            good = False
        tags = dkim.util.parse_tag_value(sigs[i].replace(b'\r\n', b''))
        print('%s d=%s s=%s a=%s' % ('pass' if good else 'fail', tags.get(b'd', b'').decode(),
                                     tags.get(b's', b'').decode(), tags.get(b'a', b'').decode()))
        ok = ok and good
    sys.exit(0 if ok else 1)


def sign(selector, domain, keyfile, algo):
    msg = sys.stdin.buffer.read()
    key = open(keyfile, 'rb').read()
    extra = {'signature_algorithm': b'ed25519-sha256'} if algo == 'ed25519' else {}
    sig = dkim.sign(msg, selector.encode(), domain.encode(), key,
                    canonicalize=(b'relaxed', b'relaxed'),
                    include_headers=[b'from', b'to', b'subject', b'date', b'message-id'], **extra)
    sys.stdout.buffer.write(sig + msg)


if __name__ == '__main__':
    if sys.argv[1] == 'verify':
        verify(int(sys.argv[2]))
    elif sys.argv[1] == 'sign':
        sign(sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5] if len(sys.argv) > 5 else 'rsa')
    else:
        sys.exit('usage: dkimpy.py verify PORT | sign SELECTOR DOMAIN KEYFILE')
