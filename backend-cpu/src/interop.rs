//! `ndarray` as the CPU backend's interchange type.
//!
//! A CPU tensor is a contiguous row-major `f32` buffer, which is exactly an `ndarray` array in
//! standard layout, so the conversions share memory wherever ownership allows:
//!
//! * [`NdArrayExt::view`] borrows a tensor as an [`ArrayViewD`] (never copies);
//! * [`NdArrayExt::into_ndarray`] moves the buffer of a uniquely owned tensor into an
//!   [`ArrayD`] (copies only when the buffer is shared with another tensor);
//! * [`from_ndarray`] moves the buffer of a standard-layout [`ArrayD`] into a tensor (copies,
//!   in logical order, only for other layouts — transposed or sliced arrays);
//! * [`from_view`] copies a view (a borrowed array cannot give its memory away).
use crate::{Cpu, CpuTensor};
use ndarray::{ArrayD, ArrayViewD, IxDyn};
use protocell_core::error::{Error, Result};
use protocell_core::tensor::Tensor;

/// `ndarray` conversions of CPU tensors.
pub trait NdArrayExt {
    /// The values as an `ndarray` view of the tensor's own buffer (no copy).
    fn view(&self) -> ArrayViewD<'_, f32>;
    /// The values as an owned array, reusing the buffer when this tensor owns it alone.
    fn into_ndarray(self) -> ArrayD<f32>;
}

impl NdArrayExt for Tensor<Cpu> {
    fn view(&self) -> ArrayViewD<'_, f32> {
        let t: &CpuTensor = self.prim();
        ArrayViewD::from_shape(IxDyn(&t.shape), t.data()).expect("a CPU tensor's buffer matches its shape")
    }
    fn into_ndarray(self) -> ArrayD<f32> {
        let (data, shape) = self.into_prim().into_parts();
        ArrayD::from_shape_vec(IxDyn(&shape), data).expect("a CPU tensor's buffer matches its shape")
    }
}

/// A tensor holding `a`'s values (its buffer moved in when `a` is in standard layout).
pub fn from_ndarray(a: ArrayD<f32>) -> Result<Tensor<Cpu>> {
    let shape = a.shape().to_vec();
    protocell_core::shape::checked_numel(&shape)?;
    let data = if a.is_standard_layout() {
        match a.into_raw_vec_and_offset() {
            (mut v, Some(off)) => {
                if off > 0 {
                    v.drain(..off);
                }
                v.truncate(protocell_core::shape::numel(&shape));
                v
            }
            (v, None) => v,
        }
    } else {
        a.iter().copied().collect()
    };
    if data.len() != protocell_core::shape::numel(&shape) {
        return Err(Error::InvalidArgument(format!("array of shape {shape:?} holds {} values", data.len())));
    }
    Ok(Tensor::from_prim(CpuTensor::new(data, shape)))
}

/// A tensor holding a copy of `a`'s values (in logical order, whatever its layout).
pub fn from_view(a: ArrayViewD<'_, f32>) -> Result<Tensor<Cpu>> {
    let shape = a.shape().to_vec();
    protocell_core::shape::checked_numel(&shape)?;
    let data: Vec<f32> = match a.as_slice() {
        Some(s) => s.to_vec(),
        None => a.iter().copied().collect(),
    };
    Ok(Tensor::from_prim(CpuTensor::new(data, shape)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::CpuDevice;
    use ndarray::{Array, Axis};

    #[test]
    fn views_share_memory_and_owned_round_trips_move_the_buffer() {
        let t = Tensor::<Cpu>::from_f32(&[1., 2., 3., 4., 5., 6.], &[2, 3], &CpuDevice).unwrap();
        let ptr = t.prim().data().as_ptr();
        let v = t.view();
        assert_eq!(v.shape(), &[2, 3]);
        assert_eq!(v[[1, 2]], 6.0);
        assert_eq!(v.as_ptr(), ptr, "a view borrows the tensor's buffer");
        let a = t.into_ndarray();
        assert_eq!(a.as_ptr(), ptr, "a uniquely owned buffer moves into the array");
        let back = from_ndarray(a).unwrap();
        assert_eq!(back.prim().data().as_ptr(), ptr, "a standard-layout array moves back without a copy");
        assert_eq!(back.to_vec().unwrap(), vec![1., 2., 3., 4., 5., 6.]);
    }

    #[test]
    fn shared_tensors_copy_and_other_layouts_keep_logical_order() {
        let t = Tensor::<Cpu>::from_f32(&[1., 2., 3., 4., 5., 6.], &[2, 3], &CpuDevice).unwrap();
        let keep = t.clone();
        let a = t.into_ndarray();
        assert_ne!(a.as_ptr(), keep.prim().data().as_ptr(), "a shared buffer is copied");
        let tr = a.t().to_owned(); // standard layout of the transpose
        assert_eq!(from_ndarray(tr).unwrap().to_vec().unwrap(), vec![1., 4., 2., 5., 3., 6.]);
        let fortran = Array::from_shape_vec((2, 3), vec![1., 2., 3., 4., 5., 6.]).unwrap().reversed_axes().into_dyn();
        assert!(!fortran.is_standard_layout());
        let t2 = from_ndarray(fortran.clone()).unwrap();
        assert_eq!(t2.shape(), &[3, 2]);
        assert_eq!(t2.to_vec().unwrap(), fortran.iter().copied().collect::<Vec<_>>());
        let sliced = from_view(a.index_axis(Axis(1), 1).into_dyn()).unwrap();
        assert_eq!(sliced.to_vec().unwrap(), vec![2., 5.]);
        let scalar = from_ndarray(ArrayD::from_elem(IxDyn(&[]), 7.0)).unwrap();
        assert_eq!((scalar.shape().to_vec(), scalar.to_vec().unwrap()), (vec![], vec![7.0]));
    }
}
