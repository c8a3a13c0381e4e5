"""edgepbx tui package."""
