"""Network configuration of the box: read, plan, apply with pyroute2, try with rollback."""
