/*
 * rgmanager's clulib/lock.c pattern with libdlm (threads library, no AST
 * thread): asynchronous requests, its own select() + dlm_dispatch()
 * loop until the lksb leaves EINPROG, NL first, then CONVERT|NOQUEUE
 * retried while another owner holds the resource.
 */
#include "common.h"
#include <sys/select.h>

static int asts, basts;
static void ast_function(void *arg) { (void)arg; asts++; }
static void bast_function(void *arg) { (void)arg; basts++; }

static int wait_for_dlm_event(dlm_lshandle_t ls, struct dlm_lksb *lksb)
{
	int fd = dlm_ls_get_fd(ls);
	while (lksb->sb_status == EINPROG) {
		fd_set rfds;
		struct timeval tv = { 10, 0 };
		FD_ZERO(&rfds);
		FD_SET(fd, &rfds);
		if (select(fd + 1, &rfds, NULL, NULL, &tv) != 1)
			FAIL("select: no event");
		if (dlm_dispatch(fd) < 0)
			return -1;
	}
	return 0;
}

static int _dlm_lock(dlm_lshandle_t ls, int mode, struct dlm_lksb *lksb, int options, const char *resource)
{
	int ret = dlm_ls_lock(ls, mode, lksb, options, resource, strlen(resource), 0,
			      ast_function, lksb, bast_function, NULL);
	if (ret < 0)
		return ret;
	if (wait_for_dlm_event(ls, lksb) < 0)
		return -1;
	errno = lksb->sb_status;
	return lksb->sb_status ? -1 : 0;
}

int main(void)
{
	assert_ours((void *)dlm_dispatch);
	dlm_lshandle_t ls = dlm_open_lockspace("rgmanager");
	if (!ls)	/* open, else create (rgmanager retries on ENOENT) */
		ls = dlm_create_lockspace("rgmanager", 0600);
	EXPECT(ls != NULL);
	dlm_lshandle_t node2 = dlm_open_lockspace("rgmanager");
	EXPECT(node2 != NULL);

	struct dlm_lksb theirs = { 0 }, mine = { 0 };
	OK(_dlm_lock(node2, LKM_EXMODE, &theirs, 0, "usrm::vf"));

	OK(_dlm_lock(ls, LKM_NLMODE, &mine, 0, "usrm::vf"));
	int tries = 0;
	for (;;) {
		int ret = _dlm_lock(ls, LKM_EXMODE, &mine, LKF_CONVERT | LKF_NOQUEUE, "usrm::vf");
		if (ret == 0)
			break;
		EXPECT_EQ(errno, EAGAIN);
		if (++tries == 3) {
			/* The other owner lets go. */
			OK(dlm_ls_unlock(node2, theirs.sb_lkid, 0, &theirs, &theirs));
			EXPECT_EQ(wait_for_dlm_event(node2, &theirs), 0);
			EXPECT_EQ(theirs.sb_status, EUNLOCK);
		}
		EXPECT(tries < 10);
	}
	EXPECT_EQ(tries, 3);
	OK(dlm_ls_unlock(ls, mine.sb_lkid, 0, &mine, &mine));
	EXPECT_EQ(wait_for_dlm_event(ls, &mine), 0);
	EXPECT_EQ(mine.sb_status, EUNLOCK);
	OK(dlm_close_lockspace(node2));
	OK(dlm_release_lockspace("rgmanager", ls, 0));
	printf("all ok\n");
	return 0;
}
