//! Sets the SONAME of `libdlm_lt.so` to `libdlm_lt.so.3` (cargo sets
//! none) and links it with BIND_NOW, like Debian's build.

fn main() {
    println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,libdlm_lt.so.3");
    println!("cargo:rustc-cdylib-link-arg=-Wl,-z,now");
    println!("cargo:rerun-if-changed=build.rs");
}
