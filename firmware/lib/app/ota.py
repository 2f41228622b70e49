# Signed over-the-air update, the detector's side (protocol/SPEC.md §12; docs/firmware.md
# "Signed over-the-air update"). app.run loads this module for an UPDATE frame and keeps it
# only while an update is in progress (app.upd is then an Ota), so the routine loop never
# holds it; app/ed25519.py is loaded only for the signature check.
#
# The image (tools/fwimage.py makes it):
#
#     0      4  magic b"EFU1"
#     4      2  u16 M, the manifest's length
#     6      M  manifest: text lines (below), signed
#     6+M   64  Ed25519 signature of SHA-256(manifest) under the vendor key (app/vendor_key)
#     70+M   .  the files' bytes, concatenated in manifest order
#
#     efd-update 1
#     version 0 2 0
#     mpy 262                      sys.implementation._mpy of the target (arch + .mpy version)
#     confirm 300                  windows the new image runs without error before it is kept
#     downgrade_from 0 3 0         optional: may replace exactly this newer version
#     devices 12345678 ...         optional: only these device ids (hex)
#     file lib/app/run.mpy 2976 <sha256 hex>
#     ...
#
# Flow: BEGIN (image id = the first 4 bytes of SHA-256(manifest), little-endian, and the size)
# makes upd/session.json; CHUNKs append to upd/image strictly in order; the header (magic,
# manifest, signature) first, then nothing more is taken until the signature verifies (so a
# key holder without the vendor's key can make the detector write at most one header); the
# version rule and the sizes are checked; the rest of the image follows; then every file is
# copied into the spare slot while its SHA-256 is checked against the signed manifest; INSTALL
# starts the trial (app/fwslot.py) and reboots. The checks run one slice a window (tick()), so
# the detection loop never waits for them. Heap: a 512 B copy buffer, one open file each way,
# the verifier's few ints; the manifest is read a line at a time, never held.
import os
import struct
import sys
from binascii import unhexlify
from hashlib import sha256

from app import VERSION, fwslot, store
from efd.compat import const
from protocol import messages as M

# ops, states, errors (SPEC.md §12; names in protocol.host)
_BEGIN = const(1)
_CHUNK = const(2)
_INSTALL = const(4)
_ABORT = const(5)
IDLE = const(0)
_RECEIVING = const(1)
_CHECKING = const(2)
_READY = const(3)
_TRIAL = const(4)
_E_SIG = const(1)
_E_DOWNGRADE = const(2)
_E_IMAGE = const(3)
_E_HASH = const(4)
_E_SIZE = const(5)
_E_OFFSET = const(6)
_E_WRONG = const(7)
_E_BUSY = const(8)
_E_NO_KEY = const(9)
_E_ROLLED_BACK = const(10)
_E_FLASH = const(11)

_MAX_IMAGE = const(393216)  # 384 KB: three times today's image
_MAX_MANIFEST = const(8192)  # streamed from flash, never held
_FLUSH = const(4096)  # the staging file is made durable at every flash block it crosses
_STEP = const(512)  # bytes copied and hashed per slice (one a window)
DIR = "upd"
IMAGE = "upd/image"
SESSION = "upd/session.json"

hook = None  # test hook: called with the name of each flash write step (power-cut tests)


def _step(name):
    if hook is not None:
        hook(name)


def handle(app, p, now):
    """An authenticated UPDATE payload, when no update is in progress (app/commands.py) ->
    the UPDATE_STATUS frame to answer with. Later frames go straight to app.upd.answer()."""
    u = Ota(app)
    if app.upd is None:
        app.upd = u  # kept while an update is in progress; answer() lets it go
    r = u.answer(p, now)
    if app.upd is not u:  # not kept (idle, or a trial runs): nor is this module
        sys.modules.pop("app.ota", None)
        sys.modules["app"].__dict__.pop("ota", None)
    return r


def _rmtree(path):
    """Remove path and everything under it; a generator, one removal a slice (each is a
    LittleFS metadata commit, milliseconds on the board)."""
    try:
        names = [e[0] for e in os.ilistdir(path)]
    except OSError:
        return
    for n in names:
        p = path + "/" + n
        try:
            os.remove(p)
            yield
        except OSError:
            yield from _rmtree(p)
    try:
        os.rmdir(path)
    except OSError:
        pass


def _size(path):
    try:
        return os.stat(path)[6]
    except OSError:
        return -1


def _mkdirs(path):
    p = ""
    for part in path.split("/")[:-1]:
        p = p + "/" + part if p else part
        try:
            os.mkdir(p)
        except OSError:
            pass


def _version(words):
    return (int(words[1]), int(words[2]), int(words[3]))


class Ota:
    def __init__(self, app):
        self.app = app
        self.state = IDLE
        self.error = 0
        self.image = 0
        self.size = 0
        self.have = 0
        self.hdr = 0  # header length (magic, manifest, signature) once known
        self.ok = False  # the signature verified (this session)
        self.f = None  # the staging file, open for appending
        self.work = None  # the running check (a generator, one slice a window)
        self.slot = None  # the slot the image was copied into (ready)
        st = fwslot.state()
        if app.upd is not None and type(app.upd) is int:
            self.state = _TRIAL
            self.image = st.get("image", 0)
            return
        self.image = st.get("image", 0)  # the last image installed (or rolled back)
        if st.get("failed"):
            self.error = _E_ROLLED_BACK
        s = store.load_json(SESSION)
        if not isinstance(s, dict):
            return
        # A session from before a reboot: resume where flash says it is.
        self.image = s.get("image", 0)
        self.size = s.get("size", 0)
        self.hdr = s.get("hdr", 0)
        self.ok = bool(self.hdr)
        self.error = 0
        self.have = max(0, _size(IMAGE))
        if s.get("ready"):
            if s.get("slot") == fwslot.running(st):
                self.wipe()  # installed already (a cut before the session was dropped)
                return
            self.slot = s.get("slot")
            self.state = _READY
            self.have = self.size
            return
        self.state = _RECEIVING
        if not self.ok:
            self._header()  # and the signature check, if the header is all here
        elif self.have == self.size:
            self.state = _CHECKING
            self.work = self._install()

    def answer(self, p, now):
        """An UPDATE payload -> its UPDATE_STATUS frame. An idle session lets go of app.upd
        and of this module (loaded again by the next update)."""
        self.op(p, now)
        r = self.status_frame()
        self.release()
        return r

    def release(self):
        app = self.app
        if self.state == IDLE and app.upd is self:
            app.upd = None
            sys.modules.pop("app.ota", None)
            sys.modules["app"].__dict__.pop("ota", None)

    # -- the status answer ---------------------------------------------------------------------
    def status_frame(self):
        """The tagged UPDATE_STATUS frame (SPEC.md §12), encoded here rather than by
        protocol.messages so the resident codec holds no code for it."""
        enc = self.app.link.enc
        enc._header(M.UPDATE_STATUS, self.app.hal.time(), True, -1)
        v = VERSION
        struct.pack_into(
            "<BBIIIBBB",
            enc.frame,
            10,
            self.state,
            self.error,
            self.image,
            self.have,
            self.size,
            v[0],
            v[1],
            v[2],
        )
        return bytes(enc._wmv[: enc._finish(27, True, -1)])

    # -- ops -------------------------------------------------------------------------------------
    def op(self, p, now):
        """p: the UPDATE payload (protocol.messages checked its length)."""
        op, image = struct.unpack_from("<BI", p, 0)
        if self.state == _TRIAL:
            self.error = _E_BUSY  # one update at a time: this image confirms itself first
            return
        if op == _BEGIN:
            self.begin(image, struct.unpack_from("<I", p, 5)[0])
            return
        if image != self.image or self.state == IDLE:
            if op != 3:
                self.error = _E_WRONG
            return
        if op == _CHUNK:
            self.chunk(struct.unpack_from("<I", p, 5)[0], p[9:])
        elif op == _INSTALL:
            if self.state != _READY:
                self.error = _E_BUSY
                return
            self.error = 0
            fwslot.start_trial(self.slot, image, self.confirm_windows())
            _step("trial")
            self.wipe()
            self.state = _TRIAL
            self.app.reboot_at = now  # as soon as this answer is out (app.run)
        elif op == _ABORT:
            self.wipe()
            self.error = 0
        else:
            self.error = 0 if self.error in (_E_OFFSET, _E_BUSY) else self.error

    def begin(self, image, size):
        if image == self.image and size == self.size and self.state != IDLE:
            self.error = 0  # the same image again: resume, report what is here
            return
        if not 70 < size <= _MAX_IMAGE:
            self.error = _E_SIZE
            return
        try:
            st = os.statvfs("/" if sys.platform == "esp32" else ".")
            free = st[0] * st[3]
        except (OSError, AttributeError):
            free = _MAX_IMAGE * 4
        self.wipe()
        if free < 2 * size + 16384:  # the staged image and its unpacked copy, plus margin
            self.error = _E_SIZE
            return
        try:
            os.mkdir(DIR)
        except OSError:
            pass
        store.save_json(SESSION, {"image": image, "size": size})
        _step("session")
        self.image = image
        self.size = size
        self.state = _RECEIVING
        self.error = 0

    def chunk(self, offset, data):
        if self.state != _RECEIVING:
            self.error = _E_BUSY  # checking (the host polls until it is done) or ready
            return
        n = len(data)
        if offset != self.have or offset + n > self.size:
            self.error = _E_OFFSET  # in order only: the status says where to go on
            return
        limit = self.size if self.ok else (self.hdr or 6 + _MAX_MANIFEST + 64)
        if offset >= limit:
            self.error = _E_BUSY  # nothing past the header until the signature verified
            return
        if offset + n > limit:
            n = limit - offset
        try:
            if self.f is None:
                self.f = open(IMAGE, "ab")
            self.f.write(data[:n])
            self.have += n
            if self.have // _FLUSH != offset // _FLUSH or self.have == limit:
                self.f.flush()
                _step("chunk")
        except OSError:
            self.close()
            self.error = _E_FLASH
            self.have = max(0, _size(IMAGE))
            return
        self.error = 0
        if not self.hdr and self.have >= 6:
            self._header()
        if self.have == (self.size if self.ok else self.hdr):
            self.close()
            self.state = _CHECKING
            self.work = self._install() if self.ok else self._verify()

    def _header(self):
        """hdr from the first 6 bytes, once they are on flash; a wrong magic or manifest size
        ends the session."""
        if self.hdr or self.have < 6:
            return
        if self.f is not None:
            self.f.flush()
        with open(IMAGE, "rb") as f:
            h = f.read(6)
        m = struct.unpack_from("<H", h, 4)[0]
        if h[:4] != b"EFU1" or m > _MAX_MANIFEST or 6 + m + 64 > self.size:
            self.fail(_E_IMAGE)
            return
        self.hdr = 6 + m + 64
        if self.have >= self.hdr and not self.ok:
            self.close()
            self.state = _CHECKING
            self.work = self._verify()

    def close(self):
        if self.f is not None:
            try:
                self.f.close()
            except OSError:
                pass
            self.f = None

    def wipe(self):
        self.close()
        self.work = None
        try:
            os.remove(IMAGE)
        except OSError:
            pass
        try:
            os.remove(SESSION)
        except OSError:
            pass
        _step("wipe")
        self.state = IDLE
        self.have = self.size = self.hdr = 0
        self.ok = False

    def fail(self, error):
        self.wipe()
        self.error = error

    def confirm_windows(self):
        n = 300
        for w in self._lines():
            if w[0] == "confirm":
                n = int(w[1])
        return n

    # -- the checks, one slice a window (app.run calls tick()) ----------------------------------
    def tick(self):
        w = self.work
        if w is None:
            return
        try:
            next(w)
        except StopIteration as e:
            if self.work is w:  # (_verify may have started the copy as its last act)
                self.work = None
            err = e.value
            if err:
                self.fail(err)
        except OSError:
            self.work = None
            self.fail(_E_FLASH)
        # A failed check leaves an idle session with its result: the next answer reports it,
        # then lets go (release).

    def _lines(self):
        """The manifest's lines, split into words, read from flash a line at a time."""
        with open(IMAGE, "rb") as f:
            m = struct.unpack_from("<H", f.read(6), 4)[0]
            n = 0
            while n < m:
                line = f.readline()
                n += len(line)
                if n > m:
                    line = line[: len(line) - (n - m)]
                yield line.decode().split()

    def _pieces(self, start, n):
        with open(IMAGE, "rb") as f:
            f.seek(start)
            buf = bytearray(128)
            mv = memoryview(buf)
            while n > 0:
                k = f.readinto(buf) if n >= 128 else f.readinto(mv[:n])
                if not k:
                    return
                n -= k
                yield mv[:k]

    def _verify(self):
        """Signature, image id, then the manifest's rules. A generator: None when done (the
        session goes on), else an error code."""
        yield  # not in the window of the chunk that completed the header
        try:
            from app import vendor_key

            pub = vendor_key.KEY
        except ImportError:
            return _E_NO_KEY
        m = self.hdr - 70
        with open(IMAGE, "rb") as f:
            f.seek(6 + m)
            sig = f.read(64)
        h = sha256()
        for p in self._pieces(6, m):
            h.update(p)
        d = h.digest()
        if struct.unpack_from("<I", d, 0)[0] != self.image:
            return _E_WRONG
        yield
        from app import ed25519

        yield

        # The vendor signs the manifest's SHA-256 (tools/fwimage.py): hashlib's C SHA-256 over
        # the manifest, then one SHA-512 block in Python instead of ~30.
        ok = yield from ed25519.verify(pub, sig, (d,))
        if not ok:
            return _E_SIG
        yield
        err = self._rules()
        if err:
            return err
        store.save_json(SESSION, {"image": self.image, "size": self.size, "hdr": self.hdr})
        _step("verified")
        self.ok = True
        self.state = _RECEIVING
        if self.have == self.size:  # a header-only image cannot happen (files > 0), but
            self.state = _CHECKING
            self.work = self._install()
        return None

    def _rules(self):
        """The signed manifest's rules against this detector: format, target, version (newer
        only, or the signed downgrade_from this version), devices, sizes, file names."""
        app = self.app
        fmt = ver = mpy = None
        down = None
        devices = None
        total = self.hdr
        for w in self._lines():
            if not w:
                continue
            k = w[0]
            if k == "efd-update":
                fmt = w[1]
            elif k == "version":
                ver = _version(w)
            elif k == "mpy":
                mpy = int(w[1])
            elif k == "downgrade_from":
                down = _version(w)
            elif k == "devices":
                devices = [int(x, 16) for x in w[1:]]
            elif k == "file":
                name = w[1]
                if not name.startswith("lib/") or ".." in name or "//" in name or len(w[3]) != 64:
                    return _E_IMAGE
                total += int(w[2])
        if fmt != "1" or ver is None or mpy != getattr(sys.implementation, "_mpy", None):
            return _E_IMAGE
        if total != self.size:
            return _E_IMAGE
        if devices is not None and app.link.enc.device not in devices:
            return _E_IMAGE
        cur = tuple(VERSION)
        if ver <= cur and down != cur:
            return _E_DOWNGRADE
        return None

    def _install(self):
        """Copy every file into the spare slot, checking its SHA-256; then the session is
        ready for INSTALL. A generator, one _STEP-byte piece a window."""
        slot = fwslot.spare()
        yield from _rmtree(slot)
        _step("rmtree")
        yield
        buf = bytearray(_STEP)
        mv = memoryview(buf)
        src = open(IMAGE, "rb")
        try:
            src.seek(self.hdr)
            for w in self._lines():
                if not w or w[0] != "file":
                    continue
                dst = slot + w[1][3:]  # "lib/app/x.mpy" -> "<slot>/app/x.mpy"
                _mkdirs(dst)
                n = int(w[2])
                h = sha256()
                with open(dst, "wb") as out:
                    while n > 0:
                        k = src.readinto(mv[: min(n, _STEP)])
                        if not k:
                            return _E_HASH
                        out.write(mv[:k])
                        h.update(mv[:k])
                        n -= k
                        yield
                _step("file")
                if h.digest() != unhexlify(w[3]):
                    for _ in _rmtree(slot):
                        pass
                    return _E_HASH
        finally:
            src.close()
        store.save_json(
            SESSION,
            {"image": self.image, "size": self.size, "hdr": self.hdr, "ready": 1, "slot": slot},
        )
        _step("ready")
        self.slot = slot
        self.state = _READY
        return None
