"""First-boot setup: the state of the wizard, the site key, pairing and quick extensions."""
