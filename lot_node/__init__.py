"""The lot system (车场系统): gate decisions, local store, card cache, outbox, statement intake.

* ``gate``: the rules of DESIGN section 5 (pure); ``membership``: the three modes of section 4;
* ``readings``: camera photo / RSU frame / device identity → ``VehicleIdentity``;
* ``service``: Pass and Pay use cases, each decision committed before the barrier opens;
* ``store``: the lot's tables; ``card_sync`` + ``card_cache``: the pushed card list;
* ``outbox``: passages streamed to the platform; ``statements`` + ``reconcile`` + ``report``:
  statement intake and 费用核对; ``fees``: the lot's temporary tariff;
* ``grpc_api`` (GateService), ``node`` (the process), ``cli`` (``crosspark lot serve``).
"""
