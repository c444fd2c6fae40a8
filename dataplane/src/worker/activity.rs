//! Per-stream activity reports: once a second, one record for each stream that moved
//! packets since the last one. The control process dissolves a stream that stays silent
//! for its idle timeout, so silence is the signal and no record is sent for it.

use conflux_shared::wire::record::{CounterId, Direction, RingRecord, StreamActivityBody};

use crate::control::WorkerEnd;
use crate::counters::Counters;
use crate::table::Tables;

/// Writes one activity record per stream that moved packets since its previous report.
pub(super) fn report(
    rings: &mut WorkerEnd,
    tables: &mut Tables,
    counters: &mut Counters,
    worker: u16,
) {
    let mut push = |counters: &mut Counters, body: StreamActivityBody| {
        let ok =
            RingRecord::encode(&body).is_ok_and(|rec| matches!(rings.reports.push(&rec), Ok(true)));
        if !ok {
            counters.bump(CounterId::RingFull);
        }
    };
    for s in &mut tables.egress {
        let (packets, bytes) = (s.packets - s.reported.0, s.bytes - s.reported.1);
        if packets > 0 {
            s.reported = (s.packets, s.bytes);
            push(
                counters,
                StreamActivityBody::new(s.id, Direction::Egress, worker, packets, bytes),
            );
        }
    }
    for s in &mut tables.ingress {
        let opened = s.opener.stats().opened;
        let packets = opened.saturating_sub(s.reported);
        if packets > 0 {
            s.reported = opened;
            push(
                counters,
                StreamActivityBody::new(s.id, Direction::Ingress, worker, packets, 0),
            );
        }
    }
}
