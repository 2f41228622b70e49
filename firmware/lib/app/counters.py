# The uplink counter's rare moments (protocol/SPEC.md §7.3-7.4): a new boot count when the
# per-boot frame count is used up (next_boot), and the `resync` command, the recovery for a
# detector whose counter went backwards (lost state file, swapped board, new key). Loaded for
# the moment by app.run._rare and dropped again, so the main loop's heap never holds it.
from app import store
from protocol.auth import COUNTER_MAX, make_counter


def next_boot(app):
    """The first counter of a new boot count (app.run's next_counter, when n is used up),
    persisted before use. Rule W (SPEC.md §7.3): at boot count 0xFFFF there is no next one;
    the last counter again (the host refuses it as a replay, so nothing new gets through) and
    a fault (yellow) until the detector is re-provisioned (§7.4)."""
    if app.boots >= 0xFFFF:
        app.problems |= 8
        return COUNTER_MAX
    app.boots += 1
    app.n = 1
    store.save_state(app)
    return make_counter(app.boots, 1)


def resync(app, mark):
    """SPEC.md §7.4: make every counter from now on exceed the host's mark, and log pending
    events below it again under such counters. Only ever raises the counter, and a detector
    whose pending events are all at or above the mark logs nothing again, so a replayed
    resync changes nothing. -> (status, boot count, ())."""
    if make_counter(app.boots, app.n) < mark:
        boots = (mark >> 16) + 1
        if boots > 0xFFFF:
            return 4, app.boots, ()  # rule W: no counter space left; re-provision (new id)
        app.boots = boots
        app.n = 0
        store.save_state(app)
    log = app.log
    first = log.first_pending()
    head = log.head
    below = False
    for rid in range(first, head + 1) if first else ():
        r = log.read(rid)
        if r is not None and r[1] < mark:
            below = True
            break
    if not below:
        return 0, app.boots, ()
    # The log is acknowledged in order (every id up to one), so every pending event is logged
    # again, in order, and the old copies acknowledged one by one. Events before the first one
    # below the mark keep their counter: one at the mark is the event the host accepted last
    # (its ACK lost), resent byte-identical it arrives as a duplicate and is ACKed, never
    # stored twice. From the first one below the mark on, each gets a new counter (same seq,
    # time and content: a new frame to the host), so counters still rise in log order.
    restamp = False
    for rid in range(first, head + 1):
        r = log.read(rid)
        if r is not None:
            t, counter, seq, kind, ch, value, thr = r
            if counter < mark:
                restamp = True
            if restamp:
                counter = app.next_counter()
            log.append(t, counter, seq, kind, ch, value, thr)
            app.hal.wdt_feed()  # a flash write each: a long queue must not starve the WDT
        log.ack(rid)  # the old copy, once its new one is logged
    link = app.link
    link.inflight = 0  # its old copy is gone: the next poll puts the new one on the wire
    link.inflight_wire = None
    return 0, app.boots, ()
