/* lb4_: frontend lookup and backend selection, tier by tier (LocalRedirect > Balancing > Service).
 *
 * `__lb4_*` helpers take plain values and touch only the maps, so they can be exercised on their
 * own; `lb4_resolve` drives them for one socket address.
 */
#ifndef BF_LB4_H
#define BF_LB4_H

#include "maps.h"

struct lb4_decision {
	struct bf_lb4_backend backend;
	__u32 policy_id;
	__u8 tier;
	__u8 result;
	__u8 declined_empty;
	__u8 declined_qos;
	__u8 declined_self;
	__u8 affinity_hit;
	__u8 matched;
	__u8 reject; /* the last matching tier rejects when it declines */
};

static __always_inline void lb4_stat_inc(__u32 counter)
{
	__u64 *value = bpf_map_lookup_elem(&bf_lb4_stat_v1, &counter);

	if (value)
		*value += 1; /* per-CPU slot: no atomics needed */
}

/* Admit one more redirect for a frontend with a QoS limit, or refuse it. The window opens at the
 * first redirect after the previous window closed and lasts one second; it admits `limit`. */
static __always_inline bool __lb4_qos_admit(__u32 frontend_id, __u32 limit, __u64 now)
{
	struct bf_lb4_qos fresh = {};
	struct bf_lb4_qos *qos;
	bool admit = true;

	if (!limit)
		return true;
	qos = bpf_map_lookup_elem(&bf_lb4_qos_v1, &frontend_id);
	if (!qos) {
		bpf_map_update_elem(&bf_lb4_qos_v1, &frontend_id, &fresh, BPF_NOEXIST);
		qos = bpf_map_lookup_elem(&bf_lb4_qos_v1, &frontend_id);
		if (!qos)
			return true; /* map full: fail open rather than refuse service */
	}
	bpf_spin_lock(&qos->lock);
	if (qos->count == 0 || now - qos->window_start_ns >= NSEC_PER_SEC) {
		qos->window_start_ns = now;
		qos->count = 1;
	} else if (qos->count < limit) {
		qos->count += 1;
	} else {
		admit = false;
	}
	bpf_spin_unlock(&qos->lock);
	return admit;
}

/* The backend this client used last, if affinity is on, not expired, and it is still a member. */
static __always_inline bool __lb4_affinity_get(const struct bf_lb4_fe *fe, __u64 netns_cookie, __u64 now,
					       struct bf_lb4_backend *out)
{
	struct bf_lb4_aff_key key = { .netns_cookie = netns_cookie, .frontend_id = fe->frontend_id };
	struct bf_lb4_member_key member = {};
	struct bf_lb4_aff *aff;

	if (!fe->affinity_timeout_s)
		return false;
	aff = bpf_map_lookup_elem(&bf_lb4_aff_v1, &key);
	if (!aff)
		return false;
	if (now - aff->last_used_ns >= (__u64)fe->affinity_timeout_s * NSEC_PER_SEC)
		return false;
	member.frontend_id = fe->frontend_id;
	member.address = aff->backend.address;
	member.port = aff->backend.port;
	if (!bpf_map_lookup_elem(&bf_lb4_mem_v1, &member))
		return false; /* the backend left the frontend: never choose it again */
	aff->last_used_ns = now;
	*out = aff->backend;
	return true;
}

static __always_inline void __lb4_affinity_set(const struct bf_lb4_fe *fe, __u64 netns_cookie, __u64 now,
					       const struct bf_lb4_backend *backend)
{
	struct bf_lb4_aff_key key = { .netns_cookie = netns_cookie, .frontend_id = fe->frontend_id };
	struct bf_lb4_aff value = { .last_used_ns = now, .backend = *backend };

	if (fe->affinity_timeout_s)
		bpf_map_update_elem(&bf_lb4_aff_v1, &key, &value, BPF_ANY);
}

/* A random backend of the frontend's current set. The writer replaces a set by writing a new one,
 * switching the frontend entry in one update, and deleting the old set later; should a slot still
 * vanish under us, re-read the frontend once and pick from the set it points to now. */
static __always_inline bool __lb4_pick(const struct bf_lb4_fe_key *key, struct bf_lb4_fe *fe,
				       struct bf_lb4_backend *out)
{
	struct bf_lb4_slot_key slot = {};
	struct bf_lb4_backend *backend;
	struct bf_lb4_fe *fresh;
	int attempt;

#pragma unroll
	for (attempt = 0; attempt < 2; attempt++) {
		if (!fe->count)
			return false;
		slot.set_id = fe->set_id;
		slot.index = bpf_get_prandom_u32() % fe->count;
		backend = bpf_map_lookup_elem(&bf_lb4_be_v1, &slot);
		if (backend) {
			*out = *backend;
			return true;
		}
		lb4_stat_inc(BF_STAT_SET_RETRY);
		fresh = bpf_map_lookup_elem(&BF_LB4_FE_MAP, key);
		if (!fresh)
			return false;
		*fe = *fresh;
	}
	return false;
}

/* Whether a NodePort (0.0.0.0) frontend may match `address`: a node address, or 127.0.0.0/8. */
static __always_inline bool __lb4_is_node_address(__be32 address)
{
	if ((bpf_ntohl(address) >> 24) == 127)
		return true;
	return bpf_map_lookup_elem(&bf_lb4_node_v1, &address) != NULL;
}

/* Whether the calling process sits in a cgroup this frontend entry skips, or below one. Only the
 * levels named in skip_levels are looked at (usually one), and none when the frontend skips nobody. */
static __always_inline bool __lb4_skips_client(const struct bf_lb4_fe *fe)
{
	struct bf_lb4_skip_key key = { .frontend_id = fe->frontend_id };
	__u32 levels = fe->skip_levels;
	int level;

	for (level = 0; level < BF_CGROUP_LEVELS && levels; level++, levels >>= 1) {
		if (!(levels & 1))
			continue;
		key.cgroup_id = bpf_get_current_ancestor_cgroup_id(level);
		if (!key.cgroup_id)
			return false; /* the client's cgroup is above this level */
		if (bpf_map_lookup_elem(&bf_lb4_skip_v1, &key))
			return true;
	}
	return false;
}

/* Resolve one destination through the tiers. Returns false when no tier has the frontend. */
static __always_inline bool lb4_resolve(__be32 address, __be16 port, __u8 protocol, __u64 netns_cookie,
					struct lb4_decision *decision)
{
	struct bf_lb4_fe_key key = { .address = address, .port = port, .protocol = protocol };
	__u64 now = bpf_ktime_get_ns();
	struct bf_lb4_fe *found;
	struct bf_lb4_fe fe;
	int node_address = -1; /* looked up once, when a tier has no exact entry */
	int tier;

	decision->tier = BF_TIER_NONE;
	decision->result = BF_RESULT_NO_BACKEND;
#pragma unroll
	for (tier = 0; tier < BF_TIERS; tier++) {
		key.tier = tier;
		key.address = address;
		found = bpf_map_lookup_elem(&BF_LB4_FE_MAP, &key);
		if (!found && address) { /* an exact frontend wins over the NodePort one within a tier */
			if (node_address < 0)
				node_address = __lb4_is_node_address(address);
			if (node_address) {
				key.address = 0;
				found = bpf_map_lookup_elem(&BF_LB4_FE_MAP, &key);
			}
		}
		if (!found)
			continue;
		fe = *found;
		decision->matched = 1;
		decision->tier = tier;
		decision->policy_id = fe.policy_id;
		decision->reject = fe.flags & BF_FE_REJECT_WHEN_EMPTY;
		if (__lb4_skips_client(&fe)) {
			decision->declined_self |= 1 << tier;
			decision->result = BF_RESULT_DECLINED_SELF;
			continue;
		}
		decision->affinity_hit = __lb4_affinity_get(&fe, netns_cookie, now, &decision->backend);
		if (!decision->affinity_hit && !__lb4_pick(&key, &fe, &decision->backend)) {
			decision->declined_empty |= 1 << tier;
			decision->result = BF_RESULT_NO_BACKEND;
			continue;
		}
		if (!__lb4_qos_admit(fe.frontend_id, fe.qos_limit, now)) {
			decision->declined_qos |= 1 << tier;
			decision->result = BF_RESULT_DECLINED_QOS;
			decision->affinity_hit = 0;
			continue;
		}
		if (!decision->affinity_hit)
			__lb4_affinity_set(&fe, netns_cookie, now, &decision->backend);
		decision->result = BF_RESULT_REDIRECTED;
		return true;
	}
	if (decision->matched && decision->reject)
		decision->result = BF_RESULT_REJECTED;
	return decision->matched;
}

#endif /* BF_LB4_H */
