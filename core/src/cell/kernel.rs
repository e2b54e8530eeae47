//! The host side of the colony kernels of the GPU backends: the shapes, scratch strides and
//! parameter words that the WGSL kernels of `protocell-wgpu` and the CUDA kernels of
//! `protocell-cuda` read in the same order.
use super::{CellMode, ColonySpec, N_COEFFS};
use crate::backend::kernel_abi::u32_of;
use crate::error::{Error, Result};
use alloc::format;
use alloc::vec;
use alloc::vec::Vec;

/// Shapes and constants of one colony call (see the colony kernels for the per-token
/// trajectory and scratch layout the strides describe).
#[derive(Debug, Clone, PartialEq)]
pub struct ColonyGeom {
    /// Tokens.
    pub t: usize,
    /// Blocks per token.
    pub n: usize,
    spec: ColonySpec,
}

impl ColonyGeom {
    /// Checks `h0: [T, N, 4]`, `w0: [T, N, N]`, `stim: [T, N]`, `coeffs: [9]` and the spec.
    pub fn new(h0: &[usize], w0: &[usize], stim: &[usize], coeffs: &[usize], spec: &ColonySpec) -> Result<Self> {
        spec.validate()?;
        let [t, n, 4] = h0[..] else {
            return Err(Error::InvalidArgument(format!("colony: h0 must be [T, N, 4], got {h0:?}")));
        };
        if w0 != [t, n, n] || stim != [t, n] || coeffs != [N_COEFFS] {
            return Err(Error::InvalidArgument(format!(
                "colony: expected w0 [{t}, {n}, {n}], stim [{t}, {n}], coeffs [{N_COEFFS}]; got {w0:?}, {stim:?}, {coeffs:?}"
            )));
        }
        Ok(Self { t, n, spec: *spec })
    }

    /// Rejects output gradients `dh`, `dw` whose shapes differ from the states'.
    pub fn check_grads(&self, dh: &[usize], dw: &[usize]) -> Result<()> {
        let (t, n) = (self.t, self.n);
        if dh != [t, n, 4] || dw != [t, n, n] {
            return Err(Error::InvalidArgument(format!(
                "colony_bwd: gradients {dh:?}, {dw:?} do not match the states [{t}, {n}, 4], [{t}, {n}, {n}]"
            )));
        }
        Ok(())
    }

    /// Floats of one token's forward trajectory and scratch:
    /// `H (K+1)·4N | W (K+1)·N² | alive (K+1)·N | life N | den N | nb 4N | u 4N`.
    pub fn stride_fwd(&self) -> usize {
        let n = self.n;
        (self.spec.steps + 1) * (5 * n + n * n) + 10 * n
    }

    /// [`Self::stride_fwd`] plus the backward scratch
    /// `g_h 4N | g_w N² | gh1 4N | gw_prev N² | gu 4N | gh_prev 4N | gnb 4N | gwhat N`.
    pub fn stride_bwd(&self) -> usize {
        let n = self.n;
        self.stride_fwd() + 20 * n + 2 * n * n + n
    }

    /// Lengths of the four blocks of the backward kernel's output
    /// `[dh⁰ T·4N | dW⁰ T·N² | dstim T·N | dcoeffs per token T·9]`.
    pub fn grad_parts(&self) -> [usize; 4] {
        let (t, n) = (self.t, self.n);
        [t * 4 * n, t * n * n, t * n, t * N_COEFFS]
    }

    /// Parameter words: `[T, N, K, mode (0 as coded, 1 as described, 2 sound), bits(dt),
    /// bits(row ε), bits(sharpness), pruning, bits(rate), bits(threshold), stride]`.
    pub fn params(&self, stride: usize) -> Result<Vec<u32>> {
        let s = &self.spec;
        let mode = match s.mode {
            CellMode::AsCoded => 0,
            CellMode::AsDescribed => 1,
            CellMode::Sound => 2,
        };
        let (rate, threshold) = s.pruning.map_or((0.0f32, 0.0f32), |p| (p.rate, p.threshold));
        Ok(vec![
            u32_of(self.t, "tokens")?,
            u32_of(self.n, "blocks")?,
            u32_of(s.steps, "steps")?,
            mode,
            s.dt.to_bits(),
            s.row_eps.to_bits(),
            s.sharpness.to_bits(),
            s.pruning.is_some() as u32,
            rate.to_bits(),
            threshold.to_bits(),
            u32_of(stride, "stride")?,
        ])
    }
}
