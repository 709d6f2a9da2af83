//! [`c_exports!`](crate::c_exports): the one macro that generates the 21
//! `#[no_mangle]` functions both C libraries export. It expands only in
//! the two cdylib crates, so no symbol is exported by dlm-cabi itself.

/// Generates the 21 exports common to `libdlm.so.3` and
/// `libdlm_lt.so.3`: thin `extern "C"` shims over this crate's
/// functions, each catching panics (-1/EIO or NULL) and applying
/// `flavour`'s conventions.
///
/// `before_close` (a `fn(dlm_cabi::LsHandle)`) runs before a non-NULL
/// handle is closed or released: the threads library stops the handle's
/// AST thread there, so the fd is closed only after the thread was
/// joined.
///
/// Every shim's `# Safety` is libdlm.h's contract for its arguments, as
/// the crate's `# Safety` states it; each `unsafe` block names the rule
/// it relies on.
#[macro_export]
macro_rules! c_exports {
    (flavour = $flavour:expr, before_close = $before_close:path $(,)?) => {
        use ::core::ffi::{c_char, c_int, c_uint, c_void};
        use $crate as __cabi;

        const __FLAVOUR: __cabi::WaitFlavour = $flavour;

        /// Reports the lock manager's device interface version.
        ///
        /// # Safety
        /// Each pointer is NULL or writable.
        #[unsafe(no_mangle)]
        pub unsafe extern "C" fn dlm_kernel_version(
            maj: *mut u32,
            min: *mut u32,
            patch: *mut u32,
        ) -> c_int {
            __cabi::guard(-1, || {
                __cabi::int_ret(__cabi::kernel_version().map(|v| {
                    // SAFETY: this function's contract: each pointer is
                    // NULL or writable, as `put_version` requires.
                    unsafe { __cabi::put_version(v, maj, min, patch) }
                }))
            })
        }

        /// Reports the interface version this library speaks (6.0.2).
        ///
        /// # Safety
        /// Each pointer is NULL or writable.
        #[unsafe(no_mangle)]
        pub unsafe extern "C" fn dlm_library_version(
            maj: *mut u32,
            min: *mut u32,
            patch: *mut u32,
        ) {
            // SAFETY: this function's contract: each pointer is NULL or
            // writable, as `put_version` requires.
            unsafe { __cabi::put_version(__cabi::library_version(), maj, min, patch) }
        }

        /// Creates (or joins) and opens a lockspace.
        ///
        /// # Safety
        /// `name` is NULL or a NUL-terminated string.
        #[unsafe(no_mangle)]
        pub unsafe extern "C" fn dlm_create_lockspace(
            name: *const c_char,
            mode: u32,
        ) -> __cabi::LsHandle {
            __cabi::guard(__cabi::LsHandle::NULL, || {
                // SAFETY: `name` is NULL or a C string (this function's
                // contract), as `new_lockspace` requires.
                __cabi::handle_ret(unsafe { __cabi::new_lockspace(name, mode, 0) })
            })
        }

        /// Creates (or joins) and opens a lockspace, with `DLM_LSFL_*` flags.
        ///
        /// # Safety
        /// `name` is NULL or a NUL-terminated string.
        #[unsafe(no_mangle)]
        pub unsafe extern "C" fn dlm_new_lockspace(
            name: *const c_char,
            mode: u32,
            flags: u32,
        ) -> __cabi::LsHandle {
            __cabi::guard(__cabi::LsHandle::NULL, || {
                // SAFETY: `name` is NULL or a C string (this function's
                // contract), as `new_lockspace` requires.
                __cabi::handle_ret(unsafe { __cabi::new_lockspace(name, mode, flags) })
            })
        }

        /// Opens an existing lockspace.
        ///
        /// # Safety
        /// `name` is NULL or a NUL-terminated string.
        #[unsafe(no_mangle)]
        pub unsafe extern "C" fn dlm_open_lockspace(name: *const c_char) -> __cabi::LsHandle {
            __cabi::guard(__cabi::LsHandle::NULL, || {
                // SAFETY: `name` is NULL or a C string (this function's
                // contract), as `open_lockspace` requires.
                __cabi::handle_ret(unsafe { __cabi::open_lockspace(name) })
            })
        }

        /// Closes a handle; its locks are released or orphaned.
        ///
        /// # Safety
        /// `ls` is NULL or a live handle; it is consumed.
        #[unsafe(no_mangle)]
        pub unsafe extern "C" fn dlm_close_lockspace(ls: __cabi::LsHandle) -> c_int {
            __cabi::guard(-1, || {
                if !ls.is_null() {
                    $before_close(ls);
                }
                // SAFETY: `ls` is NULL or live, and C gives it up with
                // this call (this function's contract).
                __cabi::int_ret(unsafe { __cabi::close_lockspace(ls) })
            })
        }

        /// Closes a handle and releases its lockspace.
        ///
        /// # Safety
        /// `ls` is NULL or a live handle; it is consumed.
        #[unsafe(no_mangle)]
        pub unsafe extern "C" fn dlm_release_lockspace(
            name: *const c_char,
            ls: __cabi::LsHandle,
            force: c_int,
        ) -> c_int {
            __cabi::guard(-1, || {
                if !ls.is_null() {
                    $before_close(ls);
                }
                // SAFETY: `ls` is NULL or live, and C gives it up with
                // this call (this function's contract); `name` is unread.
                __cabi::int_ret(unsafe { __cabi::release_lockspace(name, ls, force) })
            })
        }

        /// The handle's pollable fd.
        ///
        /// # Safety
        /// `ls` is NULL or a live handle.
        #[unsafe(no_mangle)]
        pub unsafe extern "C" fn dlm_ls_get_fd(ls: __cabi::LsHandle) -> c_int {
            __cabi::guard(-1, || {
                // SAFETY: `ls` is NULL or live for this call (this
                // function's contract).
                __cabi::fd_ret(unsafe { ls.borrow() }.map(__cabi::ls_get_fd))
            })
        }

        /// The default lockspace's fd, opening it first.
        #[unsafe(no_mangle)]
        pub extern "C" fn dlm_get_fd() -> c_int {
            __cabi::guard(-1, || __cabi::fd_ret(__cabi::get_fd()))
        }

        /// Delivers every queued callback of the handle with this fd.
        #[unsafe(no_mangle)]
        pub extern "C" fn dlm_dispatch(fd: c_int) -> c_int {
            __cabi::guard(-1, || __cabi::int_ret(__cabi::dispatch(fd)))
        }

        /// An asynchronous lock request or conversion.
        ///
        /// # Safety
        /// libdlm's pointer contract (`dlm_cabi`'s `# Safety`).
        #[unsafe(no_mangle)]
        pub unsafe extern "C" fn dlm_ls_lock(
            ls: __cabi::LsHandle,
            mode: u32,
            lksb: *mut __cabi::Lksb,
            flags: u32,
            name: *const c_void,
            namelen: c_uint,
            parent: u32,
            astaddr: __cabi::AstFn,
            astarg: *mut c_void,
            bastaddr: __cabi::AstFn,
            range: *mut c_void,
        ) -> c_int {
            __cabi::guard(-1, || {
                let a = __cabi::LockArgs::ls_lock(
                    mode, lksb, flags, name, namelen, parent, astaddr, astarg, bastaddr,
                );
                // SAFETY: `ls` is NULL or live for this call, and `a`
                // holds the caller's pointers, which follow libdlm's rules
                // (this function's contract).
                let r = unsafe { ls.borrow() }
                    .and_then(|ls| unsafe { __cabi::ls_lock(ls, __FLAVOUR, &a, range) });
                __cabi::wait_ret(__FLAVOUR, r)
            })
        }

        /// An asynchronous lock request or conversion with a transaction
        /// id and a timeout (accepted and ignored, like kernels since 6.4).
        ///
        /// # Safety
        /// libdlm's pointer contract; `xid` and `timeout` NULL or readable.
        #[unsafe(no_mangle)]
        pub unsafe extern "C" fn dlm_ls_lockx(
            ls: __cabi::LsHandle,
            mode: u32,
            lksb: *mut __cabi::Lksb,
            flags: u32,
            name: *const c_void,
            namelen: c_uint,
            parent: u32,
            astaddr: __cabi::AstFn,
            astarg: *mut c_void,
            bastaddr: __cabi::AstFn,
            xid: *mut u64,
            timeout: *mut u64,
        ) -> c_int {
            __cabi::guard(-1, || {
                // SAFETY: `xid` and `timeout` are NULL or readable (this
                // function's contract); `as_ref` checks NULL.
                let (xid, timeout) = unsafe {
                    (
                        xid.as_ref().copied().unwrap_or(0),
                        timeout.as_ref().copied().unwrap_or(0),
                    )
                };
                let a = __cabi::LockArgs::ls_lockx(
                    mode, lksb, flags, name, namelen, parent, astaddr, astarg, bastaddr, xid,
                    timeout,
                );
                // SAFETY: `ls` is NULL or live for this call, and `a`
                // holds the caller's pointers, which follow libdlm's rules
                // (this function's contract).
                let r = unsafe { ls.borrow() }.and_then(|ls| unsafe {
                    __cabi::ls_lock(ls, __FLAVOUR, &a, ::core::ptr::null())
                });
                __cabi::wait_ret(__FLAVOUR, r)
            })
        }

        /// A synchronous lock request or conversion.
        ///
        /// # Safety
        /// libdlm's pointer contract (`dlm_cabi`'s `# Safety`).
        #[unsafe(no_mangle)]
        pub unsafe extern "C" fn dlm_ls_lock_wait(
            ls: __cabi::LsHandle,
            mode: u32,
            lksb: *mut __cabi::Lksb,
            flags: u32,
            name: *const c_void,
            namelen: c_uint,
            parent: u32,
            bastarg: *mut c_void,
            bastaddr: __cabi::AstFn,
            range: *mut c_void,
        ) -> c_int {
            __cabi::guard(-1, || {
                let a = __cabi::LockArgs::ls_lock_wait(
                    mode, lksb, flags, name, namelen, parent, bastarg, bastaddr,
                );
                // SAFETY: `ls` is NULL or live for this call, and `a`
                // holds the caller's pointers, which follow libdlm's rules
                // (this function's contract).
                let r = __cabi::no_range(range)
                    .and_then(|()| unsafe { ls.borrow() })
                    .and_then(|ls| unsafe { __cabi::ls_lock_wait(ls, __FLAVOUR, &a) });
                __cabi::wait_ret(__FLAVOUR, r)
            })
        }

        /// An asynchronous unlock or cancel.
        ///
        /// # Safety
        /// libdlm's pointer contract (`dlm_cabi`'s `# Safety`).
        #[unsafe(no_mangle)]
        pub unsafe extern "C" fn dlm_ls_unlock(
            ls: __cabi::LsHandle,
            lkid: u32,
            flags: u32,
            lksb: *mut __cabi::Lksb,
            astarg: *mut c_void,
        ) -> c_int {
            __cabi::guard(-1, || {
                // SAFETY: `ls` is NULL or live for this call, and `lksb`
                // is NULL or valid until the completion (this function's
                // contract).
                let r = unsafe { ls.borrow() }.and_then(|ls| unsafe {
                    __cabi::ls_unlock(ls, __FLAVOUR, lkid, flags, lksb, astarg)
                });
                __cabi::wait_ret(__FLAVOUR, r)
            })
        }

        /// A synchronous unlock or cancel.
        ///
        /// # Safety
        /// libdlm's pointer contract (`dlm_cabi`'s `# Safety`).
        #[unsafe(no_mangle)]
        pub unsafe extern "C" fn dlm_ls_unlock_wait(
            ls: __cabi::LsHandle,
            lkid: u32,
            flags: u32,
            lksb: *mut __cabi::Lksb,
        ) -> c_int {
            __cabi::guard(-1, || {
                // SAFETY: `ls` is NULL or live for this call, and `lksb`
                // is NULL or valid until it returns (this function's
                // contract).
                let r = unsafe { ls.borrow() }.and_then(|ls| unsafe {
                    __cabi::ls_unlock_wait(ls, __FLAVOUR, lkid, flags, lksb)
                });
                __cabi::wait_ret(__FLAVOUR, r)
            })
        }

        /// Cancels a request or conversion, reporting EDEADLK.
        ///
        /// # Safety
        /// `ls` is NULL or a live handle.
        #[unsafe(no_mangle)]
        pub unsafe extern "C" fn dlm_ls_deadlock_cancel(
            ls: __cabi::LsHandle,
            lkid: u32,
            flags: u32,
        ) -> c_int {
            __cabi::guard(-1, || {
                // SAFETY: `ls` is NULL or live for this call (this
                // function's contract).
                let r =
                    unsafe { ls.borrow() }.and_then(|ls| __cabi::deadlock_cancel(ls, lkid, flags));
                __cabi::int_ret(r)
            })
        }

        /// Purges orphan locks.
        ///
        /// # Safety
        /// `ls` is NULL or a live handle.
        #[unsafe(no_mangle)]
        pub unsafe extern "C" fn dlm_ls_purge(
            ls: __cabi::LsHandle,
            nodeid: c_int,
            pid: c_int,
        ) -> c_int {
            __cabi::guard(-1, || {
                // SAFETY: `ls` is NULL or live for this call (this
                // function's contract).
                let r = unsafe { ls.borrow() }.and_then(|ls| __cabi::purge(ls, nodeid, pid));
                __cabi::int_ret(r)
            })
        }

        /// `dlm_ls_lock` on the default lockspace.
        ///
        /// # Safety
        /// libdlm's pointer contract (`dlm_cabi`'s `# Safety`).
        #[unsafe(no_mangle)]
        pub unsafe extern "C" fn dlm_lock(
            mode: u32,
            lksb: *mut __cabi::Lksb,
            flags: u32,
            name: *const c_void,
            namelen: c_uint,
            parent: u32,
            astaddr: __cabi::AstFn,
            astarg: *mut c_void,
            bastaddr: __cabi::AstFn,
            range: *mut c_void,
        ) -> c_int {
            __cabi::guard(-1, || {
                let a = __cabi::LockArgs::ls_lock(
                    mode, lksb, flags, name, namelen, parent, astaddr, astarg, bastaddr,
                );
                // SAFETY: `a` holds the caller's pointers, which follow
                // libdlm's rules (this function's contract).
                let r = __cabi::no_range(range)
                    .and_then(|()| __cabi::open_default_ls())
                    .and_then(|ls| unsafe { __cabi::ls_lock(&ls, __FLAVOUR, &a, range) });
                __cabi::wait_ret(__FLAVOUR, r)
            })
        }

        /// `dlm_ls_lock_wait` on the default lockspace.
        ///
        /// # Safety
        /// libdlm's pointer contract (`dlm_cabi`'s `# Safety`).
        #[unsafe(no_mangle)]
        pub unsafe extern "C" fn dlm_lock_wait(
            mode: u32,
            lksb: *mut __cabi::Lksb,
            flags: u32,
            name: *const c_void,
            namelen: c_uint,
            parent: u32,
            bastarg: *mut c_void,
            bastaddr: __cabi::AstFn,
            range: *mut c_void,
        ) -> c_int {
            __cabi::guard(-1, || {
                let a = __cabi::LockArgs::ls_lock_wait(
                    mode, lksb, flags, name, namelen, parent, bastarg, bastaddr,
                );
                // SAFETY: `a` holds the caller's pointers, which follow
                // libdlm's rules (this function's contract).
                let r = __cabi::no_range(range)
                    .and_then(|()| __cabi::open_default_ls())
                    .and_then(|ls| unsafe { __cabi::ls_lock_wait(&ls, __FLAVOUR, &a) });
                __cabi::wait_ret(__FLAVOUR, r)
            })
        }

        /// `dlm_ls_unlock` on the default lockspace (ENOTCONN when it is
        /// not open).
        ///
        /// # Safety
        /// libdlm's pointer contract (`dlm_cabi`'s `# Safety`).
        #[unsafe(no_mangle)]
        pub unsafe extern "C" fn dlm_unlock(
            lkid: u32,
            flags: u32,
            lksb: *mut __cabi::Lksb,
            astarg: *mut c_void,
        ) -> c_int {
            __cabi::guard(-1, || {
                // SAFETY: `lksb` is NULL or valid until the completion
                // (this function's contract).
                let r = __cabi::default_ls_if_open().and_then(|ls| unsafe {
                    __cabi::ls_unlock(&ls, __FLAVOUR, lkid, flags, lksb, astarg)
                });
                __cabi::wait_ret(__FLAVOUR, r)
            })
        }

        /// `dlm_ls_unlock_wait` on the default lockspace (ENOTCONN when it
        /// is not open).
        ///
        /// # Safety
        /// libdlm's pointer contract (`dlm_cabi`'s `# Safety`).
        #[unsafe(no_mangle)]
        pub unsafe extern "C" fn dlm_unlock_wait(
            lkid: u32,
            flags: u32,
            lksb: *mut __cabi::Lksb,
        ) -> c_int {
            __cabi::guard(-1, || {
                // SAFETY: `lksb` is NULL or valid until it returns (this
                // function's contract).
                let r = __cabi::default_ls_if_open().and_then(|ls| unsafe {
                    __cabi::ls_unlock_wait(&ls, __FLAVOUR, lkid, flags, lksb)
                });
                __cabi::wait_ret(__FLAVOUR, r)
            })
        }
    };
}
