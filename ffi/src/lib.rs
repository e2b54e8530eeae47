//! protocell-ffi
