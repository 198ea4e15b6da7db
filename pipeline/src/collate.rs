//! collate (being written).
