/* sock4_: what the cgroup sock_addr hooks share: reverse translation and resolution events. */
#ifndef BF_SOCK4_H
#define BF_SOCK4_H

#include "lb4.h"

static __always_inline __be16 sock4_port(const struct bpf_sock_addr *ctx)
{
	return (__be16)ctx->user_port; /* network-order port in the low 16 bits */
}

/* Remember that this socket talks to `backend` on behalf of the frontend it asked for: in the
 * socket's own storage after connect(), in the shared LRU map for an unconnected sendmsg(). */
static __always_inline void sock4_rev_record(struct bpf_sock_addr *ctx, __u64 cookie, __u8 hook,
					     const struct bf_lb4_backend *backend, __be32 frontend_address,
					     __be16 frontend_port)
{
	struct bf_lb4_rev_key key = { .socket_cookie = cookie, .address = backend->address, .port = backend->port };
	struct bf_lb4_rev value = { .address = frontend_address, .port = frontend_port };
	struct bf_lb4_sock *sock;
	struct bf_lb4_rev *known;

	if (hook == BF_HOOK_CONNECT4) {
		sock = bpf_sk_storage_get(&bf_lb4_sk_v1, ctx->sk, 0, BPF_SK_STORAGE_GET_F_CREATE);
		if (sock) {
			sock->backend_address = backend->address;
			sock->backend_port = backend->port;
			sock->frontend_address = frontend_address;
			sock->frontend_port = frontend_port;
			return;
		}
	}
	/* unconnected UDP sends the same pair again and again: skip the write when it is known */
	known = bpf_map_lookup_elem(&bf_lb4_rev_v1, &key);
	if (known && known->address == value.address && known->port == value.port)
		return;
	bpf_map_update_elem(&bf_lb4_rev_v1, &key, &value, BPF_ANY);
}

/* Rewrite a peer address (recvmsg4 source, getpeername4 result) back to the frontend. */
static __always_inline void sock4_rev_restore(struct bpf_sock_addr *ctx)
{
	struct bf_lb4_rev_key key = {};
	struct bf_lb4_rev *frontend;
	struct bf_lb4_sock *sock;
	__be32 address = ctx->user_ip4;
	__be16 port = sock4_port(ctx);

	sock = bpf_sk_storage_get(&bf_lb4_sk_v1, ctx->sk, 0, 0);
	if (sock && sock->backend_address == address && sock->backend_port == port) {
		ctx->user_ip4 = sock->frontend_address;
		ctx->user_port = (__u32)sock->frontend_port;
		lb4_stat_inc(BF_STAT_REVERSE_HIT);
		return;
	}
	if (ctx->protocol != IPPROTO_UDP)
		return;
	key.socket_cookie = bpf_get_socket_cookie(ctx);
	key.address = address;
	key.port = port;
	frontend = bpf_map_lookup_elem(&bf_lb4_rev_v1, &key);
	if (!frontend)
		return;
	ctx->user_ip4 = frontend->address;
	ctx->user_port = (__u32)frontend->port;
	lb4_stat_inc(BF_STAT_REVERSE_HIT);
}

static __always_inline void sock4_emit(__be32 address, __be16 port, __u8 protocol, __u8 hook,
				       __u64 netns_cookie, __u64 socket_cookie, const struct lb4_decision *decision)
{
	struct bf_lb4_event *event = bpf_ringbuf_reserve(&bf_lb4_evt_v1, sizeof(*event), 0);

	if (!event) {
		lb4_stat_inc(BF_STAT_EVENTS_DROPPED);
		return;
	}
	__builtin_memset(event, 0, sizeof(*event));
	event->timestamp_ns = bpf_ktime_get_ns();
	event->netns_cookie = netns_cookie;
	event->cgroup_id = bpf_get_current_cgroup_id();
	event->socket_cookie = socket_cookie;
	event->pid = bpf_get_current_pid_tgid() >> 32;
	event->policy_id = decision->policy_id;
	event->orig_address = address;
	event->orig_port = port;
	if (decision->result == BF_RESULT_REDIRECTED) {
		event->new_address = decision->backend.address;
		event->new_port = decision->backend.port;
	} else {
		event->new_address = event->orig_address;
		event->new_port = event->orig_port;
	}
	event->protocol = protocol;
	event->hook = hook;
	event->tier = decision->tier;
	event->result = decision->result;
	event->declined_empty = decision->declined_empty;
	event->declined_qos = decision->declined_qos;
	event->affinity_hit = decision->affinity_hit;
	event->declined_self = decision->declined_self;
	bpf_ringbuf_submit(event, 0);
}

/* Forward translation for connect4 and sendmsg4: frontend -> backend, then record the reverse.
 * Returns the hook's verdict: 1 lets the call proceed, 0 fails it with ECONNREFUSED (a rejecting
 * frontend that no tier resolved). */
static __always_inline int sock4_xlate_fwd(struct bpf_sock_addr *ctx, __u8 hook)
{
	struct lb4_decision decision = {};
	__u64 netns_cookie, socket_cookie;
	__be32 address = ctx->user_ip4;
	__be16 port = sock4_port(ctx);
	__u8 protocol = ctx->protocol;

	if (protocol != IPPROTO_TCP && protocol != IPPROTO_UDP)
		return 1;
	netns_cookie = bpf_get_netns_cookie(ctx);
	if (!lb4_resolve(address, port, protocol, netns_cookie, &decision))
		return 1; /* not a frontend: no event, no cost beyond the lookups */
	socket_cookie = bpf_get_socket_cookie(ctx);
	if (decision.result == BF_RESULT_REDIRECTED) {
		ctx->user_ip4 = decision.backend.address;
		ctx->user_port = (__u32)decision.backend.port;
		sock4_rev_record(ctx, socket_cookie, hook, &decision.backend, address, port);
		lb4_stat_inc(BF_STAT_REDIRECTED);
		if (decision.affinity_hit)
			lb4_stat_inc(BF_STAT_AFFINITY_HIT);
	} else if (decision.result == BF_RESULT_REJECTED) {
		lb4_stat_inc(BF_STAT_REJECTED);
	} else if (decision.result == BF_RESULT_DECLINED_QOS) {
		lb4_stat_inc(BF_STAT_DECLINED_QOS);
	} else if (decision.result == BF_RESULT_NO_BACKEND) {
		lb4_stat_inc(BF_STAT_NO_BACKEND);
	}
	sock4_emit(address, port, protocol, hook, netns_cookie, socket_cookie, &decision);
	if (decision.result != BF_RESULT_REJECTED)
		return 1;
	bpf_set_retval(-BF_ECONNREFUSED);
	return 0;
}

#endif /* BF_SOCK4_H */
