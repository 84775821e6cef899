//! Building topologies: [`TopologyBuilder`] and the declarers it returns.

use crate::spec::{
    ComponentConfig, ComponentKind, ComponentSpec, InputSpec, TopologyError, TopologySpec,
};
use crate::{
    BasicBolt, BasicBoltAdapter, Bolt, ComponentId, CustomGroupingFactory, CustomStreamGrouping,
    Fields, GroupingSpec, OutputFieldsDeclarer, Spout, StreamId, DEFAULT_STREAM,
};
use std::collections::BTreeMap;
use std::sync::Arc;

/// Makes one spout instance per task.
pub type SpoutFactory = Arc<dyn Fn() -> Box<dyn Spout> + Send + Sync>;
/// Makes one bolt instance per task.
pub type BoltFactory = Arc<dyn Fn() -> Box<dyn Bolt> + Send + Sync>;

/// A validated topology: its [`TopologySpec`] plus the factories that make
/// each task's spout or bolt. Cheap to clone.
#[derive(Clone)]
pub struct Topology {
    spec: TopologySpec,
    spouts: BTreeMap<ComponentId, SpoutFactory>,
    bolts: BTreeMap<ComponentId, BoltFactory>,
    custom_groupings: BTreeMap<(ComponentId, usize), CustomGroupingFactory>,
}

impl Topology {
    /// The structure.
    pub fn spec(&self) -> &TopologySpec {
        &self.spec
    }

    /// The factory of spout `id`.
    pub fn spout_factory(&self, id: &str) -> Option<&SpoutFactory> {
        self.spouts.get(id)
    }

    /// The factory of bolt `id`.
    pub fn bolt_factory(&self, id: &str) -> Option<&BoltFactory> {
        self.bolts.get(id)
    }

    /// A copy of this topology in which spout `id` is made by `factory`
    /// instead; the spout's declared streams stay as they were (the testing
    /// kit's mocked sources use this).
    pub fn with_spout_factory(
        &self,
        id: &str,
        factory: SpoutFactory,
    ) -> Result<Topology, TopologyError> {
        if !self.spouts.contains_key(id) {
            return Err(TopologyError::NotASpout(id.into()));
        }
        let mut t = self.clone();
        t.spouts.insert(id.into(), factory);
        Ok(t)
    }

    /// The factory of the custom grouping of `component`'s input number `input`.
    pub fn custom_grouping(
        &self,
        component: &ComponentId,
        input: usize,
    ) -> Option<&CustomGroupingFactory> {
        self.custom_groupings.get(&(component.clone(), input))
    }
}

impl std::fmt::Debug for Topology {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Topology")
            .field("spec", &self.spec)
            .finish_non_exhaustive()
    }
}

/// A step run on a copy of the builder by
/// [`TopologyBuilder::create_topology`], before validation: how extensions
/// (stateful bolts' checkpointing) wire components the user did not add.
pub type Finisher = Arc<dyn Fn(&mut TopologyBuilder) + Send + Sync>;

/// Builds a [`Topology`] (Storm's `TopologyBuilder`).
///
/// ```
/// use squall_topology_api::*;
///
/// struct Numbers(i64);
/// impl Spout for Numbers {
///     fn next_tuple(&mut self, out: &mut SpoutOutputCollector<'_>) {
///         self.0 += 1;
///         out.emit_with_id(values![self.0], self.0);
///     }
///     fn declare_output_fields(&self, d: &mut OutputFieldsDeclarer) {
///         d.declare(["n"]);
///     }
/// }
/// struct Print;
/// impl Bolt for Print {
///     fn execute(&mut self, t: &Tuple, out: &mut OutputCollector<'_>) {
///         out.ack(t);
///     }
///     fn declare_output_fields(&self, _: &mut OutputFieldsDeclarer) {}
/// }
///
/// let mut b = TopologyBuilder::new();
/// b.set_spout("numbers", || Numbers(0), 1);
/// b.set_bolt("print", || Print, 2).fields_grouping("numbers", ["n"]);
/// let topology = b.create_topology().unwrap();
/// assert_eq!(topology.spec().components.len(), 2);
/// ```
#[derive(Default)]
pub struct TopologyBuilder {
    spec: TopologySpec,
    spouts: BTreeMap<ComponentId, SpoutFactory>,
    bolts: BTreeMap<ComponentId, BoltFactory>,
    custom_groupings: BTreeMap<(ComponentId, usize), CustomGroupingFactory>,
    errors: Vec<TopologyError>,
    finishers: BTreeMap<String, Finisher>,
}

/// A stream to subscribe to: a component id alone means its default stream;
/// `(component, stream)` names the stream.
#[derive(Debug, Clone)]
pub struct StreamSource {
    /// The emitting component.
    pub component: ComponentId,
    /// The stream.
    pub stream: StreamId,
}

impl From<&str> for StreamSource {
    fn from(component: &str) -> Self {
        Self {
            component: component.into(),
            stream: DEFAULT_STREAM.into(),
        }
    }
}

impl From<(&str, &str)> for StreamSource {
    fn from((component, stream): (&str, &str)) -> Self {
        Self {
            component: component.into(),
            stream: stream.into(),
        }
    }
}

impl TopologyBuilder {
    /// An empty builder.
    pub fn new() -> Self {
        Self::default()
    }

    fn add_component(
        &mut self,
        id: &str,
        kind: ComponentKind,
        parallelism: u32,
        declarer: OutputFieldsDeclarer,
    ) -> Option<ComponentId> {
        let id = ComponentId::from(id);
        if self.spec.components.contains_key(&id) {
            self.errors.push(TopologyError::DuplicateComponent(id));
            return None;
        }
        let (streams, duplicates) = declarer.finish();
        for stream in duplicates {
            self.errors.push(TopologyError::DuplicateStream {
                component: id.clone(),
                stream,
            });
        }
        self.spec.components.insert(
            id.clone(),
            ComponentSpec {
                kind,
                parallelism,
                num_tasks: parallelism,
                inputs: Vec::new(),
                streams,
                config: ComponentConfig::default(),
            },
        );
        Some(id)
    }

    /// Adds a spout with `parallelism` executors; `factory` makes one
    /// instance per task (and one more, now, to read its declared streams).
    pub fn set_spout<S, F>(&mut self, id: &str, factory: F, parallelism: u32) -> SpoutDeclarer<'_>
    where
        S: Spout + 'static,
        F: Fn() -> S + Send + Sync + 'static,
    {
        let mut d = OutputFieldsDeclarer::new();
        factory().declare_output_fields(&mut d);
        let id = self.add_component(id, ComponentKind::Spout, parallelism, d);
        if let Some(id) = &id {
            self.spouts.insert(
                id.clone(),
                Arc::new(move || Box::new(factory()) as Box<dyn Spout>),
            );
        }
        SpoutDeclarer {
            inner: ComponentDeclarer { builder: self, id },
        }
    }

    /// Adds a bolt with `parallelism` executors; `factory` makes one
    /// instance per task.
    pub fn set_bolt<B, F>(&mut self, id: &str, factory: F, parallelism: u32) -> BoltDeclarer<'_>
    where
        B: Bolt + 'static,
        F: Fn() -> B + Send + Sync + 'static,
    {
        let mut d = OutputFieldsDeclarer::new();
        factory().declare_output_fields(&mut d);
        let id = self.add_component(id, ComponentKind::Bolt, parallelism, d);
        if let Some(id) = &id {
            self.bolts.insert(
                id.clone(),
                Arc::new(move || Box::new(factory()) as Box<dyn Bolt>),
            );
        }
        BoltDeclarer {
            inner: ComponentDeclarer { builder: self, id },
        }
    }

    /// Adds a [`BasicBolt`]: emits anchored to the input, acks automatically.
    pub fn set_basic_bolt<B, F>(
        &mut self,
        id: &str,
        factory: F,
        parallelism: u32,
    ) -> BoltDeclarer<'_>
    where
        B: BasicBolt + 'static,
        F: Fn() -> B + Send + Sync + 'static,
    {
        self.set_bolt(id, move || BasicBoltAdapter(factory()), parallelism)
    }

    /// Validates and returns the topology, or the first error found (see
    /// [`TopologySpec::validate`]; also duplicate component and stream ids).
    /// Registered [`Finisher`]s run first, on a copy, in key order.
    ///
    /// # Errors
    /// The first [`TopologyError`] found.
    pub fn create_topology(&self) -> Result<Topology, TopologyError> {
        let mut b = TopologyBuilder {
            spec: self.spec.clone(),
            spouts: self.spouts.clone(),
            bolts: self.bolts.clone(),
            custom_groupings: self.custom_groupings.clone(),
            errors: self.errors.clone(),
            finishers: BTreeMap::new(),
        };
        for f in self.finishers.values() {
            f(&mut b);
        }
        if let Some(e) = b.errors.first() {
            return Err(e.clone());
        }
        b.spec.validate()?;
        Ok(Topology {
            spec: b.spec,
            spouts: b.spouts,
            bolts: b.bolts,
            custom_groupings: b.custom_groupings,
        })
    }

    /// Registers `finisher` under `key` (a second registration under the
    /// same key is ignored): it runs at every
    /// [`create_topology`](Self::create_topology), on a copy of the builder.
    pub fn add_finisher(&mut self, key: &str, finisher: Finisher) {
        self.finishers.entry(key.to_owned()).or_insert(finisher);
    }

    /// The structure built so far.
    pub fn spec(&self) -> &TopologySpec {
        &self.spec
    }

    /// The structure built so far, to change (for [`Finisher`]s: adding
    /// inputs or streams to components).
    pub fn spec_mut(&mut self) -> &mut TopologySpec {
        &mut self.spec
    }

    /// Replaces the factory of bolt `id` by `wrap(factory)` (for
    /// [`Finisher`]s: a bolt run inside another, as Storm's
    /// `CheckpointTupleForwarder`); unknown ids are ignored.
    pub fn wrap_bolt(&mut self, id: &str, wrap: impl FnOnce(BoltFactory) -> BoltFactory) {
        if let Some(f) = self.bolts.remove(id) {
            self.bolts.insert(id.into(), wrap(f));
        }
    }
}

struct ComponentDeclarer<'a> {
    builder: &'a mut TopologyBuilder,
    /// `None` when the id was a duplicate: settings are then dropped.
    id: Option<ComponentId>,
}

impl ComponentDeclarer<'_> {
    fn spec(&mut self) -> Option<&mut ComponentSpec> {
        let id = self.id.as_ref()?;
        self.builder.spec.components.get_mut(id)
    }
}

/// Settings for a spout just added.
pub struct SpoutDeclarer<'a> {
    inner: ComponentDeclarer<'a>,
}

/// Settings and subscriptions for a bolt just added.
pub struct BoltDeclarer<'a> {
    inner: ComponentDeclarer<'a>,
}

macro_rules! common_settings {
    ($t:ident) => {
        impl $t<'_> {
            /// Sets the number of tasks (default: the parallelism).
            pub fn set_num_tasks(mut self, tasks: u32) -> Self {
                if let Some(c) = self.inner.spec() {
                    c.num_tasks = tasks;
                }
                self
            }

            /// Logs every tuple this component emits (`topology.debug`).
            pub fn set_debug(mut self, debug: bool) -> Self {
                if let Some(c) = self.inner.spec() {
                    c.config.debug = Some(debug);
                }
                self
            }
        }
    };
}
common_settings!(SpoutDeclarer);
common_settings!(BoltDeclarer);

impl SpoutDeclarer<'_> {
    /// Sets `topology.max.spout.pending` for this spout's tasks.
    pub fn set_max_spout_pending(mut self, pending: usize) -> Self {
        if let Some(c) = self.inner.spec() {
            c.config.max_spout_pending = Some(pending);
        }
        self
    }
}

impl BoltDeclarer<'_> {
    /// Changes this bolt's [`ComponentConfig`] (for extensions: windowed
    /// bolts set their tick interval, timestamp field and hold time).
    pub fn configure(mut self, f: impl FnOnce(&mut ComponentConfig)) -> Self {
        if let Some(c) = self.inner.spec() {
            f(&mut c.config);
        }
        self
    }

    /// Sets `topology.tick.tuple.freq.secs` for this bolt's tasks.
    pub fn set_tick_tuple_freq_secs(mut self, secs: u64) -> Self {
        if let Some(c) = self.inner.spec() {
            c.config.tick_tuple_freq_secs = Some(secs);
        }
        self
    }

    /// Subscribes to `source` with `grouping`.
    pub fn grouping(mut self, source: impl Into<StreamSource>, grouping: GroupingSpec) -> Self {
        let source = source.into();
        if let Some(c) = self.inner.spec() {
            c.inputs.push(InputSpec {
                component: source.component,
                stream: source.stream,
                grouping,
            });
        }
        self
    }

    /// Shuffle grouping: even, random-order load.
    pub fn shuffle_grouping(self, source: impl Into<StreamSource>) -> Self {
        self.grouping(source, GroupingSpec::Shuffle)
    }

    /// Fields grouping: equal values in `fields` go to the same task.
    pub fn fields_grouping(
        self,
        source: impl Into<StreamSource>,
        fields: impl Into<Fields>,
    ) -> Self {
        self.grouping(source, GroupingSpec::Fields(fields.into()))
    }

    /// All grouping: every task gets every tuple.
    pub fn all_grouping(self, source: impl Into<StreamSource>) -> Self {
        self.grouping(source, GroupingSpec::All)
    }

    /// Global grouping: everything to the lowest task id.
    pub fn global_grouping(self, source: impl Into<StreamSource>) -> Self {
        self.grouping(source, GroupingSpec::Global)
    }

    /// None grouping: as shuffle.
    pub fn none_grouping(self, source: impl Into<StreamSource>) -> Self {
        self.grouping(source, GroupingSpec::None)
    }

    /// Direct grouping: the emitter picks the task (the stream must be direct).
    pub fn direct_grouping(self, source: impl Into<StreamSource>) -> Self {
        self.grouping(source, GroupingSpec::Direct)
    }

    /// Local-or-shuffle grouping: prefer tasks in the emitter's worker.
    pub fn local_or_shuffle_grouping(self, source: impl Into<StreamSource>) -> Self {
        self.grouping(source, GroupingSpec::LocalOrShuffle)
    }

    /// Partial key grouping on `fields`: two candidate tasks per key, the
    /// less loaded one is chosen.
    pub fn partial_key_grouping(
        self,
        source: impl Into<StreamSource>,
        fields: impl Into<Fields>,
    ) -> Self {
        self.grouping(source, GroupingSpec::PartialKey(fields.into()))
    }

    /// A custom grouping; `factory` makes one instance per emitting task.
    pub fn custom_grouping<G, F>(
        mut self,
        source: impl Into<StreamSource>,
        name: &str,
        factory: F,
    ) -> Self
    where
        G: CustomStreamGrouping + 'static,
        F: Fn() -> G + Send + Sync + 'static,
    {
        if let Some(id) = self.inner.id.clone() {
            let index = self.inner.spec().map_or(0, |c| c.inputs.len());
            self.inner.builder.custom_groupings.insert(
                (id, index),
                Arc::new(move || Box::new(factory()) as Box<dyn CustomStreamGrouping>),
            );
        }
        self.grouping(source, GroupingSpec::Custom(name.to_owned()))
    }
}
