//! packet (being written).
