"""Property: every desired-state document, valid or hostile, either applies and reads back from the
kernel equal to what was asked, or is refused with one line and changes nothing (counters included).

The documents go through the same path as `balancing datapath apply`: a file, load_state() with the
pinned maps' capacity, SocketLB.apply(). One SocketLB takes them all in turn, like an agent.

    BALANCING_FUZZ_EXAMPLES=1000 python -m pytest tests/datapath/test_fuzz_state.py   # the long run
"""

from __future__ import annotations

import os
from pathlib import Path

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from datapath.lb import NODE_PORT_ANY, MapReader, SocketLB, StateError, load_state
from datapath.lb.maps import LbMaps
from tests.datapath.conftest import close_and_detach
from tests.helpers.resources import KernelResources

EXAMPLES = int(os.environ.get("BALANCING_FUZZ_EXAMPLES") or 200)
OUTCOMES: dict[str, int] = {"applied": 0, "refused": 0}

# Small pools, so that duplicates, collisions between tiers and repeated names happen often.
ADDRESSES = ["10.96.0.1", "10.96.0.2", "10.96.7.200", "127.0.0.1", NODE_PORT_ANY, "255.255.255.255"]
BAD_ADDRESSES = ["10.96.0", "10.96.0.256", "010.1.2.3", "fd00::1", " 10.1.1.1", "10.1.1.1\n", "", "x"]
address = st.one_of(st.sampled_from(ADDRESSES), st.sampled_from(ADDRESSES), st.sampled_from(BAD_ADDRESSES))
number = st.one_of(
    st.integers(-2, 70000),
    st.sampled_from([0, 1, 53, 80, 65535, 65536, 2**32, 2**64, True, False, 80.0, 1.5, "80", None]),
)
port = st.one_of(st.sampled_from([53, 80, 443, 30080]), number)
name = st.one_of(
    st.sampled_from(
        ["", "default/web", "kube-system/dns", "é" * 127, "é" * 128, "p" * 255, "p" * 256, "a\x00b", "a\nb"]
    ),
    st.text(max_size=40),
)
backend = st.one_of(
    st.fixed_dictionaries({"ip": st.sampled_from(["10.1.0.1", "10.1.0.2", "10.1.0.3"]), "port": port}),
    st.tuples(st.sampled_from(["10.1.0.1", "10.1.0.4"]), port).map(list),
    st.fixed_dictionaries({"ip": address, "port": port, "weight": st.just(1)}),
)
options = st.fixed_dictionaries(
    {},
    optional={
        "backends": st.lists(backend, max_size=4),
        "policy": name,
        "affinityTimeoutSeconds": st.one_of(st.sampled_from([0, 10, 86400, 86401]), number),
        "qosLimit": number,
        "rejectWhenEmpty": st.sampled_from([True, False, "yes", 1, None]),
        "skipCgroups": st.lists(st.one_of(st.sampled_from([1, 4242, 2**40 + 1, 2**64 - 1]), number), max_size=3),
        "sessionAffinity": st.just("ClientIP"),
    },
)
hostile_frontend = st.builds(
    lambda ip, port, protocol, extra: {"ip": ip, "port": port, "protocol": protocol} | extra,
    address,
    port,
    st.sampled_from(["TCP", "UDP", "TCP", "UDP", "tcp", "SCTP", None]),
    options,
)
valid_frontend = st.builds(
    lambda ip, port, protocol, extra: {"ip": ip, "port": port, "protocol": protocol} | extra,
    st.sampled_from(ADDRESSES),
    st.sampled_from([53, 80, 443, 30080]),
    st.sampled_from(["TCP", "UDP"]),
    st.fixed_dictionaries(
        {},
        optional={
            "backends": st.lists(
                st.fixed_dictionaries(
                    {"ip": st.sampled_from(["10.1.0.1", "10.1.0.2", "10.1.0.3"]), "port": st.sampled_from([53, 8080])}
                ),
                max_size=4,
                unique_by=lambda b: (b["ip"], b["port"]),
            ),
            "policy": st.one_of(
                st.sampled_from(["", "default/web", "kube-system/dns", "é" * 127]),
                st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=20),
            ),
            "affinityTimeoutSeconds": st.integers(0, 86400),
            "qosLimit": st.integers(0, 2**32 - 1),
            "rejectWhenEmpty": st.booleans(),
            "skipCgroups": st.lists(st.sampled_from([1, 4242, 2**40 + 1, 2**64 - 1]), max_size=3, unique=True),
        },
    ),
)
frontend = st.one_of(valid_frontend, valid_frontend, valid_frontend, hostile_frontend)
tiers = st.fixed_dictionaries(
    {},
    optional={
        "localRedirect": st.lists(frontend, max_size=4),
        "balancing": st.lists(frontend, max_size=3),
        "service": st.lists(frontend, max_size=6),
        "nodePort": st.lists(frontend, max_size=1),
    },
)


def _ref(entry: dict[str, object]) -> tuple[object, object, object]:
    return entry["ip"], entry["port"], entry["protocol"]


valid_tiers = st.fixed_dictionaries(
    {},
    optional={
        "localRedirect": st.lists(valid_frontend, max_size=3, unique_by=_ref),
        "balancing": st.lists(valid_frontend, max_size=3, unique_by=_ref),
        "service": st.lists(valid_frontend, max_size=6, unique_by=_ref),
    },
)
document = st.one_of(
    st.fixed_dictionaries(
        {"tiers": valid_tiers},
        optional={"nodeAddresses": st.lists(st.sampled_from(["10.77.0.1", "172.30.0.2", "127.0.0.1"]), unique=True)},
    ),
    st.fixed_dictionaries(
        {"tiers": tiers},
        optional={
            "nodeAddresses": st.lists(st.one_of(st.sampled_from(["10.77.0.1", "172.30.0.2"]), address), max_size=3)
        },
    ),
    st.fixed_dictionaries({"tiers": st.one_of(st.none(), st.just([]), st.just("x"))}),
    st.just({}),
    st.just([]),
)
raw_file = st.one_of(
    document.map(lambda doc: yaml.safe_dump(doc, allow_unicode=True).encode()),
    st.sampled_from(
        [
            b"",
            b"  \n",
            b"---\n",
            b"null\n",
            b"~\n",
            b"tiers: {}\n\xff\n",
            b"[" * 10000 + b"]" * 10000,
            b"tiers: [unclosed\n",
            b"tiers:\n\t- x\n",
            b"tiers: {service: [{ip: 10.96.0.1, port: on, protocol: TCP}]}\n",
            b"tiers: {}\n",
        ]
    ),
    st.binary(max_size=60),
)


def snapshot(bpffs: Path) -> dict[str, list[tuple[bytes, bytes]]]:
    with LbMaps(bpffs) as maps:
        opened = (maps.frontends, maps.backends, maps.members, maps.policies, maps.meta, maps.nodes, maps.skips)
        return {each.name: sorted(each.items()) for each in opened}


def test_every_document_applies_and_reads_back_or_is_refused_in_one_line_changing_nothing(
    kernel: KernelResources, bpf_object: Path, tmp_path: Path
) -> None:
    cgroup, bpffs = kernel.cgroup(), kernel.bpffs_dir()
    lb = SocketLB(bpffs, cgroup, bpf_object)
    kernel.registry.add("socket LB", lambda: close_and_detach(lb, bpffs, cgroup))
    lb.apply(load_state(_file(tmp_path, b"tiers: {}\n")))
    assert lb.writer is not None
    writer = lb.writer

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(content=raw_file)
    def check(content: bytes) -> None:
        before = snapshot(bpffs)
        try:
            state = load_state(_file(tmp_path, content), writer.capacity)
            lb.apply(state)
        except StateError as error:
            assert "\n" not in str(error) and str(error), f"not one line: {error!r}"
            assert snapshot(bpffs) == before, f"refused ({error}) but the maps changed"
            OUTCOMES["refused"] += 1
            return
        with MapReader(bpffs) as reader:
            assert reader.state() == state.canonical()
        OUTCOMES["applied"] += 1

    check()
    print(f"\n{EXAMPLES} examples: {OUTCOMES['applied']} applied and read back, {OUTCOMES['refused']} refused")
    assert OUTCOMES["applied"] and OUTCOMES["refused"], "the generator must reach both outcomes"


def _file(directory: Path, content: bytes) -> Path:
    path = directory / "state.yaml"
    path.write_bytes(content)
    return path
