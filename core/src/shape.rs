//! Shape arithmetic: element counts, strides and numpy-style broadcasting.
use crate::error::{Error, Result};
use crate::shape_err;
use alloc::vec::Vec;

/// Largest element count a single tensor may hold (2^40 on 64-bit targets, 2^29 on
/// smaller ones), a guard against overflowing products of hostile shapes.
#[cfg(target_pointer_width = "64")]
pub const MAX_NUMEL: usize = 1 << 40;
/// Largest element count a single tensor may hold on targets with 32-bit pointers.
#[cfg(not(target_pointer_width = "64"))]
pub const MAX_NUMEL: usize = 1 << 29;

/// Number of elements of `shape` (1 for a scalar `[]`).
pub fn numel(shape: &[usize]) -> usize {
    shape.iter().product()
}

/// Number of elements, rejecting shapes whose product overflows or exceeds [`MAX_NUMEL`].
pub fn checked_numel(shape: &[usize]) -> Result<usize> {
    let mut n: usize = 1;
    for &d in shape {
        n = n
            .checked_mul(d)
            .filter(|&n| n <= MAX_NUMEL)
            .ok_or_else(|| Error::InvalidArgument(alloc::format!("shape {shape:?} is too large")))?;
    }
    Ok(n)
}

/// Row-major (C order) strides of `shape`, in elements.
pub fn strides(shape: &[usize]) -> Vec<usize> {
    let mut s = alloc::vec![0; shape.len()];
    let mut acc = 1;
    for i in (0..shape.len()).rev() {
        s[i] = acc;
        acc *= shape[i];
    }
    s
}

/// Broadcast two shapes with numpy rules (align right; each pair of dims equal or one of them 1).
pub fn broadcast_shapes(op: &'static str, a: &[usize], b: &[usize]) -> Result<Vec<usize>> {
    let n = a.len().max(b.len());
    let mut out = alloc::vec![0; n];
    for i in 0..n {
        let da = if i + a.len() >= n { a[i + a.len() - n] } else { 1 };
        let db = if i + b.len() >= n { b[i + b.len() - n] } else { 1 };
        out[i] = if da == db || db == 1 {
            da
        } else if da == 1 {
            db
        } else {
            return Err(shape_err!(op, "cannot broadcast {a:?} with {b:?}"));
        };
    }
    Ok(out)
}

/// True when `from` can be broadcast to `to` (numpy rules, `to` fixed).
pub fn broadcastable_to(from: &[usize], to: &[usize]) -> bool {
    if from.len() > to.len() {
        return false;
    }
    let off = to.len() - from.len();
    from.iter().enumerate().all(|(i, &d)| d == 1 || d == to[i + off])
}

/// Checks that `axes` is a permutation of `0..rank`.
pub fn check_permutation(op: &'static str, axes: &[usize], rank: usize) -> Result<()> {
    if axes.len() != rank {
        return Err(shape_err!(op, "permutation {axes:?} has {} axes, tensor has rank {rank}", axes.len()));
    }
    let mut seen = alloc::vec![false; rank];
    for &a in axes {
        if a >= rank || seen[a] {
            return Err(shape_err!(op, "{axes:?} is not a permutation of 0..{rank}"));
        }
        seen[a] = true;
    }
    Ok(())
}

/// Checks that `axis < rank`.
pub fn check_axis(op: &'static str, axis: usize, rank: usize) -> Result<()> {
    if axis >= rank {
        return Err(shape_err!(op, "axis {axis} out of range for rank {rank}"));
    }
    Ok(())
}

/// Splits `shape` around `axis` into (outer, dim, inner) element counts.
pub fn split_at_axis(shape: &[usize], axis: usize) -> (usize, usize, usize) {
    (numel(&shape[..axis]), shape[axis], numel(&shape[axis + 1..]))
}

/// Inverse of a permutation.
pub fn inverse_permutation(axes: &[usize]) -> Vec<usize> {
    let mut inv = alloc::vec![0; axes.len()];
    for (i, &a) in axes.iter().enumerate() {
        inv[a] = i;
    }
    inv
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    #[test]
    fn broadcast_rules() {
        assert_eq!(broadcast_shapes("t", &[2, 1, 3], &[4, 1]).unwrap(), vec![2, 4, 3]);
        assert_eq!(broadcast_shapes("t", &[], &[5]).unwrap(), vec![5]);
        assert!(broadcast_shapes("t", &[2, 3], &[3, 2]).is_err());
        assert!(broadcastable_to(&[1, 3], &[4, 3]));
        assert!(!broadcastable_to(&[2, 3], &[4, 3]));
    }

    #[test]
    fn strides_and_numel() {
        assert_eq!(strides(&[2, 3, 4]), vec![12, 4, 1]);
        assert_eq!(numel(&[]), 1);
        assert!(checked_numel(&[usize::MAX, 2]).is_err());
        assert_eq!(inverse_permutation(&[2, 0, 1]), vec![1, 2, 0]);
    }
}
