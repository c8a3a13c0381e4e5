"""The in-memory twin of the netlink backend (for the console and API tests without root)."""

from __future__ import annotations

from appliance.network.netlink import NetworkApplyError, step_iface
from appliance.network.plan import CreateVlan, ModelError, Step, apply_steps
from appliance.network.state import IPAddress, NetState


class MemoryBackend:
    def __init__(
        self,
        state: NetState,
        reachable: frozenset[IPAddress] | None = None,
        vlan_supported: bool = True,
    ) -> None:
        self.state = state
        self.reachable = reachable
        self.vlan_supported = vlan_supported
        self.executed: list[Step] = []

    def read_state(self) -> NetState:
        return self.state

    def execute(self, step: Step) -> None:
        if isinstance(step, CreateVlan) and not self.vlan_supported:
            raise NetworkApplyError(
                step.name, "VLAN links (802.1q) are not supported by this kernel", 95
            )
        try:
            self.state = apply_steps(self.state, [step])
        except ModelError as exc:
            raise NetworkApplyError(step_iface(step), str(exc)) from None
        self.executed.append(step)

    def gateway_reachable(self, gateway: IPAddress, timeout: float) -> bool:
        """None: every gateway answers (the demo); otherwise only the listed ones."""
        return self.reachable is None or gateway in self.reachable
