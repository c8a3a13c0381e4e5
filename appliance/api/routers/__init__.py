"""One router per domain of the box; each route names its permission (policy.require)."""
