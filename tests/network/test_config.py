"""The desired-state document: bad input is refused with the field named."""

from __future__ import annotations

import pytest

from appliance.network.config import NetworkConfigError, parse_network_config

KNOWN = frozenset({"eth0", "eth1"})


def _errors(doc: dict[str, object], known: frozenset[str] | None = KNOWN) -> dict[str, str]:
    with pytest.raises(NetworkConfigError) as err:
        parse_network_config(doc, known)
    return {e.field: e.message for e in err.value.errors}


@pytest.mark.parametrize(
    ("iface", "field", "words"),
    [
        ({"addresses": ["10.0.0.300/24"]}, "interfaces.0.addresses.0", "not a valid"),
        ({"addresses": ["10.0.0.2/33"]}, "interfaces.0.addresses.0", "not a valid"),
        ({"addresses": ["10.0.0.0/24"]}, "interfaces.0.addresses.0", "network address"),
        ({"addresses": ["10.0.0.255/24"]}, "interfaces.0.addresses.0", "broadcast address"),
        ({"addresses": ["10.0.0.2/24"], "gateway": "10.0.1.1"}, "interfaces.0.gateway", "outside"),
        ({"addresses": ["10.0.0.2/24"], "gateway": "10.0.0.2"}, "interfaces.0.gateway", "own"),
        ({"addresses": ["10.0.0.2/24"], "gateway": "bogus"}, "interfaces.0.gateway", "valid"),
        ({"addresses": []}, "interfaces.0.addresses", "needs an address"),
        ({"dhcp": True, "addresses": ["10.0.0.2/24"]}, "interfaces.0.addresses", "dhcp"),
        ({"addresses": ["10.0.0.2/24"], "mtu": 100}, "interfaces.0.mtu", "576"),
        (
            {"addresses": ["10.0.0.2/24"], "routes": [{"to": "192.0.2.0/24", "via": "10.9.0.1"}]},
            "interfaces.0.routes.0.via",
            "outside",
        ),
        (
            {"addresses": ["10.0.0.2/24"], "voice_vlan": {"id": 4095, "dhcp": True}},
            "interfaces.0.voice_vlan.id",
            "4094",
        ),
        ({"addresses": ["10.0.0.2/24"], "colour": "red"}, "interfaces.0.colour", "not permitted"),
    ],
)
def test_bad_interface_field_is_named(iface: dict[str, object], field: str, words: str) -> None:
    errors = _errors({"interfaces": [{"name": "eth0", **iface}]})
    assert field in errors, errors
    assert words in errors[field]


def test_overlapping_subnets_between_interfaces() -> None:
    errors = _errors(
        {
            "interfaces": [
                {"name": "eth0", "addresses": ["10.0.0.2/16"]},
                {"name": "eth1", "addresses": ["10.0.5.2/24"]},
            ]
        }
    )
    assert errors == {
        "interfaces.1.addresses.0": "10.0.5.2/24 overlaps 10.0.0.2/16 on eth0 "
        "(see interfaces.0.addresses.0)"
    }


def test_unknown_and_duplicate_interfaces() -> None:
    errors = _errors(
        {
            "interfaces": [
                {"name": "eth0", "dhcp": True},
                {"name": "eth0", "dhcp": True},
                {"name": "wlan7", "dhcp": True},
            ]
        }
    )
    assert errors["interfaces.1.name"] == "eth0 is already configured above"
    assert errors["interfaces.2.name"] == "no interface wlan7 on this box (known: eth0, eth1)"


def test_two_default_gateways_refused() -> None:
    errors = _errors(
        {
            "interfaces": [
                {"name": "eth0", "addresses": ["10.0.0.2/24"], "gateway": "10.0.0.1"},
                {"name": "eth1", "addresses": ["10.1.0.2/24"], "gateway": "10.1.0.1"},
            ]
        }
    )
    assert errors == {"interfaces.1.gateway": "only one default gateway (on eth0)"}


def test_a_good_document_with_a_voice_vlan() -> None:
    config = parse_network_config(
        {
            "interfaces": [
                {
                    "name": "eth0",
                    "addresses": ["192.168.1.10/24", "2001:db8::10/64"],
                    "gateway": "192.168.1.1",
                    "dns": ["192.168.1.1", "2001:db8::1"],
                    "voice_vlan": {"id": 100, "addresses": ["10.100.0.1/24"]},
                },
                {"name": "eth1", "dhcp": True},
            ]
        },
        KNOWN,
    )
    target = config.to_target()
    assert [t.name for t in target.links] == ["eth0", "eth0.100", "eth1"]
    assert target.links[1].vlan == ("eth0", 100)
    assert [str(s) for s in target.dns or ()] == ["192.168.1.1", "2001:db8::1"]
