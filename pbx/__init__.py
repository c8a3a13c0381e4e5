"""edgepbx SIP/RTP core."""
