//! Changing a listed symbol (`UpdateSymbol`): lock the row, merge the masked fields,
//! validate the result like a new listing, write it and announce `symbol.updated`, in the
//! caller's transaction. The rows and the other statements are in [`crate::store::symbols`].

use mirai_proto::stock::v1 as pb;
use sqlx::{Postgres, Transaction};

use crate::domain::{DomainError, NewSymbol, Ticker};
use crate::error::{Error, Result, db};
use crate::store::{self, symbols::SymbolRow};

/// The fields `UpdateSymbol` may change.
const UPDATABLE: [&str; 4] = ["name", "exchange_mic", "currency", "asset_type"];

/// Applies the fields of `update` named in `mask` to the stored symbol and enqueues
/// `symbol.updated` (with the full metadata after the change), in the caller's transaction.
/// Unknown paths are INVALID_ARGUMENT; the merged values are validated like a new listing.
/// A mask that changes nothing returns the row unchanged, without an event. `Ok(None)` for an
/// unknown ticker.
pub async fn update(
    tx: &mut Transaction<'_, Postgres>,
    update: &pb::Symbol,
    mask: &[String],
) -> Result<Option<SymbolRow>> {
    let status = db("symbol");
    let ticker = Ticker::parse(&update.symbol)?;
    for path in mask {
        if !UPDATABLE.contains(&path.as_str()) {
            return Err(Error::invalid(
                "update_mask",
                format!(
                    "`{path}` cannot be changed (one of {})",
                    UPDATABLE.join(", ")
                ),
            ));
        }
    }
    let current = store::symbols::lock(tx, &ticker).await.map_err(&status)?;
    let Some(current) = current else {
        return Ok(None);
    };
    let mut merged: pb::Symbol = current.clone().into();
    for path in mask {
        match path.as_str() {
            "name" => merged.name = update.name.clone(),
            "exchange_mic" => merged.exchange_mic = update.exchange_mic.clone(),
            "currency" => merged.currency = update.currency.clone(),
            _ => merged.asset_type = update.asset_type,
        }
    }
    let new = NewSymbol::parse(&merged).map_err(|e| match e {
        // Name the field as the caller sent it (`symbol.name` → the masked `name`).
        DomainError::Invalid { field, message } => {
            Error::invalid(field.trim_start_matches("symbol."), message)
        }
        other => other.into(),
    })?;
    if (
        new.name.as_str(),
        new.exchange_mic.as_str(),
        new.currency.as_str(),
        new.asset_type,
    ) == (
        current.name.as_str(),
        current.exchange_mic.as_str(),
        current.currency.as_str(),
        current.asset_type.as_str(),
    ) {
        return Ok(Some(current));
    }
    let row = store::symbols::write_update(tx, &ticker, &new)
        .await
        .map_err(&status)?;
    Ok(Some(row))
}
