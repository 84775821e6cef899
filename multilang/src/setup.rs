//! The handshake's setup message: `pidDir`, `conf` and `context`, shaped as
//! Storm's `JsonSerializer.connect` and `TopologyContext.toJSON` send them.

use serde_json::{json, Map, Value as Json};
use squall_topology_api::{GroupingSpec, TopologyContext};
use std::path::Path;

/// The setup message for the task of `context`, telling the child to write
/// its pid file into `pid_dir`.
pub fn setup_message(context: &TopologyContext, pid_dir: &Path) -> Json {
    let mut conf: Map<String, Json> = context
        .config()
        .to_storm_map()
        .into_iter()
        .map(|(k, v)| (k, serde_json::to_value(v).unwrap_or(Json::Null)))
        .collect();
    conf.insert("topology.name".into(), json!(context.topology_name()));
    json!({
        "pidDir": pid_dir.to_string_lossy(),
        "conf": conf,
        "context": context_json(context),
    })
}

fn grouping_json(g: &GroupingSpec) -> Json {
    match g {
        GroupingSpec::Fields(f) => json!({"type": "FIELDS", "fields": f.names()}),
        GroupingSpec::Global => json!({"type": "FIELDS", "fields": []}),
        GroupingSpec::Shuffle => json!({"type": "SHUFFLE"}),
        GroupingSpec::All => json!({"type": "ALL"}),
        GroupingSpec::None => json!({"type": "NONE"}),
        GroupingSpec::Direct => json!({"type": "DIRECT"}),
        GroupingSpec::LocalOrShuffle => json!({"type": "LOCAL_OR_SHUFFLE"}),
        GroupingSpec::PartialKey(_) | GroupingSpec::Custom(_) => {
            json!({"type": "CUSTOM_OBJECT"})
        }
    }
}

/// Storm's context JSON: `task->component`, `taskid`, `componentid`,
/// `streams`, `stream->outputfields`, `stream->target->grouping`,
/// `source->stream->grouping`, `source->stream->fields`.
fn context_json(context: &TopologyContext) -> Json {
    let spec = context.spec();
    let me = context.this_component_id();
    let task_component: Map<String, Json> = context
        .layout()
        .components()
        .flat_map(|(c, tasks)| {
            tasks
                .iter()
                .map(move |t| (t.0.to_string(), json!(c.as_str())))
        })
        .collect();
    let mine = spec.components.get(me);
    let streams: Vec<&str> = mine
        .map(|c| c.streams.keys().map(|s| s.as_str()).collect())
        .unwrap_or_default();
    let output_fields: Map<String, Json> = mine
        .map(|c| {
            c.streams
                .iter()
                .map(|(s, d)| (s.as_str().to_owned(), json!(d.fields.names())))
                .collect()
        })
        .unwrap_or_default();
    let mut targets: Map<String, Json> =
        streams.iter().map(|s| (s.to_string(), json!({}))).collect();
    for (id, c) in &spec.components {
        for input in c.inputs.iter().filter(|i| &i.component == me) {
            if let Some(Json::Object(by_target)) = targets.get_mut(input.stream.as_str()) {
                by_target.insert(id.as_str().to_owned(), grouping_json(&input.grouping));
            }
        }
    }
    let mut sources = Map::new();
    let mut source_fields = Map::new();
    for input in mine.map(|c| c.inputs.as_slice()).unwrap_or_default() {
        let src = input.component.as_str();
        let entry = sources.entry(src).or_insert_with(|| json!({}));
        entry[input.stream.as_str()] = grouping_json(&input.grouping);
        let fields = spec
            .components
            .get(&input.component)
            .and_then(|c| c.streams.get(&input.stream))
            .map(|d| json!(d.fields.names()))
            .unwrap_or(Json::Null);
        let entry = source_fields.entry(src).or_insert_with(|| json!({}));
        entry[input.stream.as_str()] = fields;
    }
    json!({
        "task->component": task_component,
        "taskid": context.this_task_id().0,
        "componentid": me.as_str(),
        "streams": streams,
        "stream->outputfields": output_fields,
        "stream->target->grouping": targets,
        "source->stream->grouping": sources,
        "source->stream->fields": source_fields,
    })
}
