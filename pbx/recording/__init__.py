"""Encrypted call recordings: the age v1 file format (:mod:`pbx.recording.age`), the key journal
for crash recovery (:mod:`pbx.recording.journal`) and site key management
(:mod:`pbx.recording.keys`)."""
