"""edgepbx firmware package."""
