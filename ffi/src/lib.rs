//! # protocell-ffi
//!
//! The C ABI of protocell (`libprotocell.so` / `libprotocell.a`). Conventions: every
//! function returns a status code, opaque handles come in create/destroy pairs, and no
//! panic crosses the boundary. The full surface (devices, models, training, cell
//! colonies) is the subject of the C ABI work item; the library already builds as both a
//! `cdylib` and a `staticlib` and exports its version.
use std::ffi::c_char;

/// NUL-terminated crate version, e.g. `"0.1.0"`. The pointer is static: never free it.
#[no_mangle]
pub extern "C" fn protocell_version() -> *const c_char {
    concat!(env!("CARGO_PKG_VERSION"), "\0").as_ptr().cast()
}

#[cfg(test)]
mod tests {
    #[test]
    fn version_is_a_c_string() {
        // SAFETY: protocell_version returns a static NUL-terminated string.
        let v = unsafe { std::ffi::CStr::from_ptr(super::protocell_version()) };
        assert_eq!(v.to_str().unwrap(), env!("CARGO_PKG_VERSION"));
    }
}
