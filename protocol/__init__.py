# Compact binary wire protocol of the electrical-fire detector (normative text: SPEC.md).
#
# The same files run on the detector (copied to /lib/protocol/) and on the host. Import the
# submodules you need (frame, stream, session, auth); this file stays empty of imports so a
# detector that only encodes does not load the decoder.
