"""The cloud link: the box dials out to the operator's cabinet over WebSocket and serves the
cabinet's API requests through the box's own ASGI app, marked with origin "cloud".

* :mod:`~appliance.link.frames`: the frames and their JSON codec (sans-IO);
* :mod:`~appliance.link.connection`: the connection state machine (sans-IO);
* :mod:`~appliance.link.asgi`: one request through the ASGI app (the origin scope key);
* :mod:`~appliance.link.client`: the box's asyncio adapter (dial, pair, reconnect);
* :mod:`~appliance.link.credentials`: the link credential in local.db;
* :mod:`~appliance.link.cabinet`: the reference cabinet (tests, ``make run``).

The package imports nothing itself, so the sans-IO modules load without asyncio or sockets
(checked by tests/link/test_architecture.py).
"""
