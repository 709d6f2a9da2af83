/*
 * libdlm.h - the C interface of dlm-rs's libdlm.so.3 and libdlm_lt.so.3.
 *
 * Written for dlm-rs; ABI-identical to the libdlm.h of the Linux DLM
 * userspace tools (dlm 4.x): the same types, struct layout, constants and
 * function signatures, so programs built against either header run with
 * either library.  As in the original:
 *   - mode_t is used without including <sys/types.h>; include it (or any
 *     header that defines mode_t) first;
 *   - the thread functions and lock_resource()/unlock_resource() are
 *     declared only when _REENTRANT is defined (gcc -pthread defines it),
 *     and exist only in libdlm.so, not in libdlm_lt.so;
 *   - struct dlm_lksb and the DLM_SBF_* and DLM_LSFL_* constants are
 *     hidden when BUILDING_LIBDLM is defined.
 *
 * SPDX-License-Identifier: MIT OR Apache-2.0
 */

#ifndef __LIBDLM_H
#define __LIBDLM_H

#include <stdint.h>

/* Length of a lock value block. */
#define DLM_LVB_LEN             32

#ifndef BUILDING_LIBDLM

/* Longest lockspace name and longest resource name, in bytes. */
#define DLM_LOCKSPACE_LEN       64
#define DLM_RESNAME_MAXLEN      64

/* The lock status block: the outcome of a lock operation. */
struct dlm_lksb {
	int sb_status;		/* 0, EAGAIN, EDEADLK, ECANCEL, EUNLOCK; EINPROG while pending */
	uint32_t sb_lkid;	/* the lock id */
	char sb_flags;		/* DLM_SBF_* */
	char *sb_lvbptr;	/* DLM_LVB_LEN bytes, or NULL */
};

/* sb_flags */
#define DLM_SBF_DEMOTED         0x01
#define DLM_SBF_VALNOTVALID     0x02
#define DLM_SBF_ALTMODE         0x04

/* dlm_new_lockspace() flags */
#define DLM_LSFL_TIMEWARN       0x00000002
#define DLM_LSFL_FS             0x00000004
#define DLM_LSFL_NEWEXCL        0x00000008

#endif

/* Versions: of the lock manager's device interface, and of this library's. */
extern int dlm_kernel_version(uint32_t *maj, uint32_t *min, uint32_t *patch);
extern void dlm_library_version(uint32_t *maj, uint32_t *min, uint32_t *patch);

/*
 * The default lockspace ("default", opened or created on first use).
 */

#ifdef _REENTRANT
extern int lock_resource(const char *resource, int mode, int flags, int *lockid);
extern int unlock_resource(int lockid);
#endif

extern int dlm_lock(uint32_t mode,
		struct dlm_lksb *lksb,
		uint32_t flags,
		const void *name,
		unsigned int namelen,
		uint32_t parent,		/* unused */
		void (*astaddr) (void *astarg),
		void *astarg,
		void (*bastaddr) (void *astarg),
		void *range);			/* must be NULL */

extern int dlm_unlock(uint32_t lkid,
		uint32_t flags,
		struct dlm_lksb *lksb,
		void *astarg);

extern int dlm_lock_wait(uint32_t mode,
		struct dlm_lksb *lksb,
		uint32_t flags,
		const void *name,
		unsigned int namelen,
		uint32_t parent,		/* unused */
		void *bastarg,
		void (*bastaddr) (void *bastarg),
		void *range);			/* must be NULL */

extern int dlm_unlock_wait(uint32_t lkid,
		uint32_t flags,
		struct dlm_lksb *lksb);

/* Own fd handling: poll the fd, then dlm_dispatch() it. */
extern int dlm_get_fd(void);
extern int dlm_dispatch(int fd);

/*
 * Lockspaces.
 */

typedef void *dlm_lshandle_t;

extern dlm_lshandle_t dlm_create_lockspace(const char *name, mode_t mode);
extern int dlm_release_lockspace(const char *name, dlm_lshandle_t ls,
		int force);
extern dlm_lshandle_t dlm_open_lockspace(const char *name);
extern int dlm_close_lockspace(dlm_lshandle_t ls);
extern int dlm_ls_get_fd(dlm_lshandle_t ls);
extern dlm_lshandle_t dlm_new_lockspace(const char *name, mode_t mode,
		uint32_t flags);

/*
 * Locks in a lockspace.
 */

extern int dlm_ls_lock(dlm_lshandle_t lockspace,
		uint32_t mode,
		struct dlm_lksb *lksb,
		uint32_t flags,
		const void *name,
		unsigned int namelen,
		uint32_t parent,		/* unused */
		void (*astaddr) (void *astarg),
		void *astarg,
		void (*bastaddr) (void *astarg),
		void *range);			/* must be NULL */

extern int dlm_ls_lockx(dlm_lshandle_t lockspace,
		uint32_t mode,
		struct dlm_lksb *lksb,
		uint32_t flags,
		const void *name,
		unsigned int namelen,
		uint32_t parent,		/* unused */
		void (*astaddr) (void *astarg),
		void *astarg,
		void (*bastaddr) (void *astarg),
		uint64_t *xid,
		uint64_t *timeout);		/* ignored, as by kernels since 6.4 */

extern int dlm_ls_unlock(dlm_lshandle_t lockspace,
		uint32_t lkid,
		uint32_t flags,
		struct dlm_lksb *lksb,
		void *astarg);

extern int dlm_ls_lock_wait(dlm_lshandle_t lockspace,
		uint32_t mode,
		struct dlm_lksb *lksb,
		uint32_t flags,
		const void *name,
		unsigned int namelen,
		uint32_t parent,		/* unused */
		void *bastarg,
		void (*bastaddr) (void *bastarg),
		void *range);			/* must be NULL */

extern int dlm_ls_unlock_wait(dlm_lshandle_t lockspace,
		uint32_t lkid,
		uint32_t flags,
		struct dlm_lksb *lksb);

extern int dlm_ls_deadlock_cancel(dlm_lshandle_t ls,
		uint32_t lkid,
		uint32_t flags);

extern int dlm_ls_purge(dlm_lshandle_t lockspace,
		int nodeid,
		int pid);

/*
 * AST threads (libdlm.so only).  dlm_close_lockspace() and
 * dlm_release_lockspace() stop a lockspace's thread.
 */

#ifdef _REENTRANT
extern int dlm_pthread_init(void);
extern int dlm_ls_pthread_init(dlm_lshandle_t lockspace);
extern int dlm_pthread_cleanup(void);
#endif

/* Lock modes */
#define LKM_NLMODE          0		/* null */
#define LKM_CRMODE          1		/* concurrent read */
#define LKM_CWMODE          2		/* concurrent write */
#define LKM_PRMODE          3		/* protected read */
#define LKM_PWMODE          4		/* protected write */
#define LKM_EXMODE          5		/* exclusive */

/* Lock flags: the kernel's DLM_LKF_* values */
#define LKF_NOQUEUE         0x00000001
#define LKF_CANCEL          0x00000002
#define LKF_CONVERT         0x00000004
#define LKF_VALBLK          0x00000008
#define LKF_QUECVT          0x00000010
#define LKF_IVVALBLK        0x00000020
#define LKF_CONVDEADLK      0x00000040
#define LKF_PERSISTENT      0x00000080
#define LKF_NODLCKWT        0x00000100
#define LKF_NODLCKBLK       0x00000200
#define LKF_EXPEDITE        0x00000400
#define LKF_NOQUEUEBAST     0x00000800
#define LKF_HEADQUE         0x00001000
#define LKF_NOORDER         0x00002000
#define LKF_ORPHAN          0x00004000
#define LKF_ALTPR           0x00008000
#define LKF_ALTCW           0x00010000
#define LKF_FORCEUNLOCK     0x00020000
#define LKF_TIMEOUT         0x00040000
#define LKF_WAIT            0x80000000	/* library only: a synchronous call */

/* Statuses beyond errno */
#define ECANCEL             0x10001	/* cancelled */
#define EUNLOCK             0x10002	/* unlocked */
#define EINPROG             0x10003	/* operation in progress */

#endif
