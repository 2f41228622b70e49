# Receiver-side authentication and replay state for one peer (SPEC.md §7).
#
# Rules, in order: a type that needs a tag must have one (E_NO_TAG); the tag must verify under
# the peer's key (E_BAD_TAG; state untouched, so forgeries cannot advance the counter); the
# counter must exceed the last accepted one (accepted, remembered), or equal it with the same
# tag (E_DUPLICATE: a retransmission, answer again but do not act again); anything else is
# E_REPLAY.
#
# Two high-water marks per peer (SPEC.md §7.3): one for the frames a sender retransmits until
# answered (EVENT uplink, COMMAND downlink) and one for everything else. Senders keep one
# retransmitted frame in flight (stop-and-wait), so a strict mark per class is enough; but one
# mark for all would let an answer sent meanwhile (a RESULT while an event awaits its ACK, an
# ACK while a command awaits its RESULT) overtake the retransmission, which would then read as
# a replay forever and block every later event: an alarm lost. Found by the firmware's
# link tests; tests/protocol/test_protocol_auth.py keeps it fixed.
from protocol import frame as fr
from protocol import messages
from protocol.auth import equal

# The detector never acts on an untagged ACK or COMMAND: an untagged ACK could silence an
# alarm's retransmission, an untagged command could reset it.
DETECTOR_REQUIRES = (messages.ACK, messages.COMMAND)
# Hosts should require tags on what they act on: events and command results.
HOST_REQUIRES = (messages.EVENT, messages.RESULT)
# The frames a sender retransmits until answered: their own counter class.
RETRANSMITTED = (messages.EVENT, messages.COMMAND)


class Peer:
    def __init__(self, key, last_counter=0, requires=(), uplink=None):
        """key: protocol.auth.Key. last_counter: the persisted high-water mark. requires: the
        types that must be tagged. uplink: True on the host (accepts detector->host types
        only), False on the detector, None to skip the direction check."""
        self.key = key
        # Class of retransmitted frames (EVENT / COMMAND): persisted by the receiver.
        self.last = last_counter
        self.last_tag = None
        # Every other tagged frame (RESULT, CONFIG, HELLO, ACK): starts at the persisted mark,
        # which only ever under-states it (counters are shared and increasing on the sender).
        self.last_other = last_counter
        self.last_other_tag = None
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
        if frame.type in RETRANSMITTED:
            if c > self.last:
                self.last = c
                self.last_tag = bytes(frame.tag)
                return None
            last_tag = self.last_tag if c == self.last else None
        else:
            if c > self.last_other:
                self.last_other = c
                self.last_other_tag = bytes(frame.tag)
                return None
            last_tag = self.last_other_tag if c == self.last_other else None
        if last_tag is not None and equal(last_tag, frame.tag):
            return self._err(fr.E_DUPLICATE, frame)
        return self._err(fr.E_REPLAY, frame)

    def _err(self, code, frame):
        return fr.Error(code, frame.raw, frame.device, frame.seq, frame.type)
