//! Loading a topology [`Config`] from a YAML file plus `key=value` overrides.

use squall_topology_api::{Config, ConfigError};
use std::path::{Path, PathBuf};

/// Why a config file could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigFileError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {error}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The OS error.
        error: std::io::Error,
    },
    /// The file has a bad key or value.
    #[error("config file {path}: {error}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        error: ConfigError,
    },
    /// An override has a bad key or value.
    #[error("config override: {0}")]
    Override(ConfigError),
}

/// Reads `path` (a YAML map of Storm keys, e.g. `topology.workers: 2`) when
/// given, over the defaults, then applies each `key=value` override in
/// order (as `-c key=value` on a command line).
pub fn load_config(path: Option<&Path>, overrides: &[String]) -> Result<Config, ConfigFileError> {
    let mut config = Config::new();
    if let Some(path) = path {
        let text = std::fs::read_to_string(path).map_err(|error| ConfigFileError::Read {
            path: path.to_owned(),
            error,
        })?;
        config
            .merge_yaml(&text)
            .map_err(|error| ConfigFileError::Invalid {
                path: path.to_owned(),
                error,
            })?;
    }
    for kv in overrides {
        config
            .apply_override(kv)
            .map_err(ConfigFileError::Override)?;
    }
    Ok(config)
}
