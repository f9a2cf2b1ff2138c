// SPDX-License-Identifier: GPL-2.0
/* Never loaded: declares one global of every struct that userspace mirrors, so that each of them
 * is in this object's BTF even when the programs only use it through a pointer. The test
 * tests/datapath/test_abi.py compares datapath/lb/abi.py against this BTF.
 */
#include "lib/maps.h"

#define BF_ALIGN_CHECK(type) struct type __bf_check_##type __attribute__((used))

BF_ALIGN_CHECK(bf_lb4_fe_key);
BF_ALIGN_CHECK(bf_lb4_fe);
BF_ALIGN_CHECK(bf_lb4_slot_key);
BF_ALIGN_CHECK(bf_lb4_backend);
BF_ALIGN_CHECK(bf_lb4_member_key);
BF_ALIGN_CHECK(bf_lb4_aff_key);
BF_ALIGN_CHECK(bf_lb4_aff);
BF_ALIGN_CHECK(bf_lb4_qos);
BF_ALIGN_CHECK(bf_lb4_rev_key);
BF_ALIGN_CHECK(bf_lb4_rev);
BF_ALIGN_CHECK(bf_lb4_sock);
BF_ALIGN_CHECK(bf_lb4_skip_key);
BF_ALIGN_CHECK(bf_lb4_policy);
BF_ALIGN_CHECK(bf_lb4_meta);
BF_ALIGN_CHECK(bf_lb4_event);

char LICENSE[] SEC("license") = "GPL";
