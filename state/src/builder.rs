//! [`WindowsAndState`]: windowed and stateful bolts on a
//! [`TopologyBuilder`], and the checkpoint wiring a topology with stateful
//! bolts gets at `create_topology` (Storm's `TopologyBuilder` does the
//! same for `IStatefulBolt`s).

use crate::checkpoint::epoch::KEEP_ALIVE_TICK_MS;
use crate::checkpoint::{CheckpointForwarder, CheckpointSpout, CHECKPOINT_FIELDS};
use crate::stateful::{StatefulBolt, StatefulBoltExecutor};
use crate::window::{
    PersistentWindowedBoltExecutor, WindowConfig, WindowedBolt, WindowedBoltExecutor,
};
use squall_topology_api::spec::ComponentKind;
use squall_topology_api::{
    BoltDeclarer, BoltFactory, ComponentId, Fields, GroupingSpec, StreamDef, StreamId,
    TopologyBuilder, CHECKPOINT_COMPONENT, CHECKPOINT_STREAM,
};
use std::collections::BTreeSet;
use std::sync::Arc;

/// Windowed and stateful bolts for [`TopologyBuilder`].
///
/// ```
/// use squall_state::*;
/// use squall_topology_api::*;
///
/// struct Sum;
/// impl WindowedBolt for Sum {
///     fn execute(&mut self, w: &TupleWindow<'_>, out: &mut WindowCollector<'_, '_>) {
///         let total: i64 = w.get().filter_map(|t| t.get_i64(0).ok()).sum();
///         out.emit(values![total]);
///     }
///     fn declare_output_fields(&self, d: &mut OutputFieldsDeclarer) {
///         d.declare(["sum"]);
///     }
/// }
/// # struct Numbers;
/// # impl Spout for Numbers {
/// #     fn next_tuple(&mut self, _: &mut SpoutOutputCollector<'_>) {}
/// #     fn declare_output_fields(&self, d: &mut OutputFieldsDeclarer) { d.declare(["n"]); }
/// # }
/// let mut b = TopologyBuilder::new();
/// b.set_spout("numbers", || Numbers, 1);
/// b.set_windowed_bolt("sum", || Sum, WindowConfig::window(Length::Count(10), Length::Count(2)), 1)
///     .shuffle_grouping("numbers");
/// assert!(b.create_topology().is_ok());
/// ```
pub trait WindowsAndState {
    /// Adds a windowed bolt (Storm's `setBolt(id, IWindowedBolt)`): each
    /// task keeps its windows and acks tuples as they leave the last one.
    fn set_windowed_bolt<B, F>(
        &mut self,
        id: &str,
        factory: F,
        window: WindowConfig,
        parallelism: u32,
    ) -> BoltDeclarer<'_>
    where
        B: WindowedBolt + 'static,
        F: Fn() -> B + Send + Sync + 'static;

    /// Adds a stateful bolt (Storm's `setBolt(id, IStatefulBolt)`); the
    /// topology gets the checkpoint spout and every bolt passes
    /// checkpoints on.
    fn set_stateful_bolt<B, F>(
        &mut self,
        id: &str,
        factory: F,
        parallelism: u32,
    ) -> BoltDeclarer<'_>
    where
        B: StatefulBolt + 'static,
        F: Fn() -> B + Send + Sync + 'static;

    /// Adds a windowed bolt whose windows are kept in checkpointed state
    /// (Storm's `BaseStatefulWindowedBolt.withPersistence`): tuples are
    /// acked at checkpoints, so windows may outlast the message timeout.
    fn set_stateful_windowed_bolt<B, F>(
        &mut self,
        id: &str,
        factory: F,
        window: WindowConfig,
        parallelism: u32,
    ) -> BoltDeclarer<'_>
    where
        B: WindowedBolt + 'static,
        F: Fn() -> B + Send + Sync + 'static;
}

impl WindowsAndState for TopologyBuilder {
    fn set_windowed_bolt<B, F>(
        &mut self,
        id: &str,
        factory: F,
        window: WindowConfig,
        parallelism: u32,
    ) -> BoltDeclarer<'_>
    where
        B: WindowedBolt + 'static,
        F: Fn() -> B + Send + Sync + 'static,
    {
        let config = window.clone();
        self.set_bolt(
            id,
            move || WindowedBoltExecutor::new(factory(), config.clone()),
            parallelism,
        )
        .configure(|c| window.configure(c, false))
    }

    fn set_stateful_bolt<B, F>(
        &mut self,
        id: &str,
        factory: F,
        parallelism: u32,
    ) -> BoltDeclarer<'_>
    where
        B: StatefulBolt + 'static,
        F: Fn() -> B + Send + Sync + 'static,
    {
        self.add_finisher("checkpoint", Arc::new(wire_checkpoints));
        self.set_bolt(
            id,
            move || StatefulBoltExecutor::new(factory()),
            parallelism,
        )
        .configure(|c| c.tick_tuple_freq_millis = Some(KEEP_ALIVE_TICK_MS))
    }

    fn set_stateful_windowed_bolt<B, F>(
        &mut self,
        id: &str,
        factory: F,
        window: WindowConfig,
        parallelism: u32,
    ) -> BoltDeclarer<'_>
    where
        B: WindowedBolt + 'static,
        F: Fn() -> B + Send + Sync + 'static,
    {
        self.add_finisher("checkpoint", Arc::new(wire_checkpoints));
        let config = window.clone();
        self.set_bolt(
            id,
            move || PersistentWindowedBoltExecutor::new(factory(), config.clone()),
            parallelism,
        )
        .configure(|c| window.configure(c, true))
    }
}

/// Adds the checkpoint spout and the `$checkpoint` stream along every edge:
/// bolts fed by a spout get it from the checkpoint spout, others from their
/// input bolts, with all grouping; bolts that keep no state pass it on
/// through a [`CheckpointForwarder`].
fn wire_checkpoints(b: &mut TopologyBuilder) {
    b.set_spout(CHECKPOINT_COMPONENT, CheckpointSpout::new, 1);
    let checkpoint = StreamId::from(CHECKPOINT_STREAM);
    let kinds: Vec<(ComponentId, ComponentKind)> = b
        .spec()
        .components
        .iter()
        .map(|(id, c)| (id.clone(), c.kind))
        .collect();
    let is_spout = |id: &ComponentId| {
        kinds
            .iter()
            .any(|(c, k)| c == id && *k == ComponentKind::Spout)
    };
    for (id, kind) in &kinds {
        if *kind != ComponentKind::Bolt {
            continue;
        }
        let Some(c) = b.spec_mut().components.get_mut(id) else {
            continue;
        };
        let forwards = !c.streams.contains_key(&checkpoint);
        if forwards {
            c.streams.insert(
                checkpoint.clone(),
                StreamDef {
                    fields: Fields::from(CHECKPOINT_FIELDS),
                    direct: false,
                },
            );
        }
        let sources: BTreeSet<ComponentId> = c
            .inputs
            .iter()
            .filter(|i| !i.stream.is_system() && i.stream != checkpoint)
            .map(|i| {
                if is_spout(&i.component) {
                    ComponentId::from(CHECKPOINT_COMPONENT)
                } else {
                    i.component.clone()
                }
            })
            .collect();
        for source in sources {
            c.inputs.push(squall_topology_api::spec::InputSpec {
                component: source,
                stream: checkpoint.clone(),
                grouping: GroupingSpec::All,
            });
        }
        if forwards {
            b.wrap_bolt(id.as_str(), |inner: BoltFactory| -> BoltFactory {
                Arc::new(move || Box::new(CheckpointForwarder::new(inner())))
            });
        }
    }
}
