// SPDX-License-Identifier: GPL-2.0
/* Socket-level load balancing for IPv4 TCP and UDP, attached to a node's cgroup.
 *
 * connect4 and sendmsg4 translate a frontend (service or policy VIP) to a backend once per
 * connect() or datagram; recvmsg4 and getpeername4 translate the backend back to the frontend so
 * that UDP replies and getpeername() show the address the application asked for.
 * The hooks let every call through, except a connect() or sendmsg() to a frontend marked "reject
 * when empty" that no tier could resolve: it fails at once with ECONNREFUSED, as kube-proxy's
 * REJECT of a Service without endpoints does.
 */
#include "lib/sock4.h"

SEC("cgroup/connect4")
int bf_sock4_connect(struct bpf_sock_addr *ctx)
{
	return sock4_xlate_fwd(ctx, BF_HOOK_CONNECT4);
}

SEC("cgroup/sendmsg4")
int bf_sock4_sendmsg(struct bpf_sock_addr *ctx)
{
	if (ctx->protocol == IPPROTO_UDP)
		return sock4_xlate_fwd(ctx, BF_HOOK_SENDMSG4);
	return 1;
}

SEC("cgroup/recvmsg4")
int bf_sock4_recvmsg(struct bpf_sock_addr *ctx)
{
	sock4_rev_restore(ctx);
	return 1;
}

SEC("cgroup/getpeername4")
int bf_sock4_getpeername(struct bpf_sock_addr *ctx)
{
	sock4_rev_restore(ctx);
	return 1;
}

char LICENSE[] SEC("license") = "GPL";
