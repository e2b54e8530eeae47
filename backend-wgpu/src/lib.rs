//! protocell-wgpu
