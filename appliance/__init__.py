"""edgepbx appliance package."""
