/*
 * lvmlockd's use of libdlm_lt (lvm2 daemons/lvmlockd/lvmlockd-dlm.c):
 * NEWEXCL lockspaces, NL|EXPEDITE creation, NOQUEUE|CONVERT|PERSISTENT
 * [|VALBLK] acquisition, the LVB version record, conversion back to NL
 * as "unlock", and adoption of an orphan left by an exited process with
 * (void *)1 callbacks, then lock-stop.
 */
#include "common.h"
#include <sys/wait.h>

#define LOCK_ARGS(h, mode, lksb, flags, name) \
	dlm_ls_lock_wait(h, mode, lksb, flags, name, strlen(name), 0, NULL, NULL, NULL)

struct vgrec { uint32_t version; uint32_t flags; };	/* lvmlockd's 8-byte record */

static void lvb_put(char *lvb, uint32_t version)
{
	struct vgrec r = { version, 0 };
	memset(lvb, 0, DLM_LVB_LEN);
	memcpy(lvb, &r, sizeof(r));
}

static uint32_t lvb_version(const char *lvb)
{
	struct vgrec r;
	memcpy(&r, lvb, sizeof(r));
	return r.version;
}

/* lvmlockd's lm_add_resource_dlm + lm_lock_dlm: NL first, then convert. */
static void new_nl(dlm_lshandle_t h, struct dlm_lksb *lksb, const char *name, int valblk)
{
	OK(LOCK_ARGS(h, LKM_NLMODE, lksb, LKF_EXPEDITE | (valblk ? LKF_VALBLK : 0), name));
	EXPECT_EQ(lksb->sb_status, 0);
	EXPECT(lksb->sb_lkid != 0);
}

int main(void)
{
	assert_ours((void *)dlm_ls_lock_wait);
	uint32_t maj, min, patch;
	OK(dlm_kernel_version(&maj, &min, &patch));
	EXPECT_EQ(maj, 6);

	dlm_lshandle_t h = dlm_new_lockspace("lvm_vg1", 0600, DLM_LSFL_NEWEXCL);
	EXPECT(h != NULL);
	errno = 0;
	EXPECT(dlm_new_lockspace("lvm_vg1", 0600, DLM_LSFL_NEWEXCL) == NULL);
	EXPECT_EQ(errno, EEXIST);
	/* A second "host" (another opener) to conflict with. */
	dlm_lshandle_t h2 = dlm_open_lockspace("lvm_vg1");
	EXPECT(h2 != NULL);

	char lvb[DLM_LVB_LEN] = { 0 }, lvb2[DLM_LVB_LEN] = { 0 };
	struct dlm_lksb vg = { .sb_lvbptr = lvb }, vg2 = { .sb_lvbptr = lvb2 };
	new_nl(h, &vg, "VGLK", 1);
	new_nl(h2, &vg2, "VGLK", 1);

	/* Acquire EX: CONVERT|NOQUEUE|PERSISTENT|VALBLK (0x8d). */
	OK(LOCK_ARGS(h, LKM_EXMODE, &vg, LKF_CONVERT | LKF_NOQUEUE | LKF_PERSISTENT | LKF_VALBLK, "VGLK"));
	EXPECT_EQ(vg.sb_status, 0);
	EXPECT_EQ(lvb_version(lvb), 0);
	/* The other host is refused at once: -1/EAGAIN, status 11, still NL. */
	FAILS_WITH(LOCK_ARGS(h2, LKM_PRMODE, &vg2, LKF_CONVERT | LKF_NOQUEUE | LKF_PERSISTENT | LKF_VALBLK, "VGLK"), EAGAIN);
	EXPECT_EQ(vg2.sb_status, EAGAIN);

	/* Release: bump the version, convert to NL with VALBLK (0xc). */
	lvb_put(lvb, 7);
	OK(LOCK_ARGS(h, LKM_NLMODE, &vg, LKF_CONVERT | LKF_VALBLK, "VGLK"));
	EXPECT_EQ(vg.sb_status, 0);
	/* The other host reads version 7. */
	OK(LOCK_ARGS(h2, LKM_PRMODE, &vg2, LKF_CONVERT | LKF_NOQUEUE | LKF_PERSISTENT | LKF_VALBLK, "VGLK"));
	EXPECT_EQ(vg2.sb_status, 0);
	EXPECT_EQ(lvb_version(lvb2), 7);
	EXPECT_EQ(vg2.sb_flags & DLM_SBF_VALNOTVALID, 0);
	OK(LOCK_ARGS(h2, LKM_NLMODE, &vg2, LKF_CONVERT, "VGLK"));
	printf("vglk ok\n");

	/* An LV lock named by a 38-byte uuid, without VALBLK (0x85). */
	const char *lv = "uuid-0123456789abcdef0123456789abcdef0";
	EXPECT_EQ(strlen(lv), 38);
	struct dlm_lksb lvk = { 0 };
	new_nl(h, &lvk, lv, 0);
	OK(LOCK_ARGS(h, LKM_EXMODE, &lvk, LKF_CONVERT | LKF_NOQUEUE | LKF_PERSISTENT, lv));

	/* A process holding a PERSISTENT lock exits: the lock is orphaned. */
	pid_t child = fork();
	if (child == 0) {
		dlm_lshandle_t c = dlm_open_lockspace("lvm_vg1");
		struct dlm_lksb k = { 0 };
		if (!c)
			_exit(2);
		if (LOCK_ARGS(c, LKM_EXMODE, &k, LKF_PERSISTENT, "orphan") || k.sb_status)
			_exit(3);
		_exit(0);	/* no close: exit closes the handle */
	}
	int st;
	EXPECT_EQ(waitpid(child, &st, 0), child);
	EXPECT(WIFEXITED(st) && WEXITSTATUS(st) == 0);

	/* Adoption after a restart: PERSISTENT|ORPHAN, (void *)1 callbacks. */
	struct dlm_lksb ad = { 0 };
	errno = 0;
	FAILS_WITH(dlm_ls_lockx(h, LKM_PRMODE, &ad, LKF_PERSISTENT | LKF_ORPHAN, "orphan", 6, 0,
				(void (*)(void *))1, (void *)1, (void (*)(void *))1, NULL, NULL), EAGAIN);
	FAILS_WITH(dlm_ls_lockx(h, LKM_EXMODE, &ad, LKF_PERSISTENT | LKF_ORPHAN, "nosuch", 6, 0,
				(void (*)(void *))1, (void *)1, (void (*)(void *))1, NULL, NULL), ENOENT);
	uint64_t xid = 77, timeout = 100;
	OK(dlm_ls_lockx(h, LKM_EXMODE, &ad, LKF_PERSISTENT | LKF_ORPHAN, "orphan", 6, 0,
			(void (*)(void *))1, (void *)1, (void (*)(void *))1, &xid, &timeout));
	EXPECT(ad.sb_lkid != 0);
	EXPECT_EQ(ad.sb_status, EINPROG);
	/* A bast for the adopted lock carries the (void *)1 routine: it must
	 * never be called, even when a later _wait dispatches it. */
	struct dlm_lksb probe = { 0 };
	FAILS_WITH(dlm_ls_lock_wait(h2, LKM_EXMODE, &probe, LKF_NOQUEUE | LKF_NOQUEUEBAST, "orphan", 6, 0, NULL, NULL, NULL), EAGAIN);
	struct dlm_lksb any = { 0 };
	OK(LOCK_ARGS(h, LKM_NLMODE, &any, LKF_EXPEDITE, "dispatch-something"));
	printf("adopt ok\n");

	/* Lock-stop: unlock everything, then release with force. */
	OK(dlm_ls_unlock_wait(h, ad.sb_lkid, 0, &ad));
	EXPECT_EQ(ad.sb_status, EUNLOCK);
	OK(dlm_ls_unlock_wait(h, lvk.sb_lkid, 0, &lvk));
	EXPECT_EQ(lvk.sb_status, EUNLOCK);
	OK(dlm_ls_unlock_wait(h, vg.sb_lkid, 0, &vg));
	OK(dlm_ls_unlock_wait(h, any.sb_lkid, 0, &any));
	OK(dlm_close_lockspace(h2));
	OK(dlm_release_lockspace("lvm_vg1", h, 1));
	printf("all ok\n");
	return 0;
}
