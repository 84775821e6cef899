//! The serializable shape of a topology, and its validation.

use crate::{ComponentId, Config, Fields, GroupingSpec, StreamDef, StreamId};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Whether a component is a spout or a bolt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ComponentKind {
    /// A source of tuples.
    Spout,
    /// An operator.
    Bolt,
}

/// A subscription of a bolt to one stream of another component.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InputSpec {
    /// The emitting component.
    pub component: ComponentId,
    /// The stream subscribed to.
    pub stream: StreamId,
    /// How the subscriber's tasks share it.
    pub grouping: GroupingSpec,
}

/// Per-component settings that override the topology's [`Config`](crate::Config).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ComponentConfig {
    /// `topology.max.spout.pending` for this spout's tasks.
    pub max_spout_pending: Option<usize>,
    /// `topology.tick.tuple.freq.secs` for this bolt's tasks.
    pub tick_tuple_freq_secs: Option<u64>,
    /// `topology.debug` for this component: log every emitted tuple.
    pub debug: Option<bool>,
    /// Tick tuples every this many ms instead of `tick_tuple_freq_secs`
    /// (windowed bolts use it to fire duration windows and watermarks on
    /// time).
    #[serde(default)]
    pub tick_tuple_freq_millis: Option<u64>,
    /// The field every input stream must carry as the tuple's event time
    /// (a windowed bolt's `with_timestamp_field`); checked by
    /// [`TopologySpec::validate`].
    #[serde(default)]
    pub timestamp_field: Option<String>,
    /// How long, in ms, this bolt holds an input tuple un-acked (a duration
    /// window's length plus its sliding interval); checked against
    /// `topology.message.timeout.secs` by
    /// [`TopologySpec::validate_with_config`].
    #[serde(default)]
    pub holds_tuples_ms: Option<u64>,
}

/// One component of a [`TopologySpec`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ComponentSpec {
    /// Spout or bolt.
    pub kind: ComponentKind,
    /// Number of executors (threads).
    pub parallelism: u32,
    /// Number of tasks, at least `parallelism`; tasks are dealt to executors
    /// in contiguous ranges.
    pub num_tasks: u32,
    /// Subscriptions (bolts only).
    pub inputs: Vec<InputSpec>,
    /// Declared output streams.
    pub streams: BTreeMap<StreamId, StreamDef>,
    /// Per-component overrides.
    pub config: ComponentConfig,
}

/// A topology's structure without its code: what Nimbus stores and what
/// validation checks (Storm's `StormTopology` minus serialized objects).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopologySpec {
    /// Components by id.
    pub components: BTreeMap<ComponentId, ComponentSpec>,
}

/// Why a topology is invalid. Each message names the offending component,
/// stream or field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TopologyError {
    /// Two components share an id.
    #[error("duplicate component id {0:?}")]
    DuplicateComponent(ComponentId),
    /// A user component or stream id starts with `__`.
    #[error("{what} id {id:?} is reserved: ids starting with \"__\" belong to the system")]
    ReservedId {
        /// `"component"` or `"stream"`.
        what: &'static str,
        /// The id.
        id: String,
    },
    /// A component declares a stream twice.
    #[error("component {component:?} declares stream {stream:?} twice")]
    DuplicateStream {
        /// The component.
        component: ComponentId,
        /// The stream.
        stream: StreamId,
    },
    /// Parallelism of zero.
    #[error("component {0:?} has parallelism 0; it needs at least one executor")]
    ZeroParallelism(ComponentId),
    /// Zero tasks.
    #[error("component {0:?} has 0 tasks; it needs at least one")]
    ZeroTasks(ComponentId),
    /// Fewer tasks than executors.
    #[error("component {component:?} has {tasks} tasks for {parallelism} executors; tasks must be at least the parallelism")]
    FewerTasksThanExecutors {
        /// The component.
        component: ComponentId,
        /// Its tasks.
        tasks: u32,
        /// Its parallelism.
        parallelism: u32,
    },
    /// No spout at all.
    #[error("topology has no spout; at least one is needed")]
    NoSpout,
    /// A spout subscribes to something.
    #[error("spout {0:?} has inputs; only bolts may subscribe to streams")]
    SpoutWithInputs(ComponentId),
    /// A spout was named where none exists.
    #[error("no spout {0:?} in the topology")]
    NotASpout(ComponentId),
    /// Subscription to a component that does not exist.
    #[error("component {component:?} subscribes to unknown component {source_component:?}")]
    UnknownComponent {
        /// The subscriber.
        component: ComponentId,
        /// The missing source.
        source_component: ComponentId,
    },
    /// Subscription to a stream the source does not declare.
    #[error("component {component:?} subscribes to stream {stream:?} of {source_component:?}, which declares only {declared:?}")]
    UnknownStream {
        /// The subscriber.
        component: ComponentId,
        /// The source.
        source_component: ComponentId,
        /// The missing stream.
        stream: StreamId,
        /// What the source declares.
        declared: Vec<String>,
    },
    /// A grouping names a field the stream lacks.
    #[error("{grouping} grouping of {component:?} on {source_component:?}:{stream:?} names field {field:?}, not in {fields}")]
    UnknownField {
        /// The subscriber.
        component: ComponentId,
        /// The source.
        source_component: ComponentId,
        /// The stream.
        stream: StreamId,
        /// `"fields"` or `"partial_key"`.
        grouping: &'static str,
        /// The missing field.
        field: String,
        /// The stream's fields.
        fields: Fields,
    },
    /// Direct grouping on a stream not declared direct.
    #[error("component {component:?} uses direct grouping on {source_component:?}:{stream:?}, which is not a direct stream")]
    DirectOnNonDirect {
        /// The subscriber.
        component: ComponentId,
        /// The source.
        source_component: ComponentId,
        /// The stream.
        stream: StreamId,
    },
    /// A bolt reads event time from a field one of its input streams lacks.
    #[error("component {component:?} takes its timestamp from field {field:?}, but its input {source_component:?}:{stream:?} has fields {fields}")]
    UnknownTimestampField {
        /// The windowed bolt.
        component: ComponentId,
        /// The timestamp field.
        field: String,
        /// The source lacking it.
        source_component: ComponentId,
        /// The stream lacking it.
        stream: StreamId,
        /// The stream's fields.
        fields: Fields,
    },
    /// A bolt holds tuples longer than the message timeout, so every one of
    /// them would time out and replay (Storm's windowed bolt check).
    #[error("component {component:?} holds tuples for {holds_ms} ms (window length + sliding interval) but topology.message.timeout.secs is {timeout_secs} s ({timeout_ms} ms); raise the timeout above the window or make the window persistent", timeout_ms = timeout_secs * 1000)]
    TimeoutShorterThanWindow {
        /// The windowed bolt.
        component: ComponentId,
        /// Window length + sliding interval, in ms.
        holds_ms: u64,
        /// `topology.message.timeout.secs`.
        timeout_secs: u64,
    },
    /// A direct stream subscribed to without direct grouping.
    #[error("component {component:?} subscribes to direct stream {source_component:?}:{stream:?} with {grouping} grouping; direct streams need direct grouping")]
    NonDirectOnDirect {
        /// The subscriber.
        component: ComponentId,
        /// The source.
        source_component: ComponentId,
        /// The stream.
        stream: StreamId,
        /// The grouping used.
        grouping: String,
    },
}

impl TopologySpec {
    /// Checks the structure; the first problem found is returned.
    ///
    /// Checks: reserved ids, parallelism and task counts, at least one spout,
    /// no spout inputs, subscriptions to existing components and streams,
    /// grouping fields present in the stream, direct grouping exactly on
    /// direct streams.
    pub fn validate(&self) -> Result<(), TopologyError> {
        if !self
            .components
            .values()
            .any(|c| c.kind == ComponentKind::Spout)
        {
            return Err(TopologyError::NoSpout);
        }
        for (id, c) in &self.components {
            self.validate_component(id, c)?;
        }
        Ok(())
    }

    /// [`validate`](Self::validate), then the checks that need the
    /// topology's configuration: no bolt holds tuples (a duration window)
    /// for longer than `topology.message.timeout.secs` while acking is on.
    ///
    /// # Errors
    /// The first problem found, as [`validate`](Self::validate), or
    /// [`TopologyError::TimeoutShorterThanWindow`].
    pub fn validate_with_config(&self, config: &Config) -> Result<(), TopologyError> {
        self.validate()?;
        if config.effective_ackers() == 0 {
            return Ok(());
        }
        let timeout_ms = config.message_timeout_secs.saturating_mul(1000);
        for (id, c) in &self.components {
            if let Some(holds_ms) = c.config.holds_tuples_ms.filter(|h| *h > timeout_ms) {
                return Err(TopologyError::TimeoutShorterThanWindow {
                    component: id.clone(),
                    holds_ms,
                    timeout_secs: config.message_timeout_secs,
                });
            }
        }
        Ok(())
    }

    fn validate_component(&self, id: &ComponentId, c: &ComponentSpec) -> Result<(), TopologyError> {
        if id.is_system() {
            return Err(TopologyError::ReservedId {
                what: "component",
                id: id.0.clone(),
            });
        }
        if let Some(s) = c.streams.keys().find(|s| s.is_system()) {
            return Err(TopologyError::ReservedId {
                what: "stream",
                id: s.0.clone(),
            });
        }
        if c.parallelism == 0 {
            return Err(TopologyError::ZeroParallelism(id.clone()));
        }
        if c.num_tasks == 0 {
            return Err(TopologyError::ZeroTasks(id.clone()));
        }
        if c.num_tasks < c.parallelism {
            return Err(TopologyError::FewerTasksThanExecutors {
                component: id.clone(),
                tasks: c.num_tasks,
                parallelism: c.parallelism,
            });
        }
        if c.kind == ComponentKind::Spout && !c.inputs.is_empty() {
            return Err(TopologyError::SpoutWithInputs(id.clone()));
        }
        c.inputs.iter().try_for_each(|i| self.validate_input(id, i))
    }

    fn validate_input(&self, id: &ComponentId, input: &InputSpec) -> Result<(), TopologyError> {
        let source = self.components.get(&input.component).ok_or_else(|| {
            TopologyError::UnknownComponent {
                component: id.clone(),
                source_component: input.component.clone(),
            }
        })?;
        let stream =
            source
                .streams
                .get(&input.stream)
                .ok_or_else(|| TopologyError::UnknownStream {
                    component: id.clone(),
                    source_component: input.component.clone(),
                    stream: input.stream.clone(),
                    declared: source.streams.keys().map(|s| s.0.clone()).collect(),
                })?;
        let (grouping, keys) = match &input.grouping {
            GroupingSpec::Fields(f) => ("fields", Some(f)),
            GroupingSpec::PartialKey(f) => ("partial_key", Some(f)),
            _ => ("", None),
        };
        if let Some(missing) =
            keys.and_then(|k| k.names().iter().find(|f| !stream.fields.contains(f)))
        {
            return Err(TopologyError::UnknownField {
                component: id.clone(),
                source_component: input.component.clone(),
                stream: input.stream.clone(),
                grouping,
                field: missing.clone(),
                fields: stream.fields.clone(),
            });
        }
        let owner = &self.components[id];
        if let Some(field) = &owner.config.timestamp_field {
            if !input.stream.is_system()
                && input.stream.as_str() != crate::CHECKPOINT_STREAM
                && !stream.fields.contains(field)
            {
                return Err(TopologyError::UnknownTimestampField {
                    component: id.clone(),
                    field: field.clone(),
                    source_component: input.component.clone(),
                    stream: input.stream.clone(),
                    fields: stream.fields.clone(),
                });
            }
        }
        let is_direct = input.grouping == GroupingSpec::Direct;
        if is_direct && !stream.direct {
            return Err(TopologyError::DirectOnNonDirect {
                component: id.clone(),
                source_component: input.component.clone(),
                stream: input.stream.clone(),
            });
        }
        if !is_direct && stream.direct {
            return Err(TopologyError::NonDirectOnDirect {
                component: id.clone(),
                source_component: input.component.clone(),
                stream: input.stream.clone(),
                grouping: input.grouping.name().to_owned(),
            });
        }
        Ok(())
    }
}
