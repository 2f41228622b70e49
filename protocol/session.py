# Receiver-side authentication and replay state for one peer (SPEC.md §7).
#
# Rules, in order: a type that needs a tag must have one (E_NO_TAG); the tag must verify under
# the peer's key (E_BAD_TAG; state untouched, so forgeries cannot advance the counter); the
# counter must exceed the last accepted one (accepted, remembered), or equal it with the same
# tag (E_DUPLICATE: a retransmission, answer again but do not act again); anything else is
# E_REPLAY.
#
# Three high-water marks per peer (SPEC.md §7.3), one per class of frame: those a sender
# retransmits until answered (EVENT uplink, COMMAND downlink), RESULT (the cached answer a
# detector re-sends for a retransmitted command) and everything else. Within a class counters
# strictly increase (one frame of it in flight at a time), so a strict mark per class is
# enough. One mark for all would let a frame sent meanwhile (a RESULT while an event awaits
# its ACK, an ACK while a command awaits its RESULT, a CONFIG after a lost RESULT) overtake a
# retransmission, which would then read as a replay forever: an event queue blocked behind it
# (a lost alarm) or a command that timed out although it ran. Found by the firmware's link
# tests and the gateway's command tests; tests/protocol/test_protocol_auth.py keeps it fixed.
from protocol import frame as fr
from protocol import messages
from protocol.auth import equal

# The detector never acts on an untagged ACK, COMMAND or UPDATE: an untagged ACK could silence
# an alarm's retransmission, an untagged command could reset it, an untagged UPDATE write flash.
DETECTOR_REQUIRES = (messages.ACK, messages.COMMAND, messages.UPDATE)
# What hosts require tagged is protocol.host.HOST_REQUIRES (host-only: not on the detector's
# heap).
# The frames a sender retransmits until answered: their own counter class.
RETRANSMITTED = (messages.EVENT, messages.COMMAND)


def replay_class(t):
    """0: retransmitted until answered (EVENT, COMMAND); 1: RESULT; 2: any other type."""
    if t in RETRANSMITTED:
        return 0
    return 1 if t == messages.RESULT else 2


class Peer:
    def __init__(self, key, last_counter=0, requires=(), uplink=None):
        """key: protocol.auth.Key. last_counter: the persisted high-water mark. requires: the
        types that must be tagged. uplink: True on the host (accepts detector->host types
        only), False on the detector, None to skip the direction check."""
        self.key = key
        # Mark and tag per replay_class(). Class 0 (EVENT on the host, COMMAND on the detector)
        # is the one the receiver persists: marks[0], tags[0]. The others start at it after a
        # restart, which only ever under-states them (the sender's counter is shared by all
        # its frames and increases).
        self.marks = [last_counter, last_counter, last_counter]
        self.tags = [None, None, None]
        self.requires = requires
        self.uplink = uplink

    def check(self, frame):
        """None if frame is new and authentic (state advanced), else a typed Error."""
        if self.uplink is not None and messages.uplink(frame.type) != self.uplink:
            return self._err(fr.E_DIRECTION, frame)
        if frame.tag is None:
            if frame.type in self.requires:
                return self._err(fr.E_NO_TAG, frame)
            return None
        raw = frame.raw
        end = len(raw) - fr.CRC_LEN - len(frame.tag)
        if not equal(self.key.tag(raw, 0, end), frame.tag):
            return self._err(fr.E_BAD_TAG, frame)
        c = frame.counter
        k = replay_class(frame.type)
        if c > self.marks[k]:
            self.marks[k] = c
            self.tags[k] = bytes(frame.tag)
            return None
        last_tag = self.tags[k] if c == self.marks[k] else None
        if last_tag is not None and equal(last_tag, frame.tag):
            return self._err(fr.E_DUPLICATE, frame)
        return self._err(fr.E_REPLAY, frame)

    def _err(self, code, frame):
        return fr.Error(code, frame.raw, frame.device, frame.seq, frame.type)
