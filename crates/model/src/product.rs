//! Matrix products on f32 slices through gemm, for the kernels that work on slices (`attend`,
//! `whole`): no tensor per product, transposes as strides, the scale and the accumulation
//! folded into the product instead of separate elementwise passes, and the choice of
//! threads left to the caller (one per block where blocks already run in parallel). Owns
//! nothing but the call; depends on no other module of the crate.

/// How a product writes its destination.
#[derive(Debug, Clone, Copy)]
pub(crate) struct How {
    /// `dst += …` instead of `dst = …`.
    pub add: bool,
    /// Multiplies the product (not what `dst` held).
    pub scale: f32,
    /// Threads gemm may use; 1 runs on the caller's.
    pub threads: usize,
}

impl How {
    /// `dst = lhs · rhs`, on the calling thread.
    pub(crate) const SET: How = How {
        add: false,
        scale: 1.0,
        threads: 1,
    };
    /// `dst += lhs · rhs`, on the calling thread.
    pub(crate) const ADD: How = How {
        add: true,
        scale: 1.0,
        threads: 1,
    };

    /// The same, times `scale`.
    pub(crate) fn scaled(self, scale: f32) -> How {
        How { scale, ..self }
    }

    /// The same, on all of rayon's threads.
    pub(crate) fn shared(self) -> How {
        self.on(rayon::current_num_threads())
    }

    /// The same, on `threads` threads.
    pub(crate) fn on(self, threads: usize) -> How {
        How { threads, ..self }
    }
}

/// `dst` `[m, n]` (row-major) `= scale · lhs · rhs` (or `+=`, as `how` says); `lhs` `[m, k]` and
/// `rhs` `[k, n]` are each given with their row and column strides, so transposes cost nothing.
pub(crate) fn product(
    (m, n, k): (usize, usize, usize),
    dst: &mut [f32],
    how: How,
    lhs: (&[f32], usize, usize),
    rhs: (&[f32], usize, usize),
) {
    assert_eq!(
        dst.len(),
        m * n,
        "product: the destination does not fit [{m}, {n}]"
    );
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !how.add {
            dst.fill(0.0);
        }
        return;
    }
    // SAFETY: `dst` holds the `m · n` values, borrowed mutably, so it aliases neither operand.
    unsafe { gemm_into((m, n, k), dst.as_mut_ptr(), how, lhs, rhs) };
}

/// `scale · lhs · rhs` (`how.add` must be off) into a new `[m, n]` buffer that is never
/// zeroed: zeroing the outputs that products then overwrite was 5-7% of a train step (perf,
/// memset).
pub(crate) fn product_new(
    (m, n, k): (usize, usize, usize),
    how: How,
    lhs: (&[f32], usize, usize),
    rhs: (&[f32], usize, usize),
) -> Vec<f32> {
    assert!(!how.add, "product_new: nothing to add to");
    if m <= 1 || n <= 1 || k == 0 {
        // gemm's matrix-vector path makes a `&mut [f32]` over its destination, which must
        // then be initialised; these products are small.
        let mut dst = vec![0f32; m * n];
        product((m, n, k), &mut dst, how, lhs, rhs);
        return dst;
    }
    let mut dst: Vec<f32> = Vec::with_capacity(m * n);
    // SAFETY: `dst` has room for the `m · n` values and aliases nothing. With `read_dst`
    // false gemm computes dst := beta·lhs·rhs and never loads the destination: gemm 0.19's
    // kernels for m, n ≥ 2 (the tiled microkernels, the horizontal kernel, `gevv` for k ≤ 2)
    // store each of the m·n values with alpha zero on their first pass over the depth and
    // read only what they stored on later ones, so all are initialised when `set_len`
    // makes them visible. (Checked against gemm-common 0.19; its matrix-vector path, which
    // borrows the destination as a slice, is avoided above.)
    unsafe {
        gemm_into((m, n, k), dst.as_mut_ptr(), how, lhs, rhs);
        dst.set_len(m * n);
    }
    dst
}

/// gemm into the row-major `[m, n]` at `dst` (`m`, `n`, `k` all positive), reading it first
/// when `how.add`; the operands are checked against their slices here.
///
/// # Safety
/// `dst` must be valid for writes (and, with `how.add`, reads) of `m · n` values and alias
/// neither operand.
unsafe fn gemm_into(
    (m, n, k): (usize, usize, usize),
    dst: *mut f32,
    how: How,
    (lhs, lhs_rs, lhs_cs): (&[f32], usize, usize),
    (rhs, rhs_rs, rhs_cs): (&[f32], usize, usize),
) {
    let last = |rows: usize, rs: usize, cols: usize, cs: usize| (rows - 1) * rs + (cols - 1) * cs;
    assert!(
        last(m, lhs_rs, k, lhs_cs) < lhs.len() && last(k, rhs_rs, n, rhs_cs) < rhs.len(),
        "product: an operand does not fit [{m}, {k}] · [{k}, {n}]"
    );
    let parallelism = if how.threads > 1 {
        gemm::Parallelism::Rayon(how.threads)
    } else {
        gemm::Parallelism::None
    };
    // SAFETY: the assertion bounds every element read from the operands by their slices'
    // lengths; the caller vouches for `dst`.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst,
            1,
            n as isize,
            how.add,
            lhs.as_ptr(),
            lhs_cs as isize,
            lhs_rs as isize,
            rhs.as_ptr(),
            rhs_cs as isize,
            rhs_rs as isize,
            if how.add { 1.0 } else { 0.0 },
            how.scale,
            false,
            false,
            false,
            parallelism,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Strides, scale, accumulation and threads against the product written out.
    #[test]
    fn a_product_with_strides_scale_and_accumulation() {
        let (m, n, k) = (5, 7, 3);
        let a: Vec<f32> = (0..m * k).map(|i| (i as f32 * 0.37).sin()).collect();
        let b: Vec<f32> = (0..k * n).map(|i| (i as f32 * 0.11).cos()).collect();
        let want = |i: usize, j: usize| (0..k).map(|p| a[i * k + p] * b[p * n + j]).sum::<f32>();
        // a as [m, k] row-major; b given transposed: bᵀ stored [n, k], read with strides.
        let bt: Vec<f32> = (0..n * k).map(|i| b[(i % k) * n + i / k]).collect();
        for threads in [How::SET, How::SET.shared()] {
            let mut dst = vec![1.0f32; m * n];
            product((m, n, k), &mut dst, threads, (&a, k, 1), (&bt, 1, k));
            let mut acc = dst.clone();
            let how = How {
                add: true,
                ..threads.scaled(0.5)
            };
            product((m, n, k), &mut acc, how, (&a, k, 1), (&b, n, 1));
            let new = product_new((m, n, k), threads.scaled(0.5), (&a, k, 1), (&bt, 1, k));
            for i in 0..m {
                for j in 0..n {
                    assert!((dst[i * n + j] - want(i, j)).abs() < 1e-5);
                    assert!((acc[i * n + j] - 1.5 * want(i, j)).abs() < 1e-5);
                    assert!((new[i * n + j] - 0.5 * want(i, j)).abs() < 1e-5);
                }
            }
        }
    }

    /// `product_new` on the shapes that take gemm's different kernels (tiled, horizontal,
    /// depth ≤ 2, matrix-vector), each time just after a NaN-filled buffer of its size was
    /// freed: a kernel that loaded what the new buffer held would show NaN.
    #[test]
    fn a_new_product_writes_every_value_of_its_buffer() {
        for (m, n, k) in [
            (5, 7, 3),
            (70, 90, 300),
            (40, 50, 2),
            (40, 50, 1),
            (1, 300, 5),
            (300, 1, 5),
            (3, 200, 17),
        ] {
            let a: Vec<f32> = (0..m * k).map(|i| (i as f32 * 0.37).sin()).collect();
            let b: Vec<f32> = (0..k * n).map(|i| (i as f32 * 0.11).cos()).collect();
            for how in [How::SET, How::SET.shared()] {
                drop(vec![f32::NAN; m * n]);
                let new = product_new((m, n, k), how.scaled(2.0), (&a, k, 1), (&b, n, 1));
                assert_eq!(new.len(), m * n);
                for i in 0..m {
                    for j in 0..n {
                        let want: f32 = (0..k).map(|p| a[i * k + p] * b[p * n + j]).sum();
                        let got = new[i * n + j];
                        assert!(
                            (got - 2.0 * want).abs() < 1e-3,
                            "[{m}, {n}, {k}] at {i}, {j}: {got}"
                        );
                    }
                }
            }
        }
    }
}
