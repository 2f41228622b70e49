# The analog world the twin's board sits in: what each input pin sees at a virtual time.
#
# tools/twin/render.py (CPython) renders a host_sim scenario into one file: a JSON header line,
# the unit waveforms ("shapes": one mains cycle at R points, true RMS 1, x10000 as int16), then
# one fixed-size record per slice (100 ms of scenario time) saying, per CT input, which shape,
# its RMS amplitude, its bias and its noise in microvolts at the pin; per NTC input its pin
# voltage; the arc front end's pulse count. The waveform is evaluated at the absolute time of
# each ADC read, so late or stretched sampling sees the signal it would really see.
import json
import struct
from array import array

import micropython

_REC = "<HiiIHiiIHiiIHiiIIIIIIH"  # 4 x (shape, amp, bias, noise), 4 NTC uV, arc cum, arc n
_REC_SIZE = struct.calcsize(_REC)


class Inputs:
    def __init__(self, path):
        f = open(path, "rb")
        h = json.loads(f.readline())
        self.header = h
        self.hz = h["mains_hz"]
        self.slice_us = h["slice_us"]
        self.n = h["n_slices"]
        self.r = h["shape_points"]
        n_shapes = h["n_shapes"]
        self.shapes = array("h", bytes(2 * self.r * n_shapes))
        f.readinto(self.shapes)
        self.base = f.tell()
        self.f = f
        self.buf = bytearray(_REC_SIZE)
        self.k = -1
        self.rec = None
        self.t0 = self.t1 = -1
        self.vcc_mv = 3300  # the 3.3 V rail (launch.py "vcc_mv")
        self.gain_err_ppm = [0, 0, 0, 0]  # the CT front ends off nominal (launch.py)
        self.seed = 12345
        # Button presses (scenario resets): [[t0_us, t1_us], ...], pin low in between.
        self.presses = h.get("presses", [])

    def _at(self, t_us):
        k = t_us // self.slice_us
        if k >= self.n:
            k = self.n - 1  # past the end: hold the last slice
        if k != self.k:
            self.f.seek(self.base + k * _REC_SIZE)
            self.f.readinto(self.buf)
            r = struct.unpack(_REC, self.buf)
            ge = self.gain_err_ppm
            if ge[0] or ge[1] or ge[2] or ge[3]:
                # A front end whose true units per count are (1 + err) x nominal: the pin
                # sees 1 / (1 + err) of the nominal signal for the same primary current.
                r = list(r)
                for ch in range(4):
                    r[4 * ch + 1] = r[4 * ch + 1] * 1000000 // (1000000 + ge[ch])
            if self.vcc_mv != 3300:
                # The board's 3.3 V rail off nominal: the CT biases (VCC / 2) and the NTC
                # dividers scale with it; the CT signals themselves do not.
                r = list(r)
                for j in (2, 6, 10, 14, 16, 17, 18, 19):
                    r[j] = r[j] * self.vcc_mv // 3300
            self.rec = r
            self.k = k
            self.t0 = k * self.slice_us
            self.t1 = self.t0 + self.slice_us if k < self.n - 1 else 1 << 62
        return self.rec

    @micropython.native
    def _noise(self, sigma):
        # Triangular noise with standard deviation sigma (sum of two uniforms, x sqrt(6)):
        # cheap, deterministic (LCG), close enough to the simulator's Gaussian for thresholds.
        s = self.seed
        s = (s * 1103515245 + 12345) & 0x7FFFFFFF
        u = s
        s = (s * 1103515245 + 12345) & 0x7FFFFFFF
        self.seed = s
        return (u + s - 0x7FFFFFFF) * sigma * 2449 // (0x7FFFFFFF * 1000)

    @micropython.native
    def ct_uv(self, ch, t_us):
        """Microvolts at CT input ch (0 residual, 1..3 phases) at time t_us."""
        r = self.rec
        if not self.t0 <= t_us < self.t1:
            r = self._at(t_us)
        j = 4 * ch
        amp = r[j + 1]
        v = r[j + 2]
        if amp:
            idx = ((t_us * self.hz) % 1000000) * self.r // 1000000
            v += amp * self.shapes[r[j] * self.r + idx] // 10000
        if r[j + 3]:
            v += self._noise(r[j + 3])
        return v

    def ntc_uv(self, i, t_us):
        return self._at(t_us)[16 + i]

    def arc_pulses(self, t_us):
        """Falling edges from the arc front end since power-on (spread evenly in each slice)."""
        r = self._at(t_us)
        k = t_us // self.slice_us
        if k >= self.n:
            return r[20] + r[21]
        return r[20] + r[21] * (t_us - k * self.slice_us) // self.slice_us

    def button_down(self, t_us):
        for p in self.presses:
            if p[0] <= t_us < p[1]:
                return True
        return False
