/* Every map of the socket load balancer, in one place. Names are prefixed bf_lb4_ and carry a
 * layout version (_vN, at most 15 characters in all): a layout change gets a new name, so old and
 * new maps can live side by side while the loader swaps programs over (see docs/datapath.md).
 * All maps are pinned by name under the node's bpffs directory.
 */
#ifndef BF_MAPS_H
#define BF_MAPS_H

#include "types.h"

#define BF_LB4_LAYOUT 2

/* The frontend map's name is a macro so that a test can build a layout bump
 * (-DBF_LB4_FE_MAP=bf_lb4_fe_v2) and prove the loader swaps layouts without an outage. */
#ifndef BF_LB4_FE_MAP
#define BF_LB4_FE_MAP bf_lb4_fe_v2
#endif

/* Frontends: (address, port, protocol, tier) -> backend set, options and policy. Address 0.0.0.0 is a
 * NodePort frontend: it matches any address in bf_lb4_node or 127.0.0.0/8 with no exact entry. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, BF_LB4_FRONTENDS_MAX);
	__type(key, struct bf_lb4_fe_key);
	__type(value, struct bf_lb4_fe);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} BF_LB4_FE_MAP SEC(".maps");

/* Backend sets: (set id, index) -> backend address and port. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, BF_LB4_SLOTS_MAX);
	__type(key, struct bf_lb4_slot_key);
	__type(value, struct bf_lb4_backend);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} bf_lb4_be_v1 SEC(".maps");

/* Membership: (frontend id, backend) -> 1 while the backend belongs to the frontend; affinity is
 * honoured only for members, so a removed backend is never chosen again. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, BF_LB4_SLOTS_MAX);
	__type(key, struct bf_lb4_member_key);
	__type(value, __u8);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} bf_lb4_mem_v1 SEC(".maps");

/* Node addresses: the addresses NodePort (0.0.0.0) frontends match, besides 127.0.0.0/8. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, BF_LB4_NODES_MAX);
	__type(key, __be32);
	__type(value, __u8);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} bf_lb4_node_v1 SEC(".maps");

/* Skipped clients: (frontend id, cgroup id) -> the cgroup's level; consulted only at the levels a
 * frontend's skip_levels names, so a frontend without skip entries pays nothing. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, BF_LB4_SKIPS_MAX);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct bf_lb4_skip_key);
	__type(value, __u8);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} bf_lb4_skip_v1 SEC(".maps");

/* Session affinity: (client netns cookie, frontend id) -> last backend and when it was used. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, BF_LB4_AFFINITY_MAX);
	__type(key, struct bf_lb4_aff_key);
	__type(value, struct bf_lb4_aff);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} bf_lb4_aff_v1 SEC(".maps");

/* QoS windows: frontend id -> redirects admitted in the current one-second window. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, BF_LB4_FRONTENDS_MAX);
	__type(key, __u32);
	__type(value, struct bf_lb4_qos);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} bf_lb4_qos_v1 SEC(".maps");

/* Reverse translation of connected sockets: socket -> (backend, frontend), socket-local storage. */
struct {
	__uint(type, BPF_MAP_TYPE_SK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct bf_lb4_sock);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} bf_lb4_sk_v1 SEC(".maps");

/* Reverse translation of unconnected UDP: (socket cookie, backend) -> frontend, for recvmsg4.
 * Per-CPU LRU lists: an insert takes no lock shared across CPUs. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, BF_LB4_REVERSE_MAX);
	__uint(map_flags, BPF_F_NO_COMMON_LRU);
	__type(key, struct bf_lb4_rev_key);
	__type(value, struct bf_lb4_rev);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} bf_lb4_rev_v1 SEC(".maps");

/* Resolution events (struct bf_lb4_event), read by `balancing datapath events`. */
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, BF_LB4_EVENTS_BYTES);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} bf_lb4_evt_v1 SEC(".maps");

/* Policy names: policy id -> name, written by userspace only, so events decode after a restart. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, BF_LB4_POLICIES_MAX);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, __u32);
	__type(value, struct bf_lb4_policy);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} bf_lb4_pol_v2 SEC(".maps");

/* Writer metadata: layout version and id allocators (one element), written by userspace only. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct bf_lb4_meta);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} bf_lb4_meta_v1 SEC(".maps");

/* Counters: BF_STAT_* -> count, per CPU. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, BF_STATS);
	__type(key, __u32);
	__type(value, __u64);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} bf_lb4_stat_v1 SEC(".maps");

#endif /* BF_MAPS_H */
