/* test_rollback.c — deciding what a failed MULTIAPPEND must remove. */
#include <criterion/criterion.h>
#include <string.h>

#include "rollback.h"

static struct upload_msg
msg(enum upload_state state, uint32_t uid, uint64_t size)
{
	struct upload_msg m;

	memset(&m, 0, sizeof(m));
	m.state = state;
	m.uid = uid;
	m.fp.size = size;
	m.fp.canon_len = size;
	memset(m.fp.digest, (int)size & 0xff, sizeof(m.fp.digest));
	return m;
}

Test(rollback, stored_with_uids_are_removed_by_uid_in_order)
{
	struct upload_msg msgs[] = {
		msg(UPLOAD_STORED, 7, 10), msg(UPLOAD_STORED, 9, 11),
		msg(UPLOAD_REFUSED, 0, 12), msg(UPLOAD_SPOOLED, 0, 13),
	};
	struct rollback_plan plan;

	cr_assert_eq(rollback_plan(msgs, 4, false, true, &plan), 0);
	cr_assert_eq(plan.nuids, 2);
	cr_assert_eq(plan.uids[0], 7);
	cr_assert_eq(plan.uids[1], 9);
	cr_assert_eq(plan.nunknown, 0);
	cr_assert(plan.own_connection, "selected read-write, all known");
	cr_assert(!rollback_plan_empty(&plan));
	rollback_plan_free(&plan);

	cr_assert_eq(rollback_plan(msgs, 4, false, false, &plan), 0);
	cr_assert(!plan.own_connection, "not selected read-write");
	rollback_plan_free(&plan);
}

Test(rollback, stored_without_uid_is_looked_for)
{
	struct upload_msg msgs[] = { msg(UPLOAD_STORED, 5, 10), msg(UPLOAD_STORED, 0, 20) };
	struct rollback_plan plan;

	cr_assert_eq(rollback_plan(msgs, 2, false, true, &plan), 0);
	cr_assert_eq(plan.nuids, 1);
	cr_assert_eq(plan.nunknown, 1);
	cr_assert_eq(plan.unknown[0].size, 20);
	cr_assert(fingerprint_same(&plan.unknown[0], &msgs[1].fp));
	cr_assert(!plan.settle, "stored: nothing more can arrive");
	cr_assert(!plan.own_connection, "looking for a message needs a second connection");
	rollback_plan_free(&plan);
}

/* A message sent whose answer cannot come any more may have been stored. */
Test(rollback, sent_is_unknown_only_when_answers_are_lost)
{
	struct upload_msg msgs[] = {
		msg(UPLOAD_STORED, 3, 10), msg(UPLOAD_SENT, 0, 30), msg(UPLOAD_SPOOLED, 0, 40),
	};
	struct rollback_plan plan;

	cr_assert_eq(rollback_plan(msgs, 3, true, true, &plan), 0);
	cr_assert_eq(plan.nuids, 1);
	cr_assert_eq(plan.nunknown, 1);
	cr_assert_eq(plan.unknown[0].size, 30);
	cr_assert(!plan.own_connection, "the connection is gone");
	cr_assert(plan.settle, "the server may still be storing what was sent");
	rollback_plan_free(&plan);

	cr_assert_eq(rollback_plan(msgs, 3, false, true, &plan), 0);
	cr_assert_eq(plan.nunknown, 0);
	cr_assert(plan.own_connection);
	rollback_plan_free(&plan);
}

Test(rollback, nothing_stored_is_an_empty_plan)
{
	struct upload_msg msgs[] = { msg(UPLOAD_REFUSED, 0, 1), msg(UPLOAD_SPOOLED, 0, 2) };
	struct rollback_plan plan;

	cr_assert_eq(rollback_plan(msgs, 2, true, false, &plan), 0);
	cr_assert(rollback_plan_empty(&plan));
	rollback_plan_free(&plan);
	cr_assert_eq(rollback_plan(NULL, 0, false, false, &plan), 0);
	cr_assert(rollback_plan_empty(&plan));
	rollback_plan_free(&plan);
}
