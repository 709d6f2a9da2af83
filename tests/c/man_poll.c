/*
 * The second example of the original libdlm(3) man page: no threads; the
 * program polls the lockspace fd and calls dlm_dispatch().  libdlm_lt.
 */
#include "common.h"
#include <poll.h>

static int ast_called;

static void ast_routine(void *arg)
{
	struct dlm_lksb *lksb = arg;
	(void)lksb;
	ast_called++;
}

static void poll_for_ast(dlm_lshandle_t ls, int want)
{
	struct pollfd pfd;
	pfd.fd = dlm_ls_get_fd(ls);
	pfd.events = POLLIN;
	while (ast_called < want) {
		if (poll(&pfd, 1, 10000) < 1)
			FAIL("poll: no callback");
		EXPECT_EQ(dlm_dispatch(pfd.fd), 0);
	}
}

int main(void)
{
	struct dlm_lksb lksb;
	dlm_lshandle_t ls;
	int status;

	assert_ours((void *)dlm_dispatch);
	ls = dlm_create_lockspace("TESTLS2", 0600);
	if (!ls)
		FAIL("dlm_create_lockspace: %s", strerror(errno));

	memset(&lksb, 0, sizeof(lksb));
	status = dlm_ls_lock(ls, LKM_PRMODE, &lksb, LKF_NOQUEUE, "MyLock", strlen("MyLock"), 0,
			     ast_routine, &lksb, NULL, NULL);
	EXPECT_EQ(status, 0);
	poll_for_ast(ls, 1);
	EXPECT_EQ(lksb.sb_status, 0);

	status = dlm_ls_unlock(ls, lksb.sb_lkid, 0, &lksb, &lksb);
	EXPECT_EQ(status, 0);
	poll_for_ast(ls, 2);
	EXPECT_EQ(lksb.sb_status, EUNLOCK);

	EXPECT_EQ(dlm_release_lockspace("TESTLS2", ls, 1), 0);
	printf("all ok\n");
	return 0;
}
