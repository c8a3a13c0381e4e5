"""The routers the setup console needs (network, setup, keys, pairing, overview)."""

from __future__ import annotations

from appliance.api.routers import keys, network, overview, pairing, setup

console_routers = (setup, network, keys, pairing, overview)
