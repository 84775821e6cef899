//! How a topic's partitions are spread over a spout's tasks.

use std::fmt;

/// A topic and one of its partitions.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TopicPartition {
    /// The topic.
    pub topic: String,
    /// The partition.
    pub partition: i32,
}

impl TopicPartition {
    /// Partition `partition` of `topic`.
    pub fn new(topic: impl Into<String>, partition: i32) -> Self {
        Self {
            topic: topic.into(),
            partition,
        }
    }
}

impl fmt::Display for TopicPartition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.topic, self.partition)
    }
}

/// The partitions task number `task_index` (from 0) of `tasks` reads
/// (Storm's `RoundRobinManualPartitioner`): all partitions in (topic,
/// partition) order, dealt round robin — every partition to exactly one
/// task, the same answer in every task, and partitions added later dealt
/// on from where the others stopped. No task has an index of `tasks` or
/// more; zero tasks count as one.
pub fn partitions_for_task(
    all: &[TopicPartition],
    task_index: usize,
    tasks: usize,
) -> Vec<TopicPartition> {
    if task_index >= tasks.max(1) {
        return Vec::new();
    }
    let mut sorted = all.to_vec();
    sorted.sort();
    sorted.dedup();
    sorted
        .into_iter()
        .skip(task_index)
        .step_by(tasks.max(1))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_partition_goes_to_exactly_one_task() {
        let all: Vec<_> = (0..7)
            .rev()
            .map(|p| TopicPartition::new("t", p))
            .chain([TopicPartition::new("a", 0)])
            .collect();
        let dealt: Vec<Vec<TopicPartition>> =
            (0..3).map(|i| partitions_for_task(&all, i, 3)).collect();
        assert_eq!(dealt[0][0], TopicPartition::new("a", 0));
        assert_eq!(dealt.iter().map(Vec::len).collect::<Vec<_>>(), [3, 3, 2]);
        let mut union: Vec<_> = dealt.concat();
        union.sort();
        let mut expected = all.clone();
        expected.sort();
        assert_eq!(union, expected);
        assert!(partitions_for_task(&all, 5, 3).is_empty());
        assert_eq!(partitions_for_task(&all, 0, 0).len(), all.len());
    }
}
