/* Structs shared with userspace. datapath/lb/abi.py mirrors each of them, and a test checks
 * the mirrors against this object's BTF (sizes and member offsets). Addresses and ports are in
 * network byte order, as in struct bpf_sock_addr.
 */
#ifndef BF_TYPES_H
#define BF_TYPES_H

#include "common.h"

struct bf_lb4_fe_key {
	__be32 address;
	__be16 port;
	__u8 protocol; /* IPPROTO_TCP or IPPROTO_UDP */
	__u8 tier;     /* BF_TIER_* */
};

struct bf_lb4_fe {
	__u32 frontend_id;        /* stable per (tier, address, port, protocol); keys affinity, QoS, membership */
	__u32 set_id;             /* backend set in bf_lb4_be; replaced as a whole, never edited in place */
	__u32 count;              /* backends in that set; 0 means this tier declines */
	__u32 policy_id;          /* key of bf_lb4_pol; 0 = unnamed */
	__u32 affinity_timeout_s; /* sessionAffinity ClientIP timeout; 0 = no affinity */
	__u32 qos_limit;          /* redirects per frontend per second; 0 = unlimited */
	__u32 flags;              /* BF_FE_* */
	__u32 skip_levels;        /* bit per cgroup level holding a skipped cgroup (bf_lb4_skip); 0 = none */
};

struct bf_lb4_slot_key {
	__u32 set_id;
	__u32 index; /* 0 .. count-1 */
};

struct bf_lb4_backend {
	__be32 address;
	__be16 port;
	__u16 pad;
};

struct bf_lb4_member_key {
	__u32 frontend_id;
	__be32 address;
	__be16 port;
	__u16 pad;
};

struct bf_lb4_aff_key {
	__u64 netns_cookie; /* the client: one network namespace per pod */
	__u32 frontend_id;
	__u32 pad;
};

struct bf_lb4_aff {
	__u64 last_used_ns;
	struct bf_lb4_backend backend;
};

struct bf_lb4_qos {
	struct bpf_spin_lock lock;
	__u32 count;            /* redirects admitted in the current window */
	__u64 window_start_ns;  /* the window opens at its first redirect and lasts one second */
};

struct bf_lb4_rev_key {
	__u64 socket_cookie;
	__be32 address; /* the backend the socket was sent to */
	__be16 port;
	__u16 pad;
};

struct bf_lb4_rev {
	__be32 address; /* the frontend the application asked for */
	__be16 port;
	__u16 pad;
};

/* Per-socket translation of a connected socket (TCP, connected UDP), in socket-local storage:
 * it lives and dies with the socket, so nothing ages out of or pollutes a shared map. */
struct bf_lb4_sock {
	__be32 backend_address;
	__be16 backend_port;
	__u16 pad;
	__be32 frontend_address;
	__be16 frontend_port;
	__u16 pad2;
};

/* A client cgroup whose processes (and those of its descendants) one frontend entry skips. */
struct bf_lb4_skip_key {
	__u32 frontend_id;
	__u32 pad;
	__u64 cgroup_id;
};

struct bf_lb4_policy {
	char name[BF_POLICY_NAME_LEN];
};

struct bf_lb4_meta {
	__u32 layout;           /* layout version the maps were created with */
	__u32 next_frontend_id; /* id allocators, kept in the kernel so a restarted writer never reuses ids */
	__u32 next_set_id;
	__u32 next_policy_id;
};

struct bf_lb4_event {
	__u64 timestamp_ns; /* bpf_ktime_get_ns() */
	__u64 netns_cookie;
	__u64 cgroup_id;
	__u64 socket_cookie;
	__u32 pid;          /* thread-group id in the initial pid namespace */
	__u32 policy_id;
	__be32 orig_address;
	__be32 new_address;
	__be16 orig_port;
	__be16 new_port;
	__u8 protocol;
	__u8 hook;           /* BF_HOOK_* */
	__u8 tier;           /* deciding tier, or the last tier consulted when none redirected */
	__u8 result;         /* BF_RESULT_* */
	__u8 declined_empty; /* bit per tier: matched but had no backend */
	__u8 declined_qos;   /* bit per tier: matched but was over its QoS limit */
	__u8 affinity_hit;
	__u8 declined_self;  /* bit per tier: matched but skips this client (one of its backends) */
	__u8 pad[4];
};

#endif /* BF_TYPES_H */
