meta:
  id: efd_frame
  title: EFD electrical-fire detector wire protocol, version 1 (one frame)
  license: MIT
  endian: le
  ks-version: 0.11
doc: |
  One frame of the EFD detector protocol (protocol/SPEC.md, the normative text).

  This description covers the frame AFTER COBS decoding: on the wire every frame is
  COBS-stuffed and followed by a 0x00 delimiter (SPEC.md section 3). Kaitai Struct cannot
  undo COBS, so split the stream at 0x00 and COBS-decode each segment first (e.g. with
  protocol/cobs.py or any COBS library), then parse the result with this spec.

  Not checked here: the CRC (field `crc` is CRC-16/IBM-3740 of all bytes before it:
  poly 0x1021, init 0xFFFF, no reflection, check value 0x29B1) and the HMAC tag; an
  integrator must verify both (SPEC.md sections 4.2 and 7).
doc-ref: protocol/SPEC.md
seq:
  - id: hdr
    type: u1
    valid:
      # Version 1, and a type of SPEC.md section 5: the codec's `version` and `unknown_type`.
      expr: ((_ >> 5) & 3) == 1 and (((_ & 31) >= 1 and (_ & 31) <= 7) or ((_ & 31) >= 16 and (_ & 31) <= 19))
    doc: bit 7 A (counter and tag present), bits 6-5 version (1), bits 4-0 type
  - id: device
    type: u4
  - id: seq_no
    type: u1
    doc: per-device sequence number, mod 256
  - id: time
    type: u4
    doc: seconds since 2020-01-01T00:00:00Z; 0 = clock not set
  - id: payload
    size: _io.size - 12 - auth_len
    type:
      switch-on: msg_type
      cases:
        'msg_type::hello': hello
        'msg_type::telemetry': telemetry
        'msg_type::event': event
        'msg_type::result': result
        'msg_type::config': config
        'msg_type::snapshot': snapshot
        'msg_type::poll': poll
        'msg_type::ack': ack
        'msg_type::command': command
        'msg_type::update_status': update_status
        'msg_type::update': update
  - id: counter
    type: u4
    if: authenticated
  - id: tag
    size: 8
    if: authenticated
    doc: first 8 bytes of HMAC-SHA256(key, all bytes before the tag)
  - id: crc
    type: u2
instances:
  authenticated:
    value: (hdr & 0x80) != 0
  version:
    value: (hdr >> 5) & 3
  msg_type:
    value: hdr & 0x1f
    enum: msg_type
  auth_len:
    value: 'authenticated ? 12 : 0'
types:
  hello:
    seq:
      - id: fw
        type: u1
        repeat: expr
        repeat-expr: 3
      - id: reset_cause
        type: u1
        enum: reset_cause
      - id: boot_count
        type: u4
      - id: config_hash
        type: u4
      - id: host_counter
        type: u4
  telemetry:
    seq:
      - id: residual_ma
        type: u2
        doc: mA; 0xffff = not available
      - id: temp_dc
        type: s2
        repeat: expr
        repeat-expr: 4
        doc: 0.1 degC; -32768 = not available
      - id: line_ca
        type: u2
        repeat: expr
        repeat-expr: 3
        doc: 0.01 A; 0xffff = not available
      - id: status
        type: u2
        doc: bits 0-8 alarm latched on channel n; 9 prealarm; 10 fault; 11 selftest; 12 clock unset; 13 events pending
  event:
    seq:
      - id: kind
        type: u1
        enum: kind
      - id: channel
        type: u1
        enum: channel
      - id: value
        type: s4
      - id: threshold
        type: s4
  result:
    seq:
      - id: cmd_counter
        type: u4
      - id: cmd
        type: u1
        enum: cmd
      - id: status
        type: u1
        enum: result_status
      - id: value
        type: s4
  config:
    seq:
      - id: config_hash
        type: u4
      - id: whole_params
        size: 0
        valid:
          expr: (_io.size - 4) % 5 == 0
        doc: (u8 id, i32 value) pairs fill the rest exactly (the codec's `length` otherwise)
      - id: params
        type: param
        repeat: eos
  param:
    seq:
      - id: id
        type: u1
        enum: param_id
      - id: value
        type: s4
  snapshot:
    seq:
      - id: snap_id
        type: u2
      - id: channel
        type: u1
        enum: channel
      - id: chunk
        type: u1
      - id: chunks
        type: u1
      - id: scale_exp
        type: s1
      - id: rate_hz
        type: u2
      - id: trigger
        type: u2
      - id: offset
        type: u2
      - id: whole_samples
        size: 0
        valid:
          expr: (_io.size - 12) % 2 == 0 and _io.size - 12 <= 2 * 96
        doc: at most 96 i16 samples filling the rest exactly (the codec's `length` otherwise)
      - id: samples
        type: s2
        repeat: eos
  poll:
    seq: []
  ack:
    seq:
      - id: ack_type
        type: u1
        enum: msg_type
      - id: ack_seq
        type: u1
      - id: ack_crc
        type: u2
  command:
    seq:
      - id: cmd
        type: u1
        enum: cmd
      - id: args
        type:
          switch-on: cmd
          cases:
            'cmd::reset': reset_args
            'cmd::set_config': set_config_args
            'cmd::time_sync': time_sync_args
            'cmd::snapshot': snapshot_args
            'cmd::resync': resync_args
  reset_args:
    seq:
      - id: channel
        type: u1
        enum: reset_channel
  set_config_args:
    seq:
      - id: whole_params
        size: 0
        valid:
          expr: (_io.size - 1) % 5 == 0
        doc: |
          (u8 id, i32 value) pairs, no leftover byte (the codec's `length` otherwise); the
          arguments share the command payload's stream, after its 1-byte code
      - id: params
        type: param
        repeat: eos
  time_sync_args:
    seq:
      - id: set_time
        type: u4
  snapshot_args:
    seq:
      - id: snap_id
        type: u2
  resync_args:
    seq:
      - id: mark
        type: u4
  update_status:
    doc: the detector's progress in a signed update (SPEC.md section 12)
    seq:
      - id: state
        type: u1
        enum: update_state
      - id: result
        type: u1
        enum: update_result
        doc: what the last UPDATE came to
      - id: image
        type: u4
        doc: SHA-256(manifest)[0:4], little-endian
      - id: have
        type: u4
        doc: image bytes on flash, in order from 0 (the next chunk's offset)
      - id: size
        type: u4
      - id: fw
        type: u1
        repeat: expr
        repeat-expr: 3
        doc: the version the detector runs
  update:
    doc: one step of a signed update (SPEC.md section 12)
    seq:
      - id: op
        type: u1
        enum: update_op
      - id: image
        type: u4
      - id: args
        type:
          switch-on: op
          cases:
            'update_op::begin': update_begin
            'update_op::chunk': update_chunk
  update_begin:
    seq:
      - id: size
        type: u4
  update_chunk:
    seq:
      - id: offset
        type: u4
      - id: data
        size-eos: true
        valid:
          expr: _.size >= 1 and _.size <= 200
        doc: 1 to 200 image bytes at offset (the codec's `length` otherwise)
enums:
  msg_type:
    1: hello
    2: telemetry
    3: event
    4: result
    5: config
    6: snapshot
    7: update_status
    16: poll
    17: ack
    18: command
    19: update
  update_op:
    1: begin
    2: chunk
    3: status
    4: install
    5: abort
  update_state:
    0: idle
    1: receiving
    2: checking
    3: ready
    4: trial
  update_result:
    0: ok
    1: bad_signature
    2: downgrade
    3: bad_image
    4: bad_hash
    5: too_large
    6: bad_offset
    7: wrong_image
    8: busy
    9: no_key
    10: rolled_back
    11: flash
  kind:
    1: prealarm
    2: alarm
    3: clear
    4: fault
    5: fault_clear
    6: reset
    7: selftest
    8: ror
  channel:
    0: residual
    1: temp0
    2: temp1
    3: temp2
    4: temp3
    5: phase0
    6: phase1
    7: phase2
    8: arc
  reset_channel:
    # The reset command's target: a channel, or 0xFF for all of them (SPEC.md section 5.9).
    # Only here: 255 is no channel anywhere else.
    0: residual
    1: temp0
    2: temp1
    3: temp2
    4: temp3
    5: phase0
    6: phase1
    7: phase2
    8: arc
    255: all
  reset_cause:
    0: unknown
    1: power_on
    2: hard
    3: watchdog
    4: deepsleep
    5: soft
  cmd:
    1: reset
    2: selftest
    3: set_config
    4: time_sync
    5: snapshot
    6: reboot
    7: get_config
    8: resync
    9: link_status
  result_status:
    0: ok
    1: unknown_command
    2: bad_argument
    3: busy
    4: failed
    5: locked
  param_id:
    1: mains_hz
    2: leak_set_ma
    3: leak_delay_s
    4: leak_prealarm_pct
    5: leak_hyst_pct
    6: temp_set_c
    7: temp_delay_s
    8: temp_prealarm_pct
    9: temp_hyst_c
    10: temp_ror_c_per_min
    11: temp_channels
    12: line_set_a
    13: line_delay_s
    14: line_prealarm_pct
    15: line_hyst_pct
    16: phase_channels
    17: arc_enabled
    18: fault_delay_s
    19: res_gain_q12
    20: phase_gain_q12
    21: ct_bias_lo
    22: ct_bias_hi
