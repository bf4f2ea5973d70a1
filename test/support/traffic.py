# A mail client that keeps sending, as a busy site's clients do, for tests that reload, stop or
# restart the server under traffic: Python's smtplib, optionally with STARTTLS and AUTH, a few
# messages per session, each with its own Message-ID. It retries after anything that goes wrong
# (a refused connect, a 4xx, a dropped connection) and writes one JSON line per event to OUT:
#   {"ev": "acked", "id": MSGID, "t": ms}          the message got 250 after its data
#   {"ev": "unknown", "id": MSGID, ...}            the connection went during the final reply
#   {"ev": "refused", "id": MSGID, "code": N, "text": ..., "stage": ...}  a reply that was not 2xx
#   {"ev": "error", "stage": ..., "err": ...}      a connect or protocol error without a reply
# It stops (after its session) when the file STOP exists, and idles, with no connection open,
# while PAUSE exists.
#
#   traffic.py PORT TAG OUT STOP PAUSE FROM TO[,TO...] [--starttls] [--user U --password P]
#              [--per-session N] [--size BYTES]
import json
import os
import smtplib
import ssl
import sys
import time


def main():
    a = sys.argv[1:]
    port, tag, out_path, stop, pause, sender, rcpts = a[:7]
    rest = a[7:]
    opt = {'starttls': False, 'user': None, 'password': None, 'per': 3, 'size': 2000}
    i = 0
    while i < len(rest):
        k = rest[i]
        if k == '--starttls':
            opt['starttls'] = True
            i += 1
            continue
        v = rest[i + 1]
        if k == '--user':
            opt['user'] = v
        elif k == '--password':
            opt['password'] = v
        elif k == '--per-session':
            opt['per'] = int(v)
        elif k == '--size':
            opt['size'] = int(v)
        i += 2
    to = rcpts.split(',')
    out = open(out_path, 'a', buffering=1)
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    n = 0

    def log(**ev):
        ev['t'] = int(time.time() * 1000)
        out.write(json.dumps(ev) + '\n')

    body = ('x' * 70 + '\r\n') * max(1, opt['size'] // 72)
    paused = False
    while not os.path.exists(stop):
        if os.path.exists(pause):
            if not paused:
                paused = True
                log(ev='paused')
            time.sleep(0.02)
            continue
        if paused:
            paused = False
            log(ev='resumed')
        stage = 'connect'
        s = None
        try:
            s = smtplib.SMTP('127.0.0.1', int(port), local_hostname='traffic.test', timeout=30)
            def ehlo():
                code, text = s.ehlo()
                if code != 250:
                    log(ev='refused', code=code, text=text.decode('latin1'), stage='ehlo')
                    raise smtplib.SMTPException('refused')
            if s.sock is None:
                raise smtplib.SMTPServerDisconnected('no greeting')
            stage = 'ehlo'
            ehlo()
            if opt['starttls']:
                stage = 'starttls'
                s.starttls(context=ctx)
                ehlo()
            if opt['user']:
                stage = 'auth'
                # One mechanism, so that a refusal is seen as such (login() would try the next
                # mechanism on a closed connection after a 421).
                s.user, s.password = opt['user'], opt['password']
                code, text = s.auth('PLAIN', s.auth_plain)
            for _ in range(opt['per']):
                n += 1
                mid = '<%s-%d@traffic.test>' % (tag, n)
                msg = ('From: %s\r\nTo: %s\r\nSubject: %s %d\r\nMessage-ID: %s\r\n\r\n%s' %
                       (sender, ', '.join(to), tag, n, mid, body))
                stage = 'mail'
                code, text = s.mail(sender)
                if code != 250:
                    log(ev='refused', id=mid, code=code, text=text.decode('latin1'), stage='mail')
                    raise smtplib.SMTPException('refused')
                for r in to:
                    stage = 'rcpt'
                    code, text = s.rcpt(r)
                    if code not in (250, 251):
                        log(ev='refused', id=mid, code=code, text=text.decode('latin1'), stage='rcpt')
                        raise smtplib.SMTPException('refused')
                stage = 'data'
                code, text = s.putcmd('data') or s.getreply()
                if code != 354:
                    log(ev='refused', id=mid, code=code, text=text.decode('latin1'), stage='data')
                    raise smtplib.SMTPException('refused')
                stage = 'dot'
                s.send(msg.replace('\r\n.', '\r\n..').encode('ascii') + b'\r\n.\r\n')
                try:
                    code, text = s.getreply()
                except (smtplib.SMTPServerDisconnected, OSError) as e:
                    log(ev='unknown', id=mid, err=str(e))
                    raise smtplib.SMTPException('cut')
                if code == 250:
                    log(ev='acked', id=mid)
                else:
                    log(ev='refused', id=mid, code=code, text=text.decode('latin1'), stage='dot')
                    raise smtplib.SMTPException('refused')
                if os.path.exists(stop) or os.path.exists(pause):
                    break
            stage = 'quit'
            code, text = s.docmd('quit')
            if code != 221:
                log(ev='refused', code=code, text=text.decode('latin1'), stage='quit')
            s.close()
        except smtplib.SMTPException as e:
            if str(e) not in ('refused', 'cut'):
                code = getattr(e, 'smtp_code', None)
                if code is not None:
                    text = getattr(e, 'smtp_error', b'')
                    log(ev='refused', code=code, text=text.decode('latin1') if isinstance(text, bytes) else str(text), stage=stage)
                else:
                    log(ev='error', stage=stage, err='%s: %s' % (type(e).__name__, e))
            if s is not None:
                s.close()
            time.sleep(0.05)
        except (OSError, ssl.SSLError) as e:
            log(ev='error', stage=stage, err='%s: %s' % (type(e).__name__, e))
            if s is not None:
                s.close()
            time.sleep(0.05)
    log(ev='end', sent=n)


main()
