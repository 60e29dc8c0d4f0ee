//! The explanations a run computed, kept compactly until they are stored.
//!
//! A first load stores its explanations once its read is done, in id order (see
//! `InlineAssessor::store_explanations`), so it holds them all until then. A 20,000-device load
//! computes ~93,000 of them, each about ten lines of ~33 bytes (`factor=value:weight:points`).
//! As strings they were half of the load's peak heap (~60 MB of 125 MB, heaptrack). Their lines
//! repeat: the same factor values recur across CVEs and assets. So each explanation is kept as
//! the numbers of its lines in a table of distinct lines, and its text is put together again
//! when it is stored.

use rampart_store::Explanation;

type HashMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;

/// Explanations by id, each as its lines' numbers in `lines`.
#[derive(Debug, Default)]
pub(super) struct Explanations {
    lines: Vec<Box<str>>,
    line_at: HashMap<Box<str>, u32>,
    by_id: HashMap<i64, Box<[u32]>>,
}

impl Explanations {
    /// Keeps `explanation` unless one with its id is kept already.
    pub fn insert(&mut self, explanation: &Explanation) {
        if self.by_id.contains_key(&explanation.id) {
            return;
        }
        let numbers = explanation
            .contributions
            .split('\n')
            .map(|line| self.line_number(line))
            .collect();
        self.by_id.insert(explanation.id, numbers);
    }

    fn line_number(&mut self, line: &str) -> u32 {
        if let Some(&n) = self.line_at.get(line) {
            return n;
        }
        // More than four billion distinct lines cannot be held in memory anyway.
        let n = u32::try_from(self.lines.len()).unwrap_or(u32::MAX);
        self.lines.push(line.into());
        self.line_at.insert(line.into(), n);
        n
    }

    /// The explanation kept under `id`, as it was inserted.
    pub fn get(&self, id: i64) -> Option<Explanation> {
        let numbers = self.by_id.get(&id)?;
        let mut text = String::with_capacity(numbers.len() * 40);
        for (k, &n) in numbers.iter().enumerate() {
            if k > 0 {
                text.push('\n');
            }
            text.push_str(self.lines.get(n as usize).map_or("", |l| l));
        }
        Some(Explanation {
            id,
            contributions: text,
        })
    }

    /// The ids kept, in order.
    pub fn sorted_ids(&self) -> Vec<i64> {
        let mut ids: Vec<i64> = self.by_id.keys().copied().collect();
        ids.sort_unstable();
        ids
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn explanation(id: i64, text: &str) -> Explanation {
        Explanation {
            id,
            contributions: text.to_owned(),
        }
    }

    #[test]
    fn explanations_read_back_as_they_were_kept() {
        let mut table = Explanations::default();
        let a = explanation(7, "decision=immediate:0:75\nepss=0.9:3:9\ncvss=9.8:2:4");
        let b = explanation(-3, "decision=immediate:0:75\nepss=0.1:3:1\ncvss=9.8:2:4");
        let single = explanation(12, "decision=defer:0:0");
        let empty = explanation(0, "");
        for e in [&a, &b, &single, &empty] {
            table.insert(e);
        }
        // The first one kept under an id stays.
        table.insert(&explanation(7, "something else"));
        assert_eq!(table.lines.len(), 6, "shared lines are kept once");
        assert_eq!(table.get(7), Some(a));
        assert_eq!(table.get(-3), Some(b));
        assert_eq!(table.get(12), Some(single));
        assert_eq!(table.get(0), Some(empty));
        assert_eq!(table.get(99), None);
        assert_eq!(table.sorted_ids(), vec![-3, 0, 7, 12]);
    }
}
