//! Small dense-vector helpers shared by the encoders and the fusion step (`fuse`).

/// L2 norm.
pub fn norm(v: &[f32]) -> f32 {
    v.iter().map(|x| x * x).sum::<f32>().sqrt()
}

/// Scales `v` to unit length in place. A zero (or non-finite) vector is left as is and `false` is
/// returned, so callers can decide whether that is an error rather than silently getting NaNs.
pub fn normalize(v: &mut [f32]) -> bool {
    let n = norm(v);
    if !(n.is_finite() && n > 0.0) {
        return false;
    }
    let inv = 1.0 / n;
    v.iter_mut().for_each(|x| *x *= inv);
    true
}

pub fn normalized(mut v: Vec<f32>) -> Vec<f32> {
    normalize(&mut v);
    v
}

pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// Cosine similarity; 0 when either side is zero.
pub fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let d = norm(a) * norm(b);
    if d > 0.0 {
        dot(a, b) / d
    } else {
        0.0
    }
}

/// `acc += w · v`
pub fn axpy(acc: &mut [f32], w: f32, v: &[f32]) {
    acc.iter_mut().zip(v).for_each(|(a, x)| *a += w * x);
}
