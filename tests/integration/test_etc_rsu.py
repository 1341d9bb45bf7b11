"""The lot's RSU client against the simulated RSU over real TCP on loopback (OS-chosen ports)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest

from crosspark.identity import IdentitySource, PlateColor
from lot_node.rsu import RsuClient, SimulatedRsu, SimulatedVehicle

WAIT = 10.0  # generous upper bound on a loopback exchange; never a timed assertion

VEHICLES = [
    SimulatedVehicle("粤B12345", PlateColor.YELLOW, 1, obu_id=b"\xa1\xb2\xc3\xd4"),
    SimulatedVehicle("京AD12345", PlateColor.GREEN, 1, obu_id=b"\x12\xff\x34\xfe", card_info=True),
]


@contextlib.asynccontextmanager
async def rsu_and_client(
    framing: str, client_framing: str, **rsu_options
) -> AsyncIterator[tuple[SimulatedRsu, RsuClient]]:
    rsu = SimulatedRsu(framing, VEHICLES, **rsu_options)
    host, port = await rsu.start()
    client = RsuClient(host, port, client_framing, min_backoff=0.01, max_backoff=0.05)
    task = asyncio.create_task(client.run())
    try:
        yield rsu, client
    finally:
        client.stop()
        await asyncio.wait_for(task, WAIT)
        await rsu.stop()


async def next_identities(client: RsuClient, count: int):
    return [await asyncio.wait_for(client.identities.get(), WAIT) for _ in range(count)]


@pytest.mark.parametrize("framing", ["lane", "its", "genvict"])
@pytest.mark.parametrize("client_framing", ["configured", "auto"])
def test_client_turns_the_rsu_vehicles_into_etc_identities(framing, client_framing):
    async def scenario():
        async with rsu_and_client(framing, framing if client_framing == "configured" else "auto") as (_, client):
            return await next_identities(client, 2)

    identities = [identity for identity, _ in asyncio.run(scenario())]
    assert [(i.plate, i.color) for i in identities] == [
        ("粤B12345", PlateColor.YELLOW),
        ("京AD12345", PlateColor.GREEN),
    ]
    assert all(i.source is IdentitySource.ETC for i in identities)


def test_identity_carries_the_obu_serial_and_issuer_from_b2():
    async def scenario():
        async with rsu_and_client("lane", "lane") as (_, client):
            return await next_identities(client, 1)

    ((identity, frame),) = asyncio.run(scenario())
    assert (identity.obu_serial, identity.obu_issuer) == ("4401000012345678", "b9e3b6ab44010001")
    assert frame.obu_id == "a1b2c3d4"


def test_client_reconnects_after_the_rsu_drops_the_connection():
    async def scenario():
        async with rsu_and_client("its", "its") as (rsu, client):
            await next_identities(client, 2)
            await rsu.disconnect_all()
            await asyncio.wait_for(rsu.wait_for_connections(2), WAIT)
            again = await next_identities(client, 2)
            return client.stats.connections, again

    connections, again = asyncio.run(scenario())
    assert connections == 2 and [i.plate for i, _ in again] == ["粤B12345", "京AD12345"]


def test_client_skips_garbage_and_a_torn_frame_and_keeps_going():
    async def scenario():
        async with rsu_and_client("lane", "lane") as (rsu, client):
            await next_identities(client, 2)
            torn = rsu.frames_for(VEHICLES[0])[-1][:9]
            await rsu.send_raw(b"\x00garbage\xfe" + torn)
            await rsu.pass_vehicle(SimulatedVehicle("沪A0000D", PlateColor.YELLOW_GREEN, 12))
            ((identity, _),) = await next_identities(client, 1)
            return identity, client.stats.errors

    identity, errors = asyncio.run(scenario())
    assert (identity.plate, identity.color, identity.vehicle_class) == ("沪A0000D", PlateColor.YELLOW_GREEN, 12)
    assert errors >= 1


def test_test_obu_plates_never_become_identities():
    async def scenario():
        async with rsu_and_client("genvict", "genvict") as (rsu, client):
            await next_identities(client, 2)
            await rsu.pass_vehicle(SimulatedVehicle("测A12345", PlateColor.BLUE))
            await rsu.pass_vehicle(SimulatedVehicle("苏E54321", PlateColor.BLUE))
            ((identity, _),) = await next_identities(client, 1)
            return identity, client.stats.invalid_plates

    identity, invalid = asyncio.run(scenario())
    assert identity.plate == "苏E54321" and invalid == 1


def test_heartbeats_are_counted():
    async def scenario():
        async with rsu_and_client("lane", "lane", heartbeat_interval=0.01) as (_, client):
            for _ in range(2):
                client.heartbeat.clear()
                await asyncio.wait_for(client.heartbeat.wait(), WAIT)
            return client.stats.heartbeats

    assert asyncio.run(scenario()) >= 2
