//! Names of models and versions.

use std::fmt;

use mirai_proto::prediction::v1 as pb;

/// Why a model reference is not acceptable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ModelRefError {
    /// The name breaks the contract's rule (lower-case letters, digits and '-', 1–64).
    #[error("model name {0:?} must be 1-64 lower-case letters, digits or '-'")]
    Name(String),
    /// The version breaks the contract's rule (letters, digits, '.', '-', '_', 1–64).
    #[error("model version {0:?} must be 1-64 letters, digits, '.', '-' or '_'")]
    Version(String),
    /// The request named no model where one is required.
    #[error("a model (name and version) is required")]
    Missing,
}

/// A model version, e.g. `spx-lstm` / `1.0.0`. Ordered by name, then version text.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ModelRef {
    name: String,
    version: String,
}

impl ModelRef {
    pub fn parse(name: &str, version: &str) -> Result<Self, ModelRefError> {
        let name_ok = (1..=64).contains(&name.len())
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if !name_ok {
            return Err(ModelRefError::Name(name.to_owned()));
        }
        let version_ok = (1..=64).contains(&version.len())
            && version
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'));
        if !version_ok {
            return Err(ModelRefError::Version(version.to_owned()));
        }
        Ok(Self {
            name: name.to_owned(),
            version: version.to_owned(),
        })
    }

    /// The reference in a request; `Missing` when absent.
    pub fn from_wire(model: Option<&pb::ModelRef>) -> Result<Self, ModelRefError> {
        let model = model.ok_or(ModelRefError::Missing)?;
        Self::parse(&model.name, &model.version)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn version(&self) -> &str {
        &self.version
    }

    pub fn to_wire(&self) -> pb::ModelRef {
        pb::ModelRef {
            name: self.name.clone(),
            version: self.version.clone(),
        }
    }
}

impl fmt::Display for ModelRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.name, self.version)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_versions_follow_the_contract() {
        let ok = ModelRef::parse("spx-lstm", "1.0.0").unwrap();
        assert_eq!(ok.to_string(), "spx-lstm/1.0.0");
        assert!(ModelRef::parse("w60-h64", "v1_rc-2").is_ok());
        for (name, version) in [
            ("", "1"),
            ("SPX", "1"),
            ("spx lstm", "1"),
            (&"a".repeat(65), "1"),
        ] {
            assert!(matches!(
                ModelRef::parse(name, version),
                Err(ModelRefError::Name(_))
            ));
        }
        for version in ["", "1/0", "1 0", "../x"] {
            assert!(matches!(
                ModelRef::parse("spx", version),
                Err(ModelRefError::Version(_))
            ));
        }
        assert_eq!(ModelRef::from_wire(None), Err(ModelRefError::Missing));
    }
}
