//! Data quality: checks run on every ingest path (bulk import, the sample loader, live vendor
//! bars), findings stored as flags on the bars and as rows of `quality_issues`, reported by
//! `GetQualityReport` and announced as coalesced `data.quality.issue` events. Nothing is ever
//! repaired: a suspicious bar is stored as received, with its flags.
//!
//! - [`checks`]: the rules, as pure functions over a series of bars (unit-tested).
//! - [`run`]: running them over a stored range inside the ingest's transaction, recording
//!   findings, coalescing events.
//! - [`report`]: the quality report of a series.
//!
//! Two kinds of flags exist. *Derived* flags follow from the stored series alone and are
//! recomputed whenever a range is (re)ingested: OHLC inconsistency, non-positive price or
//! volume, gaps against the exchange calendar, bars on closed days, outlier returns. *Ingest*
//! flags record what happened when a bar arrived and are kept: duplicate in one ingest, out of
//! order in a live stream, values changed by a re-ingest, repaired by the source.

pub mod checks;
pub mod report;
pub mod run;

use mirai_proto::stock::v1::QualityFlag;

/// Bit of `flag` in `bars.quality_flags` (bit n = `QualityFlag` n).
pub const fn bit(flag: QualityFlag) -> i32 {
    1 << (flag as i32)
}

/// Flags recomputed from the stored series on every ingest of a range.
pub const DERIVED: i32 = bit(QualityFlag::OhlcInconsistent)
    | bit(QualityFlag::NonPositivePrice)
    | bit(QualityFlag::NonPositiveVolume)
    | bit(QualityFlag::GapBefore)
    | bit(QualityFlag::OutlierReturn)
    | bit(QualityFlag::OffCalendar);

/// Every flag a bar can carry, in enum order.
pub const ALL: [QualityFlag; 10] = [
    QualityFlag::OhlcInconsistent,
    QualityFlag::NonPositivePrice,
    QualityFlag::NonPositiveVolume,
    QualityFlag::Duplicate,
    QualityFlag::OutOfOrder,
    QualityFlag::GapBefore,
    QualityFlag::OutlierReturn,
    QualityFlag::OffCalendar,
    QualityFlag::ValueChanged,
    QualityFlag::SourceRepaired,
];

/// The flags set in a bitmask, in enum order.
pub fn flags_of(mask: i32) -> impl Iterator<Item = QualityFlag> {
    ALL.into_iter().filter(move |f| mask & bit(*f) != 0)
}

/// Tuning of the checks (`MIRAI_QUALITY_*`, see the README).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Settings {
    /// Trailing returns the outlier check compares each return with.
    pub outlier_window: usize,
    /// Fewer trailing returns than this: no outlier verdict (too little history).
    pub outlier_min_window: usize,
    /// |robust z| above this flags the return.
    pub outlier_z: f64,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            outlier_window: 60,
            outlier_min_window: 20,
            outlier_z: 10.0,
        }
    }
}
