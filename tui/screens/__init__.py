"""The console's screens: the first-boot wizard steps and the status console."""
