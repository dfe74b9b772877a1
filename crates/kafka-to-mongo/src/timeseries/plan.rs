//! What to do with each measurement of a batch, given the copies already stored
//! and the partition's lease. Pure: the reads and writes are in [`super`].
//!
//! Every measurement carries its provenance: the partition and offset it was read
//! from and the epoch of the writer that inserted it. The partition's lease
//! document records the last offset whose device state is applied, in the same
//! transaction as that state. So a stored copy tells who counted it:
//! - from another partition, from an offset at or below `applied`, or without
//!   provenance (migrated): it is counted (or will be, by its own partition's
//!   replay): a duplicate here;
//! - from this partition, past `applied`, by this epoch: an earlier attempt at
//!   this batch inserted it and never applied its state: count it now, once;
//! - from this partition, past `applied`, by an older epoch: a writer that crashed
//!   or was fenced inserted it and never applied its state: it is deleted and the
//!   measurement inserted again under this epoch (never adopted: a fenced writer
//!   deletes its own such copies, so adopting one could lose it).
//!
//! When a key has a counted copy and one of this epoch's, this epoch's copy is the
//! extra one: another partition counted the key first (the device-state
//! transaction refused to count it twice, see [`super`]); it is deleted.

use std::collections::HashMap;

/// Where a stored measurement came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Provenance {
    pub partition: i32,
    pub offset: i64,
    pub epoch: i64,
}

/// The partition this writer holds, and the epoch it claimed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Owner {
    pub partition: i32,
    pub epoch: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Not stored: insert it, count it.
    Insert,
    /// Inserted by this writer's earlier attempt at the batch: count it, do not insert it.
    Recovered,
    /// Stored and counted already: neither.
    Duplicate,
}

#[derive(Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// One decision per item, in order.
    pub decisions: Vec<Decision>,
    /// Keys that have uncounted copies from an older epoch of this partition: delete those first.
    pub stale: Vec<String>,
    /// Keys counted elsewhere that also have a copy of this epoch: delete that copy.
    pub superseded: Vec<String>,
}

enum Copy {
    Counted,
    Mine,
    Stale,
}

fn judge(from: Option<Provenance>, owner: Owner, applied: i64) -> Copy {
    match from {
        Some(p) if p.partition == owner.partition && p.offset > applied => {
            if p.epoch == owner.epoch {
                Copy::Mine
            } else if p.epoch < owner.epoch {
                Copy::Stale
            } else {
                // A newer owner's: this writer is fenced and its transaction will fail.
                Copy::Counted
            }
        }
        _ => Copy::Counted,
    }
}

/// `keys`: the batch's idempotency keys (no two equal). `copies`: every stored
/// copy of any of them, with its provenance (None when it has none).
pub fn plan(
    keys: &[&str],
    copies: &[(String, Option<Provenance>)],
    owner: Owner,
    applied: i64,
) -> Plan {
    #[derive(Default)]
    struct Seen {
        counted: bool,
        mine: bool,
        stale: bool,
    }
    let mut seen: HashMap<&str, Seen> = HashMap::with_capacity(copies.len());
    for (key, from) in copies {
        let s = seen.entry(key.as_str()).or_default();
        match judge(*from, owner, applied) {
            Copy::Counted => s.counted = true,
            Copy::Mine => s.mine = true,
            Copy::Stale => s.stale = true,
        }
    }
    let mut out = Plan::default();
    for key in keys {
        let decision = match seen.get(key) {
            None => Decision::Insert,
            Some(s) => {
                if s.stale {
                    out.stale.push((*key).to_owned());
                }
                if s.counted {
                    if s.mine {
                        out.superseded.push((*key).to_owned());
                    }
                    Decision::Duplicate
                } else if s.mine {
                    Decision::Recovered
                } else {
                    Decision::Insert
                }
            }
        };
        out.decisions.push(decision);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::Decision::*;
    use super::*;

    const ME: Owner = Owner {
        partition: 2,
        epoch: 5,
    };

    fn from(partition: i32, offset: i64, epoch: i64) -> Option<Provenance> {
        Some(Provenance {
            partition,
            offset,
            epoch,
        })
    }

    fn one(copies: &[Option<Provenance>]) -> (Decision, bool) {
        let copies: Vec<(String, Option<Provenance>)> =
            copies.iter().map(|p| ("k".to_owned(), *p)).collect();
        let p = plan(&["k"], &copies, ME, 100);
        (p.decisions[0], !p.stale.is_empty())
    }

    #[test]
    fn a_key_never_stored_is_inserted() {
        assert_eq!(one(&[]), (Insert, false));
    }

    #[test]
    fn a_copy_from_an_applied_batch_another_partition_or_a_migration_is_a_duplicate() {
        assert_eq!(one(&[from(2, 100, 5)]), (Duplicate, false), "at applied");
        assert_eq!(
            one(&[from(2, 7, 1)]),
            (Duplicate, false),
            "an old epoch's applied batch"
        );
        assert_eq!(
            one(&[from(0, 900, 9)]),
            (Duplicate, false),
            "another partition counts its own"
        );
        assert_eq!(
            one(&[None]),
            (Duplicate, false),
            "migrated, counted when first stored"
        );
    }

    #[test]
    fn my_own_unapplied_copy_is_counted_once_and_not_inserted_again() {
        // The crash point between insert and the device-state transaction, retried.
        assert_eq!(one(&[from(2, 101, 5)]), (Recovered, false));
    }

    #[test]
    fn an_older_epochs_unapplied_copy_is_deleted_and_inserted_again() {
        assert_eq!(one(&[from(2, 101, 4)]), (Insert, true));
        assert_eq!(
            one(&[from(2, 101, 4), from(2, 101, 5)]),
            (Recovered, true),
            "a zombie's late copy next to mine"
        );
        assert_eq!(
            one(&[from(2, 50, 3), from(2, 101, 4)]),
            (Duplicate, true),
            "counted, and the extra copy removed"
        );
    }

    #[test]
    fn my_copy_of_a_key_another_partition_counted_is_the_extra_one() {
        let copies = vec![
            ("k".to_owned(), from(0, 7, 1)),
            ("k".to_owned(), from(2, 101, 5)),
        ];
        let p = plan(&["k"], &copies, ME, 100);
        assert_eq!(p.decisions, [Duplicate]);
        assert_eq!(p.superseded, ["k"]);
        assert!(p.stale.is_empty());
    }

    #[test]
    fn a_newer_epochs_copy_is_never_inserted_again() {
        assert_eq!(one(&[from(2, 101, 6)]), (Duplicate, false));
    }

    #[test]
    fn decisions_follow_the_keys_in_order() {
        let copies = vec![
            ("b".to_owned(), from(2, 150, 5)),
            ("c".to_owned(), from(1, 150, 5)),
        ];
        let p = plan(&["a", "b", "c"], &copies, ME, 100);
        assert_eq!(p.decisions, [Insert, Recovered, Duplicate]);
        assert!(p.stale.is_empty());
    }
}
