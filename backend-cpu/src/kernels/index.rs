//! Row gather (embedding lookup) and its adjoint, row scatter-add.
use super::par_rows;
use crate::storage::{alloc, alloc_zeroed};
use crate::{CpuIds, CpuTensor};
use protocell_core::error::{Error, Result};

fn check_ids(op: &str, ids: &[u32], rows: usize) -> Result<()> {
    if let Some(&bad) = ids.iter().find(|&&i| i as usize >= rows) {
        return Err(Error::InvalidArgument(format!("{op}: id {bad} out of range for {rows} rows")));
    }
    Ok(())
}

pub(crate) fn gather_rows(table: &CpuTensor, ids: &CpuIds) -> Result<CpuTensor> {
    let (rows, d) = (table.shape[0], table.shape[1]);
    check_ids("gather_rows", &ids.data, rows)?;
    let mut out = alloc(ids.data.len() * d);
    let src = table.data();
    par_rows(&mut out, d, |r0, dst| {
        for (k, row) in dst.chunks_mut(d).enumerate() {
            let id = ids.data[r0 + k] as usize;
            row.copy_from_slice(&src[id * d..(id + 1) * d]);
        }
    });
    let mut shape = ids.shape.clone();
    shape.push(d);
    Ok(CpuTensor::new(out, shape))
}

pub(crate) fn scatter_add_rows(src: &CpuTensor, ids: &CpuIds, rows: usize) -> Result<CpuTensor> {
    let d = *src.shape.last().unwrap_or(&1);
    check_ids("scatter_add_rows", &ids.data, rows)?;
    let mut out = alloc_zeroed(rows * d);
    let s = src.data();
    // sequential in id order: the sum for each row is accumulated in a fixed order
    for (i, &id) in ids.data.iter().enumerate() {
        let dst = &mut out[id as usize * d..(id as usize + 1) * d];
        dst.iter_mut().zip(&s[i * d..(i + 1) * d]).for_each(|(o, &v)| *o += v);
    }
    Ok(CpuTensor::new(out, vec![rows, d]))
}
