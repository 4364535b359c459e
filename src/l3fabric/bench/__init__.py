"""Benchmarks run by ``l3fabric bench NAME``.

Each module ``l3fabric.bench.<name>`` defines ``run(options: dict) -> dict``
returning one flat JSON object of measurements; every benchmark measures its
own baseline in the same run and reports the ratio, because the machines
it runs on are noisy.
"""

BENCHMARKS = {
    "anycast": "Anycast: member and host failover times; flows moved when a member leaves",
    "api": "Neutron API: port creates per second (HTTP and store), listing 10,000 ports",
    "liveness": "Heartbeats of 1,000 hosts: controller CPU, etcd lease keepalives, store writes",
    "fanout": "Watch fan-out: event latency with 1 and 1,000 watching hosts; idle store writes",
    "dataplane": "Edge: pure-L3 path against a floating-IP network node; boot to reachable",
    "sg": "Security groups: throughput and connection rate against port security off; enforcement times",
    "routes": "Host agent: programming 10,000 endpoint routes against ip -batch; convergence",
    "store": "Store: SQLite against etcd (1 and 3 members): creates, port creates, watch latency",
    "gateway": "Gateway pair: private flows through a gateway failure; SNAT rate and speed, synced",
}
