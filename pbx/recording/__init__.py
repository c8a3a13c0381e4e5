"""Encrypted call recordings, the file layer: age v1 files written while the call runs.

- :mod:`pbx.recording.age`: the format. :class:`~pbx.recording.age.AgeWriter` (streaming,
  crash-recoverable), :class:`~pbx.recording.age.AgeReader` (random access by chunk),
  :func:`~pbx.recording.age.recover` / :func:`~pbx.recording.age.recover_pending` (finalize a
  file cut short by a crash), :func:`~pbx.recording.age.shred` (retention), and one error
  hierarchy rooted at :class:`~pbx.recording.age.AgeError`.
- :mod:`pbx.recording.journal`: the key journal on tmpfs that makes crash recovery possible
  without the site identity.
- :mod:`pbx.recording.keys`: the passphrase-protected site identity, rotation, escrow, backup.

A recorder uses it like this::

    keyring = Keyring("/var/lib/edgepbx/keys")
    journal = KeyJournal("/run/edgepbx/recording-keys")
    writer = AgeWriter.create(path, keyring.recording_recipients(), journal=journal,
                              keep_head=True)
    writer.write(wav_header_placeholder)
    writer.write(frame)                        # as audio arrives; cheap, never blocks on disk
    result = writer.close(head=final_wav_header)  # fsyncs: call it off the event loop
    # result.sha256, result.ciphertext_size + keyring.recording_fingerprints() -> metadata DB

    # at start-up, after a crash:
    for outcome in recover_pending(journal, head=wav_header_for_size): ...

Playback: ``AgeReader.open(path, keyring.unlock(passphrase))`` then ``iter_range(start, stop)``.
"""
