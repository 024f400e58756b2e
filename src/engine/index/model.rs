//! Linear models: position = slope * (key - base) + intercept.
//!
//! Keys are taken relative to a base (the smallest key the model was trained
//! on, as a signed difference) before conversion to f64, so models over a narrow band of large keys
//! (timestamps, keys near 2^63) keep their precision. Predictions are
//! monotone non-decreasing in the key, which routing relies on.

/// A linear model from keys to positions.
#[derive(Clone, Copy, Debug, Default)]
pub struct LinearModel {
    base: u64,
    slope: f64,
    intercept: f64,
}

impl LinearModel {
    /// The least-squares fit of `positions` on `keys` (sorted, same length).
    pub fn fit(
        keys: impl ExactSizeIterator<Item = u64> + Clone,
        positions: impl Fn(usize) -> f64,
    ) -> LinearModel {
        let n = keys.len();
        let Some(base) = keys.clone().next() else {
            return LinearModel::default();
        };
        let (mut sx, mut sy, mut sxx, mut sxy) = (0.0, 0.0, 0.0, 0.0);
        for (i, key) in keys.enumerate() {
            let x = (key - base) as f64;
            let y = positions(i);
            sx += x;
            sy += y;
            sxx += x * x;
            sxy += x * y;
        }
        let n = n as f64;
        let var = sxx - sx * sx / n;
        if var <= 0.0 || !var.is_finite() {
            return LinearModel {
                base,
                slope: 0.0,
                intercept: sy / n,
            };
        }
        let slope = ((sxy - sx * sy / n) / var).max(0.0);
        let intercept = (sy - slope * sx) / n;
        LinearModel {
            base,
            slope,
            intercept,
        }
    }

    /// The model through (`from`, 0) and (`to`, `span`): splits keys at `to`.
    pub fn through(from: u64, to: u64, span: f64) -> LinearModel {
        let width = to.saturating_sub(from).max(1) as f64;
        let mut slope = span / width;
        // Rounding must not leave `to` short of `span`, or the split would not split.
        while slope * width < span {
            slope = slope.next_up();
        }
        LinearModel {
            base: from,
            slope,
            intercept: 0.0,
        }
    }

    /// The same model with every position multiplied by `factor`.
    pub fn scaled(self, factor: f64) -> LinearModel {
        LinearModel {
            base: self.base,
            slope: self.slope * factor,
            intercept: self.intercept * factor,
        }
    }

    /// The unclamped predicted position of `key`.
    #[inline]
    pub fn raw(&self, key: u64) -> f64 {
        // The signed distance from the base, without a (slow) i128 to f64 conversion.
        let x = if key >= self.base {
            (key - self.base) as f64
        } else {
            -((self.base - key) as f64)
        };
        self.slope * x + self.intercept
    }

    /// The predicted position of `key`, clamped to `0..len`.
    #[inline]
    pub fn predict(&self, key: u64, len: usize) -> usize {
        let p = self.raw(key);
        if p <= 0.0 {
            0
        } else {
            (p as usize).min(len - 1)
        }
    }
}
