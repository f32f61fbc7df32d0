#!/usr/bin/env python3
"""make_seeds.py — writes the seeds of fuzz_query, fuzz_logread, fuzz_jsonl,
fuzz_csv, fuzz_auth, fuzz_endpoints, fuzz_web and the unknown-key seeds of fuzz_event
into fuzz/corpus/ (the
first seeds of fuzz_event and fuzz_ingest come from make_seeds.c, those of
fuzz_state from the target itself: FUZZ_STATE_SEEDS=DIR fuzz_state). Run by
hand from anywhere; the output is committed. Needs only the standard
library: a few lines of MessagePack encoding are below."""
import hashlib
import json
import os
import struct

here = os.path.dirname(os.path.abspath(__file__))
root = os.path.join(here, 'corpus')
vectors = os.path.join(here, '..', 'tests', 'vectors', 'seed101-events.jsonl')
vectors_v2 = os.path.join(here, '..', 'tests', 'vectors', 'seed102-v2-events.jsonl')

class Raw(bytes): pass
class Bin(bytes): pass

def mp(v):
    if isinstance(v, Raw): return bytes(v)
    if v is None: return b'\xc0'
    if v is True: return b'\xc3'
    if v is False: return b'\xc2'
    if isinstance(v, int):
        if 0 <= v < 128: return bytes([v])
        if -32 <= v < 0: return struct.pack('b', v)
        if 0 <= v < 2**32: return b'\xce' + struct.pack('>I', v)
        if 0 <= v < 2**64 and v >= 2**63: return b'\xcf' + struct.pack('>Q', v)
        return b'\xd3' + struct.pack('>q', v)
    if isinstance(v, float): return b'\xcb' + struct.pack('>d', v)
    if isinstance(v, Bin):
        return (b'\xc4' + bytes([len(v)]) if len(v) < 256 else b'\xc6' + struct.pack('>I', len(v))) + bytes(v)
    if isinstance(v, str):
        b = v.encode()
        if len(b) < 32: return bytes([0xa0 | len(b)]) + b
        if len(b) < 256: return b'\xd9' + bytes([len(b)]) + b
        return b'\xdb' + struct.pack('>I', len(b)) + b
    if isinstance(v, list):
        h = bytes([0x90 | len(v)]) if len(v) < 16 else b'\xdd' + struct.pack('>I', len(v))
        return h + b''.join(mp(x) for x in v)
    if isinstance(v, dict):
        h = bytes([0x80 | len(v)]) if len(v) < 16 else b'\xdf' + struct.pack('>I', len(v))
        return h + b''.join(mp(k) + mp(x) for k, x in v.items())
    raise TypeError(v)

def write(target, name, data):
    d = os.path.join(root, target); os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), 'wb') as f: f.write(data)

# fuzz_query
qs = {
 'balance': {'q': 'balance', 'partner': 'acme'},
 'rebate': {'q': 'rebate', 'partner': 'acme-var-1'},
 'tier': {'q': 'tier', 'partner': 'acme'},
 'claims': {'q': 'claims', 'partner': 'acme'},
 'statement': {'q': 'statement', 'partner': 'acme', 'period': '2026-Q2'},
 'liabilities': {'q': 'liabilities'},
 'exceptions': {'q': 'exceptions', 'partner': 'acme', 'kind': 'late', 'from_seq': 17},
 'exceptions-bad-seq': {'q': 'exceptions', 'from_seq': -1},
 'status': {'q': 'status'},
 'unknown-q': {'q': 'drop-tables'},
 'q-not-str': {'q': 7},
 'no-q': {'partner': 'acme'},
 'nested': {'q': 'balance', 'partner': 'acme', 'x': [[[[[[1]]]]]]},
 'float': {'q': 'balance', 'x': 1.5},
 'bin-partner': {'q': 'balance', 'partner': Bin(b'acme')},
}
for n, v in qs.items(): write('fuzz_query', n, mp(v))
write('fuzz_query', 'ext', mp({'q': Raw(b'\xd4\x01\x00')}))

# fuzz_logread
write('fuzz_logread', 'from-max', mp({'from': 1, 'max': 4096}))
write('fuzz_logread', 'zero', mp({'from': 0, 'max': 0}))
write('fuzz_logread', 'max-u32', mp({'from': 2**64 - 1, 'max': 2**32 - 1}))
write('fuzz_logread', 'missing', mp({'from': 1}))
write('fuzz_logread', 'extra-key', mp({'max': 5, 'x': [1, 2], 'from': 3}))
ev = mp({'type': 'sale', 'id': 'INV-1001', 'at': 1784021400000, 'partner': 'acme', 'sku': 'SW-100',
         'qty': 2, 'amount': 123450, 'currency': 'USD'})
h = hashlib.sha256(bytes(32) + struct.pack('>QQH', 1, 1784021400123, 8) + b'pos-acme' + ev).digest()
write('fuzz_logread', 'record', mp([1, 1784021400123, 'pos-acme', Bin(ev), Bin(h)]))

# fuzz_jsonl: one line per type from the vectors, as records and bare events
seen = {}
with open(vectors) as f:
    for line in f:
        r = json.loads(line)
        t = r['event']['type']
        if t not in seen:
            seen[t] = line
            write('fuzz_jsonl', 'record-' + t, line.encode())
            write('fuzz_jsonl', 'bare-' + t, (json.dumps(r['event'], separators=(',', ':')) + '\n').encode())
# ... the section 10 types from the v2 vectors, and a v2 program
with open(vectors_v2) as f:
    for line in f:
        r = json.loads(line)
        t = r['event']['type']
        name = t if t not in seen else t + '-v2' if t == 'program' else None
        if name and name not in seen:
            seen[name] = line
            write('fuzz_jsonl', 'record-' + name, line.encode())
            write('fuzz_jsonl', 'bare-' + name, (json.dumps(r['event'], separators=(',', ':')) + '\n').encode())
        if t == 'program' and r['event']['rebate'].get('basis') == 'growth' and 'growth' not in seen:
            seen['growth'] = line
            write('fuzz_jsonl', 'bare-program-growth',
                  (json.dumps(r['event'], separators=(',', ':')) + '\n').encode())
write('fuzz_jsonl', 'cert-expires-iso', (
    '{"type":"certification","id":"CRT-10","at":"2026-07-14T09:30:00Z","partner":"acme",'
    '"person":"jdoe","cert":"net-pro","action":"earned","expires":"2027-07-14"}\n').encode())
write('fuzz_jsonl', 'rate-real', (
    '{"type":"rate","id":"FX-1","at":"2026-07-14","currency":"EUR","to":"USD","rate":1.0823}\n').encode())
sale = ('{"type":"sale","id":"INV-1001","at":"2026-07-14T09:30:00Z","partner":"acme","sku":"SW-100",'
        '"qty":2,"amount":123450,"currency":"USD"%s}\n')
write('fuzz_jsonl', 'sale-iso', (sale % '').encode())
write('fuzz_jsonl', 'sale-note-limit', (sale % ',"x-note":[[[[[[1]]]]]]').encode())
write('fuzz_jsonl', 'sale-note-deep', (sale % ',"x-note":[[[[[[[1]]]]]]]').encode())
write('fuzz_jsonl', 'sale-note-objects', (sale % ',"x":{"a":{"b":{"c":"\\u00e9\\t"}},"":null}').encode())
write('fuzz_jsonl', 'sale-real', (sale % ',"x":1.5').encode())

# fuzz_csv: whole files (the header first)
rows = ['INV-1001,acme-var-1,SW-100,2,1234.50,USD,2026-07-14T09:30:00Z\n',
        'INV-1002,acme-var-1,"HW-7,rack",1,980000,JPY,2026-07-14\n',
        'INV-1003,acme-var-1,SVC-1,1,12.345,KWD,2026-07-15 08:00:00+03:00\n',
        'INV-1004,"ac""me",SVC-1,1,12.3,EUR,2026-07-15T08:00:00.250+0200\r\n',
        'INV-1005,acme,SVC-1,0,1,USD,2026-07-15\n']
old_header = 'id,partner,sku,qty,amount,currency,at\n'
for i, r in enumerate(rows): write('fuzz_csv', 'row-%d' % i, (old_header + r).encode())
write('fuzz_csv', 'fixed-header', (old_header + ''.join(rows)).encode())
write('fuzz_csv', 'typed-bom-crlf', ('\ufeffType,id,partner,sku,sale,deal,Qty,amount,currency,at,Note\r\n'
    ',S1,acme,SKU-1,,,2,10.50,USD,2026-07-14,"a ""note"", here"\r\n'
    'return,R1,acme,SKU-1,S1,,1,2.50,USD,2026-07-15,\r\n'
    'referral,F1,acme,,,"Big\r\ndeal",,1000,JPY,2026-07-16T10:00:00Z,\r\n'
    ',,,,,,,,,,\r\n'
    'refund,X1,acme,SKU-1,,,1,1,USD,2026-07-15,\r\n').encode())
write('fuzz_csv', 'columns', ('--columns id=InvoiceNo,amount=Net,at=Date\n'
    'InvoiceNo,partner,sku,Net,currency,Date\n'
    'INV-9,acme,S,12.5,JPY,2026-07-14\n'
    'INV-10,acme,S,1250,JPY,2026-07-14\n').encode())
write('fuzz_csv', 'bad-rows', (old_header + 'x,acme,12" rack,1,1,USD,2026-07-14\n'
    'y,"acme"z,S,1,1,USD,2026-07-14\n'
    'z,acme,S,1,1,USD,2026-07-14,,,extra\n'
    'w,acme,"open,1,1,USD,2026-07-14\n').encode())

# fuzz_event: unknown-key shapes at and past the limits
base = {'type': 'sale', 'id': 'S-1', 'at': 1735689600000, 'partner': 'acme', 'sku': 'SKU-9',
        'qty': 3, 'amount': 123450, 'currency': 'USD'}
shapes = {
 'note-nan': Raw(b'\xcb\x7f\xf8\x00\x00\x00\x00\x00\x00'),
 'note-ext': Raw(b'\xd4\x01\x00'),
 'note-limit': [[[[[[1]]]]]],
 'note-deep': [[[[[[[1]]]]]]],
 'note-map': {'a': {'b': [Bin(b'\x00\x01'), 2**64 - 1, -2**63, 0.25, None, True]}},
 'note-int-key': Raw(b'\x81\x01\x02'),
}
for n, v in shapes.items():
    e = dict(base); e['x-note'] = v
    write('fuzz_event', n, mp(e))

# fuzz_auth: authorized-keys files and a CURVE secret key file. A key is the
# Z85 text of 32 bytes (any 32 bytes are a public or a secret key). A CR is
# white space (followed by a blank here: git am drops the CR of a CRLF
# line in a patch).
Z85 = '0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.-:+=^!/*?&<>()[]{}@%$#'
def z85(b):
    words = struct.unpack('>8I', b)
    return ''.join(Z85[w // 85**k % 85] for w in words for k in (4, 3, 2, 1, 0))
def key(name): return z85(hashlib.sha256(name.encode()).digest())
write('fuzz_auth', 'keys', ('# producers\n'
    '%s pos-east sales\n'
    '%s pos-east sales\n'
    '\n'
    '%s\tcerts-bot\tcerts,claims\r \n'
    '  # the finance desk and the auditors\n'
    '%s finance finance\n'
    '%s audit reader,auditor\n'
    '%s portal-acme partner:acme\n'
    % tuple(key(n) for n in ('east-1', 'east-2', 'certs', 'finance', 'audit', 'acme'))).encode())
write('fuzz_auth', 'bad-line', ('%s dist-a sales\nnot-a-key dist-b sales\n' % key('a')).encode())
write('fuzz_auth', 'long-comment', ('#' + 'x' * 1023 + '\n%s dist-long sales' % key('long')).encode())
write('fuzz_auth', 'secret', (key('secret') + '\n').encode())
# what fuzz_auth found: a partner:ID in Latin-1 was taken, and a secret key
# followed by a NUL was read as the key
write('fuzz_auth', 'regress-partner-latin1', key('portal').encode() + b' portal partner:M\xfcller\n')
write('fuzz_auth', 'regress-secret-nul', key('secret').encode() + b'\0x\n')

# fuzz_endpoints: DIR/endpoints.json as `tally up` writes it, and one that
# records the query service alone
up = {'ingest': 'tcp://127.0.0.1:7410', 'events': 'tcp://127.0.0.1:7411',
      'log_read': 'tcp://127.0.0.1:7412', 'query': 'tcp://127.0.0.1:7413', 'web': '127.0.0.1:7414',
      'metrics': {'ledger': '127.0.0.1:7420', 'consume 0/1': '127.0.0.1:7421',
                  'query': '127.0.0.1:7422'},
      'pid': 4242}
write('fuzz_endpoints', 'up', (json.dumps(up, indent=2) + '\n').encode())
write('fuzz_endpoints', 'query-only', b'{"query": "tcp://10.0.0.7:7413", "ingest": null}\n')
# what fuzz_endpoints found: jansson's message quoted a control byte and half
# a character, and said nothing of JSON that is no object
write('fuzz_endpoints', 'regress-control-byte', b'{"query": \x1b[2J}\n')
write('fuzz_endpoints', 'regress-cut-character', b'"\\\xcd\x80"\n')
write('fuzz_endpoints', 'regress-not-object', b'[1]\n')

# fuzz_web: a flags byte (method, body, header padding), then the path and
# the query arguments' names and values, NUL-separated; every page the
# console serves, with and without its arguments, and its refusals
def web(name, path, *args, flags=0):
    write('fuzz_web', name, bytes([flags]) + b'\0'.join([path] + list(args)))

web('root', b'/')
web('partners', b'/partners')
web('partners-filters', b'/partners', b'program', b'apex', b'tier', b'Authorized', b'kind', b'var',
    b'search', b'Acme', b'after', b'p1')
web('partners-json', b'/partners', b'search', b'', b'format', b'json')
web('partner', b'/partners/p1')
web('partner-json', b'/partners/p2', b'format', b'json')
web('partner-held', b'/partners/p3')
web('partner-quiet', b'/partners/p4', b'format', b'html')
web('partner-unknown', b'/partners/p10')
web('statement-html', b'/partners/p1/statement.html')
web('statement-pdf', b'/partners/p2/statement.pdf', b'period', b'2025-01')
web('statement-unknown', b'/partners/p1/statement.txt', b'period', b'2025-Q1')
web('report', b'/reports/apex')
web('report-json', b'/reports/nimbus', b'format', b'json')
web('liabilities', b'/liabilities')
web('liabilities-json', b'/liabilities', b'format', b'json')
web('expiring', b'/expiring')
web('expiring-program', b'/expiring', b'program', b'nimbus', b'format', b'json')
web('exceptions', b'/exceptions')
web('exceptions-filters', b'/exceptions', b'partner', b'p3', b'kind', b'held', b'from_seq', b'1')
web('exceptions-json', b'/exceptions', b'kind', b'held', b'format', b'json')
web('bad-filter', b'/partners', b'color', b'<red>\x01')
web('bad-twice', b'/partners', b'tier', b'Gold', b'tier', b'Silver', b'format', b'json')
web('bad-format', b'/liabilities', b'format', b'xml')
web('bad-flag', b'/expiring', b'program')
web('unknown-path', b'/nope\xff%41')
web('post', b'/partners', flags=2)
web('head-body', b'/partners', flags=1 | 4)
web('too-large', b'/liabilities', flags=31 << 3)
web('too-many', b'/exceptions', *([b'kind', b''] * 17))
# what fuzz_web found: a path not UTF-8 was a 500 (the question to the
# service could not be built), two bad filters leaked the first refusal in
# the query service; and a name cut inside a character in its 400 message
# (made, not found: a 500 in JSON before)
web('regress-path-not-utf8', b'/reports/\x99pegx', flags=0x80)
web('regress-two-bad-filters', b'/partners', b'program', b'a' + b'w' * 134, b'after', b'w' * 135)
web('regress-name-cut', b'/partners', b'a' + '\u00e9'.encode() * 100, b'1', b'format', b'json')
