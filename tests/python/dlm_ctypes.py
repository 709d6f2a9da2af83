"""Our libdlm_lt through ctypes, the way dlm's own Python bindings
(python/bindings/dlm.py) load and call it: find_library("dlm_lt"),
CDLL, a C_DLM_LKSB Structure, and dlm_ls_lock_wait with a blocking
callback whose argument is a Python object.

Run by tests/tests/c_python.rs with LD_LIBRARY_PATH naming our library
directory and DLM_TEST_LIBDIR the same; exits non-zero on any failure.
"""
import ctypes
import ctypes.util
import errno
import os
import sys

LKM_EXMODE = 5
LKF_NOQUEUE = 0x1
LKF_NOQUEUEBAST = 0x800
EUNLOCK = 0x10002


def fail(msg):
    print("FAIL: " + msg, file=sys.stderr)
    sys.exit(1)


path = ctypes.util.find_library("dlm_lt")
if not path:
    fail("find_library('dlm_lt') found nothing")
lib = ctypes.CDLL(path, use_errno=True)

# Debian's libdlm3 is installed beside ours: check which one is mapped.
libdir = os.path.realpath(os.environ["DLM_TEST_LIBDIR"])
ours = {os.path.realpath(os.path.join(libdir, f)) for f in os.listdir(libdir) if "dlm_lt" in f}
with open("/proc/self/maps") as maps:
    mapped = {line.split()[-1] for line in maps if "dlm_lt" in line}
if not mapped or not mapped <= ours:
    fail("loaded %s, not ours (%s)" % (sorted(mapped), sorted(ours)))


class C_DLM_LSHANDLE(ctypes.c_void_p):
    pass


class C_DLM_LKSB(ctypes.Structure):
    _fields_ = [("sb_status", ctypes.c_int),
                ("sb_lkid", ctypes.c_uint32),
                ("sb_flags", ctypes.c_char),
                ("sb_lvbptr", ctypes.c_char_p)]


C_BAST_CB = ctypes.CFUNCTYPE(None, ctypes.py_object)

lib.dlm_create_lockspace.argtypes = [ctypes.c_char_p, ctypes.c_uint]
lib.dlm_create_lockspace.restype = C_DLM_LSHANDLE
lib.dlm_open_lockspace.argtypes = [ctypes.c_char_p]
lib.dlm_open_lockspace.restype = C_DLM_LSHANDLE
lib.dlm_release_lockspace.argtypes = [ctypes.c_char_p, C_DLM_LSHANDLE, ctypes.c_int]
lib.dlm_close_lockspace.argtypes = [C_DLM_LSHANDLE]
lib.dlm_ls_get_fd.argtypes = [C_DLM_LSHANDLE]
lib.dlm_dispatch.argtypes = [ctypes.c_int]
lib.dlm_ls_lock_wait.argtypes = [C_DLM_LSHANDLE, ctypes.c_uint32, ctypes.POINTER(C_DLM_LKSB),
                                 ctypes.c_uint32, ctypes.c_void_p, ctypes.c_uint, ctypes.c_uint32,
                                 ctypes.py_object, C_BAST_CB, ctypes.c_void_p]
lib.dlm_ls_unlock_wait.argtypes = [C_DLM_LSHANDLE, ctypes.c_uint32, ctypes.c_uint32,
                                   ctypes.POINTER(C_DLM_LKSB)]

ls = lib.dlm_create_lockspace(b"pyls", 0o600)
if not ls:
    fail("dlm_create_lockspace: errno %d" % ctypes.get_errno())
other = lib.dlm_open_lockspace(b"pyls")
if not other:
    fail("dlm_open_lockspace: errno %d" % ctypes.get_errno())

basts = []


def on_bast(arg):
    basts.append(arg)


bast_cb = C_BAST_CB(on_bast)
bast_arg = {"lock": "pyres"}
lksb = C_DLM_LKSB()
name = b"pyres"
rc = lib.dlm_ls_lock_wait(ls, LKM_EXMODE, ctypes.byref(lksb), 0, name, len(name), 0,
                          ctypes.py_object(bast_arg), bast_cb, None)
if rc != 0 or lksb.sb_status != 0 or lksb.sb_lkid == 0:
    fail("lock: rc %d status %d id %d" % (rc, lksb.sb_status, lksb.sb_lkid))

# Another owner asks for EX without queueing, but with blocking callbacks.
lksb2 = C_DLM_LKSB()
rc = lib.dlm_ls_lock_wait(other, LKM_EXMODE, ctypes.byref(lksb2), LKF_NOQUEUE | LKF_NOQUEUEBAST,
                          name, len(name), 0, None, C_BAST_CB(0), None)
if rc != -1 or ctypes.get_errno() != errno.EAGAIN or lksb2.sb_status != errno.EAGAIN:
    fail("conflict: rc %d errno %d status %d" % (rc, ctypes.get_errno(), lksb2.sb_status))

# The blocking callback reaches the holder when it dispatches.
if lib.dlm_dispatch(lib.dlm_ls_get_fd(ls)) != 0:
    fail("dlm_dispatch: errno %d" % ctypes.get_errno())
if basts != [bast_arg] or basts[0] is not bast_arg:
    fail("bast calls: %r" % basts)
if lksb.sb_status != 0:
    fail("the bast changed the lksb: %d" % lksb.sb_status)

rc = lib.dlm_ls_unlock_wait(ls, lksb.sb_lkid, 0, ctypes.byref(lksb))
if rc != 0 or lksb.sb_status != EUNLOCK:
    fail("unlock: rc %d status %d" % (rc, lksb.sb_status))
lib.dlm_close_lockspace(other)
if lib.dlm_release_lockspace(b"pyls", ls, 0) != 0:
    fail("release: errno %d" % ctypes.get_errno())
print("all ok")
