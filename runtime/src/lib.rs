//! protocell-runtime
