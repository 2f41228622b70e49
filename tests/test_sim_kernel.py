"""host_sim.kernel.accumulate (numpy) is the same kernel as efd.rms.accumulate: proven on
arbitrary windows, so the simulator's decisions are the firmware's decisions."""

from __future__ import annotations

from array import array

from hypothesis import given
from hypothesis import strategies as st

from efd import rms
from host_sim import kernel

codes = st.integers(0, rms.ADC_MAX)
# Arbitrary windows: any codes (rails and clip edges included) and any length up to the largest
# the 32-bit bound allows (rms.py: N <= 256), plus n shorter than the buffer.
edge = st.sampled_from([0, 1, rms.CLIP_LO, rms.CLIP_LO + 1, rms.CLIP_HI - 1, rms.CLIP_HI, 4095])
windows = st.lists(st.one_of(codes, edge), min_size=0, max_size=256)


@given(windows, st.data())
def test_numpy_kernel_equals_firmware_kernel(xs, data):
    buf = array("H", xs)
    n = data.draw(st.integers(0, len(xs)))
    a = array("i", [7, 7, 7])
    b = array("i", [-7, -7, -7])
    ra = rms.accumulate(buf, n, a)
    rb = kernel.accumulate(buf, n, b)
    assert (list(a), ra) == (list(b), rb)


def test_full_scale_window_stays_exact():
    """The largest sums a window can produce (all samples at one rail)."""
    for x in (0, rms.ADC_MAX):
        buf = array("H", [x] * rms.N)
        a, b = array("i", [0] * 3), array("i", [0] * 3)
        rms.accumulate(buf, rms.N, a)
        kernel.accumulate(buf, rms.N, b)
        assert list(a) == list(b)
