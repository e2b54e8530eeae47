//! protocell-cuda
