/* Common includes, constants and tunables of the balancing socket load balancer.
 *
 * Every size is an overridable macro (-DNAME=VALUE); the Python side reads the real capacities
 * back from the kernel maps, so a rebuilt object with other sizes needs no Python change.
 */
#ifndef BF_COMMON_H
#define BF_COMMON_H

#include "vmlinux.h"
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#define NSEC_PER_SEC 1000000000ULL
#define BF_ECONNREFUSED 111 /* vmlinux.h has no errno values */

/* Tiers, in priority order: a lower number is consulted first. */
#define BF_TIER_LOCAL_REDIRECT 0
#define BF_TIER_BALANCING 1
#define BF_TIER_SERVICE 2
#define BF_TIERS 3
#define BF_TIER_NONE 255

/* Hooks that resolve (and therefore emit events). */
#define BF_HOOK_CONNECT4 1
#define BF_HOOK_SENDMSG4 2

/* Result of one resolution, as recorded in an event. */
#define BF_RESULT_REDIRECTED 1
#define BF_RESULT_NO_BACKEND 2  /* every matching tier had no backend */
#define BF_RESULT_DECLINED_QOS 3 /* the last matching tier was over its QoS limit */
#define BF_RESULT_REJECTED 4     /* every matching tier declined and the last one rejects: ECONNREFUSED */
#define BF_RESULT_DECLINED_SELF 5 /* the last matching tier skips this client (one of its own backends) */

/* Frontend flags (struct bf_lb4_fe.flags). */
#define BF_FE_REJECT_WHEN_EMPTY 1 /* the last tier to decline fails the call instead of passing it on */

/* Counters in the per-CPU statistics array. */
#define BF_STAT_REDIRECTED 0
#define BF_STAT_NO_BACKEND 1
#define BF_STAT_DECLINED_QOS 2
#define BF_STAT_AFFINITY_HIT 3
#define BF_STAT_SET_RETRY 4      /* a backend set vanished under a lookup and was re-read */
#define BF_STAT_EVENTS_DROPPED 5 /* ring buffer full */
#define BF_STAT_REVERSE_HIT 6    /* recvmsg4/getpeername4 rewrote an address back */
#define BF_STAT_REJECTED 7       /* connect()/sendmsg() failed with ECONNREFUSED */
#define BF_STATS 8

#ifndef BF_LB4_FRONTENDS_MAX
#define BF_LB4_FRONTENDS_MAX 65536 /* frontend entries, all tiers together */
#endif
#ifndef BF_LB4_SLOTS_MAX
#define BF_LB4_SLOTS_MAX 262144 /* backend slots, all sets together (old and new set during a swap) */
#endif
#ifndef BF_LB4_AFFINITY_MAX
#define BF_LB4_AFFINITY_MAX 131072
#endif
#ifndef BF_LB4_REVERSE_MAX
#define BF_LB4_REVERSE_MAX 262144
#endif
#ifndef BF_LB4_POLICIES_MAX
#define BF_LB4_POLICIES_MAX 131072 /* names; a state may use half, the other half lets names change atomically */
#endif
#ifndef BF_LB4_NODES_MAX
#define BF_LB4_NODES_MAX 16384 /* node addresses that NodePort frontends match */
#endif
#ifndef BF_LB4_SKIPS_MAX
#define BF_LB4_SKIPS_MAX 65536 /* (frontend, cgroup) pairs whose clients a tier skips */
#endif
#define BF_CGROUP_LEVELS 32      /* cgroup nesting levels a skip entry can sit at (bits of skip_levels) */
#define BF_LEVEL_UNKNOWN 255     /* a skipped cgroup that is gone: it has no processes to skip */
#ifndef BF_LB4_EVENTS_BYTES
#define BF_LB4_EVENTS_BYTES (4 * 1024 * 1024)
#endif
#define BF_POLICY_NAME_LEN 256

#endif /* BF_COMMON_H */
