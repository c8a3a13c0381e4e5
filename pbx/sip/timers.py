"""SIP timer values (RFC 3261 §17 and Table 4 of Appendix A). Time is always passed in."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class TimerConfig:
    """T1: RTT estimate; T2: maximum retransmit interval for non-INVITE requests and INVITE
    responses; T4: maximum time a message stays in the network."""

    t1: float = 0.5
    t2: float = 4.0
    t4: float = 5.0

    @property
    def b(self) -> float:  # INVITE transaction timeout
        return 64 * self.t1

    @property
    def d(self) -> float:  # wait for response retransmits (unreliable transports)
        return max(32.0, 64 * self.t1)

    @property
    def f(self) -> float:  # non-INVITE transaction timeout
        return 64 * self.t1

    @property
    def h(self) -> float:  # wait for ACK receipt
        return 64 * self.t1

    @property
    def i(self) -> float:  # wait for ACK retransmits (unreliable transports)
        return self.t4

    @property
    def j(self) -> float:  # wait for non-INVITE request retransmits (unreliable transports)
        return 64 * self.t1

    @property
    def k(self) -> float:  # wait for response retransmits (unreliable transports)
        return self.t4

    @property
    def l(self) -> float:  # noqa: E743 - RFC 6026 Timer L: wait for 2xx INVITE retransmits
        return 64 * self.t1

    @property
    def m(self) -> float:  # RFC 6026 Timer M: wait for retransmitted 2xx at the client
        return 64 * self.t1
