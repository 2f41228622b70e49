# Differential driver: run with the same stdin under MicroPython and CPython, compare stdout.
#
# stdin: one JSON object {"decode": [hex...], "encode": [[type, t, fields, auth, seq, counter]],
# "hmac": [[key_hex, msg_hex]...], "crc": [hex...], "stream": [hex...]}; stdout: one JSON
# object with the results in the same order. Uses only what both interpreters have.
import json
import sys
from binascii import hexlify, unhexlify

from protocol import auth, crc, stream
from protocol import frame as fr

req = json.loads(sys.stdin.read())
key = auth.Key(unhexlify(req.get("key", "00")))
out = {}


def h(b):
    return hexlify(bytes(b)).decode()


out["decode"] = [fr.decode(unhexlify(x)).to_dict() for x in req.get("decode", [])]
enc = fr.Encoder(req.get("device", 0), key)
out["encode"] = [
    h(enc.message(t, tm, fields, auth=a, seq=seq, counter=ctr))
    for t, tm, fields, a, seq, ctr in req.get("encode", [])
]
out["hmac"] = [h(auth.Key(unhexlify(k)).mac(unhexlify(m))) for k, m in req.get("hmac", [])]
out["crc"] = [crc.crc16_py(unhexlify(x)) for x in req.get("crc", [])]
dec = stream.StreamDecoder()
res = []
for chunk in req.get("stream", []):
    for r in dec.feed(unhexlify(chunk)):
        res.append(r.to_dict())
out["stream"] = res
tele = req.get("telemetry")
if tele:
    n = enc.telemetry(*tele)
    out["telemetry"] = h(enc.view(n))
print(json.dumps(out))
