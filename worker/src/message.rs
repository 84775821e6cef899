//! What travels between executors: addressed tuples in batches, and the
//! table that maps a stream index back to its component, id and fields.

use rustc_hash::FxHashMap;
use squall_topology_api::spec::TopologySpec;
use squall_topology_api::{
    ComponentId, Fields, MessageId, StreamId, StreamMeta, TaskId, Values, SYSTEM_COMPONENT,
    TICK_STREAM,
};
use std::sync::Arc;

use crate::acking::{
    AckTo, ACK_ACK_STREAM, ACK_FAIL_STREAM, ACK_INIT_STREAM, ACK_ONCE_STREAM,
    ACK_RESET_TIMEOUT_STREAM,
};
use crate::wire::{self, Message};

/// One tuple addressed to one task: the unit executors exchange.
#[derive(Debug, Clone)]
pub struct TupleMsg {
    /// The receiving task.
    pub dest: TaskId,
    /// The emitting task.
    pub source: TaskId,
    /// Index into the topology's [`StreamTable`].
    pub stream: u32,
    /// The values.
    pub values: Values,
    /// The tuple's ids in its trees (empty: untracked).
    pub message_id: MessageId,
}

/// What an executor's inbound queue carries.
#[derive(Debug)]
pub enum Envelope {
    /// A batch of tuples, each for a task of the receiving executor.
    Tuples(Vec<TupleMsg>),
    /// A batch of ack-protocol messages, each for a task of the receiving
    /// executor (or, on the transfer queue, of another worker's).
    Acks(Vec<AckTo>),
    /// A batch of tuples or of acks in its wire form ([`crate::wire`]),
    /// every message for one executor of another worker (on the transfer
    /// queue) or of this one (from a peer worker).
    Encoded(Encoded),
    /// Wake up and look at the control flags (stop, activate).
    Wake,
}

/// A batch as it crosses workers: the sending executor encodes it (its
/// tuples still in its cache, and no batch of them left for the transfer
/// thread to read), the receiving executor decodes it tuple by tuple
/// ([`Encoded::deliver_to`], [`Encoded::for_each`]). Between them no
/// other thread touches a message, and a tuple takes its wire size in
/// memory (about 30 bytes for a tracked word, against 112 for a
/// [`TupleMsg`] and its values).
#[derive(Debug)]
pub struct Encoded {
    /// A tuple frame ([`crate::wire::encode_batch`]) or an ack frame
    /// ([`crate::wire::encode_acks`]).
    pub bytes: Vec<u8>,
    /// How many messages it holds.
    pub len: usize,
    /// The index of the executor it is for.
    pub executor: usize,
}

impl Encoded {
    /// `tuples`, all for executor `executor`, encoded.
    pub fn tuples(tuples: &[TupleMsg], executor: usize) -> Self {
        Self::new(tuples.len(), executor, |b| wire::encode_batch(tuples, b))
    }

    /// `acks`, all for executor `executor`, encoded.
    pub fn acks(acks: &[AckTo], executor: usize) -> Self {
        Self::new(acks.len(), executor, |b| wire::encode_acks(acks, b))
    }

    fn new(len: usize, executor: usize, encode: impl FnOnce(&mut Vec<u8>)) -> Self {
        let mut bytes = Vec::with_capacity(16 + len * 32);
        encode(&mut bytes);
        Self {
            bytes,
            len,
            executor,
        }
    }

    /// Hands its messages to `f` in order as it decodes them; a malformed
    /// frame (from a peer worker) is logged and its rest dropped: those
    /// tuples' trees time out and their spouts replay them.
    pub fn for_each(&self, f: impl FnMut(Message)) {
        self.log_error(wire::decode_each(&self.bytes, f));
    }

    /// Decodes its messages into `to` in order ([`wire::decode_into`]);
    /// a malformed frame is logged and its rest dropped, as in
    /// [`Encoded::for_each`].
    pub fn deliver_to(&self, to: &mut impl wire::Deliver) {
        self.log_error(wire::decode_into(&self.bytes, to));
    }

    fn log_error(&self, decoded: Result<(), wire::WireError>) {
        if let Err(e) = decoded {
            tracing::warn!(
                executor = self.executor,
                "{e} from a peer worker; dropped the rest of its frame"
            );
        }
    }
}

/// What an [`Envelope`] carries a batch of: each message is addressed to
/// one task.
pub(crate) trait Batched: Sized {
    /// A batch in its envelope.
    fn wrap(batch: Vec<Self>) -> Envelope;
    /// The batch in an envelope [`Self::wrap`] made (empty for another).
    fn unwrap(envelope: Envelope) -> Vec<Self>;
}

impl Batched for TupleMsg {
    fn wrap(batch: Vec<Self>) -> Envelope {
        Envelope::Tuples(batch)
    }
    fn unwrap(envelope: Envelope) -> Vec<Self> {
        match envelope {
            Envelope::Tuples(batch) => batch,
            _ => Vec::new(),
        }
    }
}

impl Batched for AckTo {
    fn wrap(batch: Vec<Self>) -> Envelope {
        Envelope::Acks(batch)
    }
    fn unwrap(envelope: Envelope) -> Vec<Self> {
        match envelope {
            Envelope::Acks(batch) => batch,
            _ => Vec::new(),
        }
    }
}

impl Envelope {
    /// How many messages it carries.
    pub fn len(&self) -> usize {
        match self {
            Self::Tuples(b) => b.len(),
            Self::Acks(b) => b.len(),
            Self::Encoded(e) => e.len,
            Self::Wake => 0,
        }
    }

    /// Whether it carries no message.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Every stream of a topology, system streams included, numbered densely so
/// a tuple names its stream with a `u32`. Identical in every worker of a
/// topology (built from the spec in a fixed order).
#[derive(Debug)]
pub struct StreamTable {
    metas: Vec<Arc<StreamMeta>>,
    index: FxHashMap<(ComponentId, StreamId), u32>,
}

fn id_fields(names: &[&str]) -> Fields {
    Fields::new(names.iter().copied())
}

impl StreamTable {
    /// Numbers the streams of `spec` (which includes the `__acker`
    /// component), plus each component's acking streams and the tick stream.
    pub fn new(spec: &TopologySpec) -> Self {
        let mut t = Self {
            metas: Vec::new(),
            index: FxHashMap::default(),
        };
        let system_out = [
            (ACK_INIT_STREAM, id_fields(&["id", "val"])),
            (ACK_ACK_STREAM, id_fields(&["id", "val"])),
            (ACK_ONCE_STREAM, id_fields(&["id", "val"])),
            (ACK_FAIL_STREAM, id_fields(&["id"])),
            (ACK_RESET_TIMEOUT_STREAM, id_fields(&["id"])),
        ];
        for (id, c) in &spec.components {
            for (s, def) in &c.streams {
                t.add(id.clone(), s.clone(), def.fields.clone());
            }
            for (s, f) in &system_out {
                if !c.streams.contains_key(*s) {
                    t.add(id.clone(), StreamId::from(*s), f.clone());
                }
            }
        }
        t.add(
            SYSTEM_COMPONENT.into(),
            TICK_STREAM.into(),
            id_fields(&["rate_secs"]),
        );
        t
    }

    fn add(&mut self, component: ComponentId, stream: StreamId, fields: Fields) {
        let i = self.metas.len() as u32;
        self.index.insert((component.clone(), stream.clone()), i);
        self.metas.push(Arc::new(StreamMeta {
            component,
            stream,
            fields,
        }));
    }

    /// The index of `component`'s `stream`.
    pub fn index(&self, component: &str, stream: &str) -> Option<u32> {
        self.index
            .get(&(ComponentId::from(component), StreamId::from(stream)))
            .copied()
    }

    /// The stream with index `i`.
    pub fn meta(&self, i: u32) -> Option<&Arc<StreamMeta>> {
        self.metas.get(i as usize)
    }

    /// Every stream's description in fresh `Arc`s, indexed as the table,
    /// for one executor: each received tuple holds its stream's `Arc`, and
    /// counting references on one shared by every executor's thread would
    /// bounce its cache line between cores on every tuple.
    pub fn private_metas(&self) -> Vec<Arc<StreamMeta>> {
        self.metas.iter().map(|m| Arc::new((**m).clone())).collect()
    }
}
