//! The event types `payhook trigger` can send, as data: grouped by the
//! processor their route names, then the types no processor takes.
//!
//! `payhook trigger --list` prints the same groups (a test below holds the two
//! to the same sources, `ROUTES` and `sample::UNROUTED`); the console's
//! "Send a test event" picker lists them.

use payhook_shared::route::{Processor, ROUTES};
use payhook_shared::sample;
use serde_json::{Value, json};

/// Types sent to one processor, or (`processor: None`) acknowledged and ignored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Group {
    /// The processor their route names.
    pub processor: Option<Processor>,
    /// The event types, as the routes list them.
    pub types: Vec<&'static str>,
}

impl Group {
    /// As the console's API gives it.
    pub fn to_json(&self) -> Value {
        json!({
            "processor": self.processor.map(Processor::as_str),
            "types": self.types,
        })
    }
}

/// Every type `payhook trigger` sends, by processor, then the ignored ones.
pub fn groups() -> Vec<Group> {
    Processor::ALL
        .into_iter()
        .map(|processor| Group {
            processor: Some(processor),
            types: ROUTES
                .iter()
                .filter(|(_, p)| *p == processor)
                .map(|(t, _)| *t)
                .collect(),
        })
        .chain(std::iter::once(Group {
            processor: None,
            types: sample::UNROUTED.to_vec(),
        }))
        .collect()
}

/// Whether `payhook trigger` can build `event_type`.
pub fn contains(event_type: &str) -> bool {
    groups().iter().any(|g| g.types.contains(&event_type))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_groups_are_what_trigger_list_prints() {
        // GIVEN the catalogue as data
        let groups = groups();
        // WHEN each group's types are laid out as `payhook trigger --list` does
        let listed = crate::trigger::list();
        let mut lines = listed.lines();
        for group in &groups {
            let _header = lines.next();
            for t in &group.types {
                // THEN every type is there, in the same place
                assert_eq!(lines.next().map(str::trim), Some(*t));
            }
        }
        assert_eq!(lines.next(), None);
    }

    #[test]
    fn every_listed_type_can_be_built() {
        for group in groups() {
            for t in group.types {
                assert!(sample::event(t, &[]).is_ok(), "{t}");
            }
        }
        assert!(contains("payment_intent.succeeded"));
        assert!(!contains("payment_intent.nonsense"));
    }
}
