# Boot, for app.run.App: identity, settings and state files, and the HELLO frame's fields.
# app.run loads this module once, before it allocates the detector, the log and the link, and
# drops it again (with what it imported), so none of this code stays on the heap.
import os
from binascii import unhexlify

from app import VERSION, fwslot, settings, store
from efd import config

IDENTITY = "identity.json"  # {"device": u32, "key": 64 hex digits}: `make provision`


def boot(app, hal):
    """Sets app.problems, boots, host_ctr and n. Returns (setting overrides, device id, key
    bytes or None, HELLO fields or None): app.run builds the detector and the link from them
    once this module is dropped."""
    # bit 0 config file bad, bit 1 not provisioned, bit 2 replay state lost (commands locked,
    # SPEC.md §7.4), bit 3 counter space used up (SPEC.md §7.3 rule W): each shows yellow.
    app.problems = 0
    overrides, ok = settings.load()
    if not ok:
        app.problems |= 1
    device = 0
    key = None
    obj = store.load_json(IDENTITY)
    try:
        dev = int(obj["device"])
        k = unhexlify(obj["key"])
        if 0 < dev < 0xFFFFFFFF and len(k) == 32:
            device = dev
            key = k
    except (TypeError, KeyError, ValueError):
        pass
    if key is None:
        app.problems |= 2
    st = store.load_json(store.STATE)
    if not isinstance(st, dict):
        # A key but no readable state: provisioning writes both, so the state was lost (a flash
        # fault, a board given a copy of the identity). The downlink mark is gone, so any old
        # command would pass as new: lock commands until re-provisioned (SPEC.md §7.4). The
        # lock is persisted with the new state.
        st = {}
        if key is not None:
            app.problems |= 4
            # Its boot count is gone too. Counting again from 1 would repeat counters sent
            # before under this key: with the clock unset, an event could come out byte for
            # byte like one the host stored, be taken for its retransmission, ACKed and never
            # stored (found by the resync end-to-end test). So start at a random boot count in
            # 0x8000..0xBFFF, far above a healthy detector's (one per boot), below rule W's
            # end; resync lifts it further if the host's marks are higher (SPEC.md §7.4).
            r = os.urandom(2)
            st["boots"] = 0x7FFF + ((r[0] << 8 | r[1]) & 0x3FFF)
    if st.get("locked"):
        app.problems |= 4
    app.boots = int(st.get("boots", 0)) + 1
    app.host_ctr = int(st.get("host_ctr", 0))
    app.n = 0  # authenticated uplink frames this boot (counter low 16 bits)
    if app.boots > 0xFFFF:  # rule W: the boot count never wraps; n is used up too
        app.boots = app.n = 0xFFFF
        app.problems |= 8
    store.save_state(app)
    # A new image on trial (app/fwslot.py): the windows it must run without error; else None.
    app.upd = fwslot.trial_windows() or None
    hello = None
    if device:
        hello = {
            "fw": VERSION,
            "reset_cause": hal.reset_cause(),
            "boot_count": app.boots,
            "config_hash": settings.config_hash(config.make(overrides)),
            "host_counter": app.host_ctr,
        }
    return overrides, device, key, hello
