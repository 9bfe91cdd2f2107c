//! Momentum oscillators: RSI, MACD, stochastic, ADX, CCI, MFI.

use std::collections::VecDeque;

use super::moving_average::{MaType, ma_core};
use super::volatility::true_range;
use super::{Error, Result, align, check_enough, check_finite, check_len, check_period, is_zero};

/// Relative strength index with Wilder's smoothing: the first average gain and loss are plain
/// means over `period` changes, later ones `(prev·(period−1) + change) / period`. Lookback
/// `period`. A window without movement reads 0, as in TA-Lib.
///
/// As TA-Lib 0.8.1's compiled code: divisions by the period are multiplications by its
/// reciprocal, and the ratio is `gain / (loss + gain) · 100`.
pub fn rsi(values: &[f64], period: usize) -> Result<Vec<f64>> {
    const NAME: &str = "rsi";
    check_period(NAME, "period", period, 2)?;
    check_finite(NAME, "values", values)?;
    check_enough(NAME, period, values.len())?;

    let inv = 1.0 / period as f64;
    let p1 = (period - 1) as f64;
    let ratio = |gain: f64, loss: f64| {
        let total = loss + gain;
        if is_zero(total) {
            0.0
        } else {
            (gain / total) * 100.0
        }
    };
    // The up and down parts of a change, as TA-Lib splits it: `down = up − change`.
    let split = |w: &[f64]| {
        let change = w[1] - w[0];
        let up = if change > 0.0 { change } else { 0.0 };
        (up, up - change)
    };
    let mut out = Vec::with_capacity(values.len() - period);
    let mut gain = 0.0;
    let mut loss = 0.0;
    for w in values[..=period].windows(2) {
        let (up, down) = split(w);
        gain += up;
        loss += down;
    }
    gain *= inv;
    loss *= inv;
    out.push(ratio(gain, loss));
    for w in values[period..].windows(2) {
        let (up, down) = split(w);
        gain = (gain * p1 + up) * inv;
        loss = (down + loss * p1) * inv;
        out.push(ratio(gain, loss));
    }
    Ok(align(values.len(), period, &out))
}

/// MACD line, signal line and histogram, each aligned to the input.
#[derive(Debug, Clone, PartialEq)]
pub struct Macd {
    /// Fast EMA − slow EMA.
    pub macd: Vec<f64>,
    /// EMA of the MACD line over `signal_period`.
    pub signal: Vec<f64>,
    /// MACD − signal.
    pub hist: Vec<f64>,
}

/// MACD as TA-Lib computes it. Lookback `(slow − 1) + (signal − 1)`, 33 for 12/26/9.
///
/// TA-Lib's particular seeding: both price EMAs are seeded with SMAs whose windows **end on the
/// same bar** (the slow EMA's first bar), so the fast EMA starts later than a stand-alone
/// 12-bar EMA would and the two differ from `ema(close, 12)` for a while. The signal EMA is
/// seeded with the mean of the first `signal_period` MACD values. All three advance in one
/// pass with `k = 2/(period+1)` and TA-Lib 0.8's fused multiply-add (see [`super::ema`]).
///
/// TA-Lib silently swaps a fast period longer than the slow one; this rejects it instead.
pub fn macd(
    values: &[f64],
    fast_period: usize,
    slow_period: usize,
    signal_period: usize,
) -> Result<Macd> {
    const NAME: &str = "macd";
    check_period(NAME, "fast_period", fast_period, 2)?;
    check_period(NAME, "slow_period", slow_period, 2)?;
    check_period(NAME, "signal_period", signal_period, 1)?;
    if fast_period >= slow_period {
        return Err(Error::InvalidParameter {
            indicator: NAME,
            parameter: "fast_period",
            reason: format!("must be shorter than slow_period ({fast_period} ≥ {slow_period})"),
        });
    }
    check_finite(NAME, "values", values)?;
    let lookback = (slow_period - 1) + (signal_period - 1);
    check_enough(NAME, lookback, values.len())?;

    let fast_k = 2.0 / (fast_period as f64 + 1.0);
    let slow_k = 2.0 / (slow_period as f64 + 1.0);
    let signal_k = 2.0 / (signal_period as f64 + 1.0);
    let x = values;

    // Seeds: one pass over the slow window, the fast window being its tail.
    let mut slow_sum = 0.0;
    for &v in &x[..slow_period - fast_period] {
        slow_sum += v;
    }
    let mut fast_sum = 0.0;
    for &v in &x[slow_period - fast_period..slow_period] {
        fast_sum += v;
        slow_sum += v;
    }
    let mut slow = slow_sum / slow_period as f64;
    let mut fast = fast_sum / fast_period as f64;
    let mut line = fast - slow;

    // The signal's seed: the mean of the first `signal_period` MACD values.
    let mut today = slow_period;
    let mut signal_sum = line;
    for &v in &x[today..today + signal_period - 1] {
        fast = (v - fast).mul_add(fast_k, fast);
        slow = (v - slow).mul_add(slow_k, slow);
        line = fast - slow;
        signal_sum += line;
    }
    today += signal_period - 1;
    let mut signal = signal_sum / signal_period as f64;

    let n = x.len() - lookback;
    let mut out_macd = Vec::with_capacity(n);
    let mut out_signal = Vec::with_capacity(n);
    let mut out_hist = Vec::with_capacity(n);
    out_macd.push(line);
    out_signal.push(signal);
    out_hist.push(line - signal);
    for &v in &x[today..] {
        fast = (v - fast).mul_add(fast_k, fast);
        slow = (v - slow).mul_add(slow_k, slow);
        line = fast - slow;
        signal = (line - signal).mul_add(signal_k, signal);
        out_macd.push(line);
        out_signal.push(signal);
        out_hist.push(line - signal);
    }
    let len = x.len();
    Ok(Macd {
        macd: align(len, lookback, &out_macd),
        signal: align(len, lookback, &out_signal),
        hist: align(len, lookback, &out_hist),
    })
}

/// Slow stochastic %K and %D, aligned to the input.
#[derive(Debug, Clone, PartialEq)]
pub struct Stoch {
    /// The smoothed %K.
    pub slowk: Vec<f64>,
    /// The average of `slowk`.
    pub slowd: Vec<f64>,
}

/// Parameters of [`stoch`], TA-Lib's defaults by [`Default`]: 5, 3 (SMA), 3 (SMA).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StochParams {
    /// Bars of the highest high / lowest low window.
    pub fastk_period: usize,
    /// Smoothing of fast %K into slow %K.
    pub slowk_period: usize,
    /// Average used for slow %K.
    pub slowk_ma: MaType,
    /// Smoothing of slow %K into %D.
    pub slowd_period: usize,
    /// Average used for %D.
    pub slowd_ma: MaType,
}

impl Default for StochParams {
    fn default() -> Self {
        StochParams {
            fastk_period: 5,
            slowk_period: 3,
            slowk_ma: MaType::Sma,
            slowd_period: 3,
            slowd_ma: MaType::Sma,
        }
    }
}

impl StochParams {
    /// Lookback: `(fastk − 1)` plus both averages' lookbacks; 8 for the defaults.
    pub fn lookback(&self) -> usize {
        (self.fastk_period - 1)
            + self.slowk_ma.lookback(self.slowk_period)
            + self.slowd_ma.lookback(self.slowd_period)
    }
}

/// Stochastic oscillator as TA-Lib's `STOCH`: fast %K =
/// `(close − lowest low) / (highest high − lowest low) · 100` over `fastk_period` bars (0 when
/// the range is 0), smoothed into slow %K, and slow %K smoothed into %D.
pub fn stoch(high: &[f64], low: &[f64], close: &[f64], params: StochParams) -> Result<Stoch> {
    const NAME: &str = "stoch";
    check_period(NAME, "fastk_period", params.fastk_period, 1)?;
    check_period(NAME, "slowk_period", params.slowk_period, 1)?;
    check_period(NAME, "slowd_period", params.slowd_period, 1)?;
    hlc(NAME, high, low, close)?;
    let lookback = params.lookback();
    check_enough(NAME, lookback, close.len())?;

    let k = params.fastk_period;
    let mut fast = Vec::with_capacity(close.len() + 1 - k);
    // Monotonic queues of indices: the window's highest high and lowest low at the front.
    let mut highs: VecDeque<usize> = VecDeque::with_capacity(k);
    let mut lows: VecDeque<usize> = VecDeque::with_capacity(k);
    for today in 0..close.len() {
        while highs.back().is_some_and(|&i| high[i] <= high[today]) {
            highs.pop_back();
        }
        highs.push_back(today);
        while lows.back().is_some_and(|&i| low[i] >= low[today]) {
            lows.pop_back();
        }
        lows.push_back(today);
        if today + 1 < k {
            continue;
        }
        let first = today + 1 - k;
        while highs.front().is_some_and(|&i| i < first) {
            highs.pop_front();
        }
        while lows.front().is_some_and(|&i| i < first) {
            lows.pop_front();
        }
        let highest = high[highs[0]];
        let lowest = low[lows[0]];
        let range = highest - lowest;
        // TA-Lib 0.8 divides by the range, then scales (older releases divided by range/100).
        fast.push(if range != 0.0 {
            (close[today] - lowest) / range * 100.0
        } else {
            0.0
        });
    }
    let slowk = ma_core(&fast, params.slowk_period, params.slowk_ma);
    let slowd = ma_core(&slowk, params.slowd_period, params.slowd_ma);
    let len = close.len();
    Ok(Stoch {
        slowk: align(len, lookback, &slowk[slowk.len() - slowd.len()..]),
        slowd: align(len, lookback, &slowd),
    })
}

/// Average directional index (Wilder). Lookback `2·period − 1`.
///
/// As TA-Lib: +DM/−DM and the true range are summed over the first `period − 1` bars and then
/// Wilder-smoothed (`prev − prev/period + new`); DX over the next `period` bars is averaged
/// into the first ADX, later ADX values are `(prev·(period−1) + DX) / period`. A bar whose
/// smoothed true range or DI sum is zero leaves the ADX unchanged.
pub fn adx(high: &[f64], low: &[f64], close: &[f64], period: usize) -> Result<Vec<f64>> {
    const NAME: &str = "adx";
    check_period(NAME, "period", period, 2)?;
    hlc(NAME, high, low, close)?;
    let lookback = 2 * period - 1;
    check_enough(NAME, lookback, close.len())?;

    let p = period as f64;
    let p1 = (period - 1) as f64;
    let mut plus_dm = 0.0;
    let mut minus_dm = 0.0;
    let mut tr = 0.0;
    // Directional movement of bar `today` against the previous bar.
    let movement = |today: usize| {
        let diff_p = high[today] - high[today - 1];
        let diff_m = low[today - 1] - low[today];
        if diff_m > 0.0 && diff_p < diff_m {
            (0.0, diff_m)
        } else if diff_p > 0.0 && diff_p > diff_m {
            (diff_p, 0.0)
        } else {
            (0.0, 0.0)
        }
    };
    let dx = |plus_dm: f64, minus_dm: f64, tr: f64| -> Option<f64> {
        if is_zero(tr) {
            return None;
        }
        let minus_di = 100.0 * (minus_dm / tr);
        let plus_di = 100.0 * (plus_dm / tr);
        let sum = minus_di + plus_di;
        if is_zero(sum) {
            None
        } else {
            Some(100.0 * ((minus_di - plus_di).abs() / sum))
        }
    };
    for today in 1..period {
        let (p_dm, m_dm) = movement(today);
        plus_dm += p_dm;
        minus_dm += m_dm;
        tr += true_range(high[today], low[today], close[today - 1]);
    }
    let mut sum_dx = 0.0;
    let smooth = |prev: f64, new: f64| prev - prev / p + new;
    for today in period..=lookback {
        let (p_dm, m_dm) = movement(today);
        // TA-Lib decays both before adding the new movement: `prev -= prev/period; prev += dm`.
        minus_dm = smooth(minus_dm, m_dm);
        plus_dm = smooth(plus_dm, p_dm);
        tr = smooth(tr, true_range(high[today], low[today], close[today - 1]));
        if let Some(v) = dx(plus_dm, minus_dm, tr) {
            sum_dx += v;
        }
    }
    let mut adx = sum_dx / p;
    let mut out = Vec::with_capacity(close.len() - lookback);
    out.push(adx);
    for today in lookback + 1..close.len() {
        let (p_dm, m_dm) = movement(today);
        minus_dm = smooth(minus_dm, m_dm);
        plus_dm = smooth(plus_dm, p_dm);
        tr = smooth(tr, true_range(high[today], low[today], close[today - 1]));
        if let Some(v) = dx(plus_dm, minus_dm, tr) {
            adx = ((adx * p1) + v) / p;
        }
        out.push(adx);
    }
    Ok(align(close.len(), lookback, &out))
}

/// Commodity channel index over the typical price `(high + low + close) / 3`:
/// `(tp − mean) / (0.015 · mean absolute deviation)`, 0 when either is 0. Lookback
/// `period − 1`.
///
/// TA-Lib keeps the window in a circular buffer and sums it in buffer-slot order, not in time
/// order; the same order is used here so the sums round identically.
pub fn cci(high: &[f64], low: &[f64], close: &[f64], period: usize) -> Result<Vec<f64>> {
    const NAME: &str = "cci";
    check_period(NAME, "period", period, 2)?;
    hlc(NAME, high, low, close)?;
    let lookback = period - 1;
    check_enough(NAME, lookback, close.len())?;

    let p = period as f64;
    let mut ring = vec![0.0; period];
    let mut out = Vec::with_capacity(close.len() - lookback);
    for i in 0..close.len() {
        let tp = (high[i] + low[i] + close[i]) / 3.0;
        ring[i % period] = tp;
        if i < lookback {
            continue;
        }
        let mut mean = 0.0;
        for &v in &ring {
            mean += v;
        }
        mean /= p;
        let mut dev = 0.0;
        for &v in &ring {
            dev += (v - mean).abs();
        }
        let diff = tp - mean;
        out.push(if diff != 0.0 && dev != 0.0 {
            diff / (0.015 * (dev / p))
        } else {
            0.0
        });
    }
    Ok(align(close.len(), lookback, &out))
}

/// Money flow index: the share of `period` bars' money flow (typical price × volume) that
/// came on bars whose typical price rose, × 100; 0 when the total flow is below 1. Lookback
/// `period`.
pub fn mfi(
    high: &[f64],
    low: &[f64],
    close: &[f64],
    volume: &[f64],
    period: usize,
) -> Result<Vec<f64>> {
    const NAME: &str = "mfi";
    check_period(NAME, "period", period, 2)?;
    hlc(NAME, high, low, close)?;
    check_len(NAME, "volume", close.len(), volume)?;
    check_finite(NAME, "volume", volume)?;
    check_enough(NAME, period, close.len())?;

    let ratio = |pos: f64, neg: f64| {
        let total = pos + neg;
        if total < 1.0 {
            0.0
        } else {
            100.0 * (pos / total)
        }
    };
    // (positive, negative) flow of each bar in the window, oldest first.
    let mut flows: VecDeque<(f64, f64)> = VecDeque::with_capacity(period);
    let mut pos_sum = 0.0;
    let mut neg_sum = 0.0;
    let mut prev_tp = (high[0] + low[0] + close[0]) / 3.0;
    let mut out = Vec::with_capacity(close.len() - period);
    for today in 1..close.len() {
        if flows.len() == period {
            let (pos, neg) = flows.pop_front().unwrap_or_default();
            pos_sum -= pos;
            neg_sum -= neg;
        }
        let tp = (high[today] + low[today] + close[today]) / 3.0;
        let change = tp - prev_tp;
        prev_tp = tp;
        let flow = tp * volume[today];
        let entry = if change < 0.0 {
            neg_sum += flow;
            (0.0, flow)
        } else if change > 0.0 {
            pos_sum += flow;
            (flow, 0.0)
        } else {
            (0.0, 0.0)
        };
        flows.push_back(entry);
        if today >= period {
            out.push(ratio(pos_sum, neg_sum));
        }
    }
    Ok(align(close.len(), period, &out))
}

/// The checks every high/low/close indicator shares.
pub(crate) fn hlc(name: &'static str, high: &[f64], low: &[f64], close: &[f64]) -> Result<()> {
    let n = high.len();
    check_len(name, "low", n, low)?;
    check_len(name, "close", n, close)?;
    check_finite(name, "high", high)?;
    check_finite(name, "low", low)?;
    check_finite(name, "close", close)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ramp(n: usize) -> Vec<f64> {
        (0..n).map(|i| 100.0 + i as f64).collect()
    }

    #[test]
    fn rsi_of_a_rising_series_is_100_and_of_a_flat_one_0() {
        let up = rsi(&ramp(20), 14).unwrap();
        assert!(up[..14].iter().all(|v| v.is_nan()));
        assert_eq!(up[14], 100.0);
        assert_eq!(rsi(&[5.0; 20], 14).unwrap()[19], 0.0);
    }

    #[test]
    fn macd_lookback_is_33_for_the_defaults() {
        let m = macd(&ramp(40), 12, 26, 9).unwrap();
        assert!(m.macd[32].is_nan() && !m.macd[33].is_nan());
        assert_eq!(m.hist[33], m.macd[33] - m.signal[33]);
    }

    #[test]
    fn macd_rejects_inverted_and_zero_periods() {
        let x = ramp(100);
        assert!(matches!(
            macd(&x, 26, 12, 9),
            Err(Error::InvalidParameter {
                parameter: "fast_period",
                ..
            })
        ));
        assert!(matches!(
            macd(&x, 12, 12, 9),
            Err(Error::InvalidParameter {
                parameter: "fast_period",
                ..
            })
        ));
        assert!(matches!(
            macd(&x, 12, 26, 0),
            Err(Error::InvalidParameter {
                parameter: "signal_period",
                ..
            })
        ));
        assert!(matches!(
            macd(&x[..33], 12, 26, 9),
            Err(Error::NotEnoughData {
                needed: 34,
                got: 33,
                ..
            })
        ));
    }

    #[test]
    fn stoch_at_the_top_of_its_range_reads_100() {
        let close = ramp(20);
        let high: Vec<f64> = close.iter().map(|c| c + 0.0).collect();
        let low: Vec<f64> = close.iter().map(|c| c - 2.0).collect();
        let s = stoch(&high, &low, &close, StochParams::default()).unwrap();
        assert!(s.slowd[7].is_nan());
        assert_eq!(s.slowk[8], 100.0);
        assert_eq!(s.slowd[19], 100.0);
    }

    #[test]
    fn hlc_inputs_must_have_equal_lengths() {
        let x = ramp(30);
        assert!(matches!(
            adx(&x, &x[..29], &x, 14),
            Err(Error::LengthMismatch {
                input: "low",
                expected: 30,
                got: 29,
                ..
            })
        ));
        assert!(matches!(
            mfi(&x, &x, &x, &x[..10], 14),
            Err(Error::LengthMismatch {
                input: "volume",
                ..
            })
        ));
    }

    #[test]
    fn oscillators_reject_a_period_of_one() {
        let x = ramp(30);
        assert!(rsi(&x, 1).is_err());
        assert!(adx(&x, &x, &x, 1).is_err());
        assert!(cci(&x, &x, &x, 1).is_err());
        assert!(mfi(&x, &x, &x, &x, 1).is_err());
    }

    #[test]
    fn adx_needs_two_periods_of_bars() {
        let x = ramp(27);
        assert!(matches!(
            adx(&x, &x, &x, 14),
            Err(Error::NotEnoughData {
                needed: 28,
                got: 27,
                ..
            })
        ));
    }
}
