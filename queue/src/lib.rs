//! Conveyor's Redis-streams job queue (being written).
