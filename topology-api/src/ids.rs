//! Newtype identifiers: tasks, components and streams.

use serde::{Deserialize, Serialize};
use std::fmt;

/// The stream a component emits to when it names none (Storm's `"default"`).
pub const DEFAULT_STREAM: &str = "default";

/// Prefix reserved for system components and streams (`__acker`, `__tick`, …).
pub const SYSTEM_PREFIX: &str = "__";

/// The stream checkpoint tuples travel on when a topology has stateful
/// bolts (Storm's `CheckpointSpout.CHECKPOINT_STREAM_ID`); its fields are
/// `txid` and `action`.
pub const CHECKPOINT_STREAM: &str = "$checkpoint";

/// The spout that starts each checkpoint (Storm's
/// `CheckpointSpout.CHECKPOINT_COMPONENT_ID`).
pub const CHECKPOINT_COMPONENT: &str = "$checkpointspout";

/// A task's id, unique within a topology. Task ids start at 1 and are dealt
/// to components in component-id order, as Storm does.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct TaskId(pub u32);

impl fmt::Display for TaskId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

macro_rules! string_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        pub struct $name(pub String);

        impl $name {
            /// The id as a string slice.
            pub fn as_str(&self) -> &str {
                &self.0
            }

            /// Whether the id starts with the reserved `__` prefix.
            pub fn is_system(&self) -> bool {
                self.0.starts_with(SYSTEM_PREFIX)
            }
        }

        /// Debug-formats as the quoted id, e.g. `"split"`.
        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{:?}", self.0)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl From<&str> for $name {
            fn from(s: &str) -> Self {
                Self(s.to_owned())
            }
        }

        impl From<String> for $name {
            fn from(s: String) -> Self {
                Self(s)
            }
        }

        impl std::borrow::Borrow<str> for $name {
            fn borrow(&self) -> &str {
                &self.0
            }
        }
    };
}

string_id!(
    /// A spout's or bolt's id within its topology, e.g. `"split"`.
    ComponentId
);
string_id!(
    /// An output stream's id within its component, e.g. `"default"`.
    StreamId
);

impl StreamId {
    /// The default stream, [`DEFAULT_STREAM`].
    pub fn default_stream() -> Self {
        Self(DEFAULT_STREAM.to_owned())
    }
}
