//! Squall: a Storm-model stream processor.
//!
//! Write a topology of [`Spout`]s and [`Bolt`]s with [`TopologyBuilder`],
//! run it in-process with [`LocalCluster`]. Every spout tuple emitted with a
//! message id is tracked by acker tasks (Storm's XOR algorithm) and acked,
//! failed or timed out exactly once.
//!
//! ```
//! use squall::*;
//! use squall::testing::{complete_topology, MockedSources};
//!
//! struct Split;
//! impl BasicBolt for Split {
//!     fn execute(&mut self, t: &Tuple, out: &mut BasicOutputCollector<'_, '_>) -> Result<(), ExecuteError> {
//!         for w in t.get_str(0)?.split_whitespace() {
//!             out.emit(values![w]);
//!         }
//!         Ok(())
//!     }
//!     fn declare_output_fields(&self, d: &mut OutputFieldsDeclarer) {
//!         d.declare(["word"]);
//!     }
//! }
//!
//! let mut b = TopologyBuilder::new();
//! b.set_spout("lines", || testing::FixedTupleSpout::declaring(["line"]), 1);
//! b.set_basic_bolt("split", || Split, 2).shuffle_grouping("lines");
//! let topology = b.create_topology().unwrap();
//! let sources = MockedSources::new().add("lines", vec![values!["a b"], values!["c"]]);
//! let result = complete_topology(&topology, &Config::new(), sources).unwrap();
//! assert_eq!(result.emitted("split").len(), 3);
//! ```
#![forbid(missing_docs)]

/// The allocator of every binary linking Squall, with the default feature
/// `mimalloc`: tuples are allocated on one executor's thread and freed on
/// another's, and glibc's malloc serializes such frees on its arena locks
/// (the word count spends a tenth of its time there). Build with
/// `default-features = false` to choose another `#[global_allocator]`.
#[cfg(feature = "mimalloc")]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod config_file;
mod local_cluster;
pub mod secure_init;
pub mod submitter;
pub mod testing;

pub use config_file::{load_config, ConfigFileError};
pub use local_cluster::{LocalCluster, LocalClusterError};
pub use squall_cluster::rpc::{ClusterSummary, TopologyInfo};
pub use squall_cluster::schema::TopologyStatus;
pub use squall_connectors as connectors;
pub use squall_multilang as multilang;
pub use squall_multilang::{ShellBolt, ShellSpout};
pub use squall_state as stateful;
pub use squall_state::{
    KeyValueState, Length, StatefulBolt, TupleWindow, WindowCollector, WindowConfig, WindowedBolt,
    WindowsAndState,
};
pub use squall_topology_api::*;
pub use squall_trident as trident;
pub use submitter::{init_logging, is_cluster_run, submit_topology, SubmitError};

/// The README's examples, compiled and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
